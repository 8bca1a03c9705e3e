//! The training figure (plotters; SVG or PNG by extension) from `train`'s `loss.csv`: loss,
//! copy gain and the best head's induction score against training tokens seen, one curve per run,
//! so the induction bump (Olsson et al. 2022: the loss bends as the copy gain jumps) is seen.

use super::{COLORS, check_extension, draw_in_memory, drawn, register_font};
use plotters::prelude::*;
use std::path::Path;

/// One line of the loss log (the fields the figure uses; empty cells are `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Optimiser steps done.
    pub step: usize,
    /// Training tokens seen (logs written before the column existed have none).
    pub tokens: Option<u64>,
    /// Mean training loss over the logging window (nats/token).
    pub train_loss: f64,
    /// Validation loss (nats/token), at validations.
    pub valid_loss: Option<f64>,
    /// Copy gain (nats), at validations of a run with a copy test.
    pub copy_gain: Option<f64>,
    /// The best head's induction score, likewise.
    pub induction: Option<f64>,
}

/// A run's loss log with its legend label.
#[derive(Debug, Clone)]
pub struct LossLog {
    /// Legend label.
    pub label: String,
    /// Its lines, in order.
    pub rows: Vec<LogRow>,
}

/// Whether `text` starts like a loss log (a header whose first column is `step`).
pub fn is_loss_log(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|h| h.split(',').next() == Some("step") && h.contains("train_loss"))
}

/// Parses a loss log; an error names the file, the line and the column.
pub fn parse(text: &str, path: &Path) -> Result<Vec<LogRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(step), Some(train)) = (col("step"), col("train_loss")) else {
        return Err(format!(
            "'{}' is not a loss log (hint: plot takes `eval --json` files or a `train` run's loss.csv)",
            path.display()
        ));
    };
    let (tokens, valid, gain, ind) = (
        col("tokens"),
        col("valid_loss"),
        col("copy_gain"),
        col("induction"),
    );
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| {
            format!(
                "'{}' line {}: {what} is not a number (hint: is the file a `train` loss.csv?)",
                path.display(),
                n + 2
            )
        };
        let opt = |c: Option<usize>, what: &str| -> Result<Option<f64>, String> {
            match c.and_then(|c| f.get(c)).map(|s| s.trim()) {
                None | Some("") => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .map(Some)
                    .ok()
                    .filter(|v| v.is_some_and(f64::is_finite))
                    .ok_or_else(|| bad(what)),
            }
        };
        rows.push(LogRow {
            step: f
                .get(step)
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad("step"))?,
            tokens: opt(tokens, "tokens")?.map(|t| t as u64),
            train_loss: opt(Some(train), "train_loss")?.ok_or_else(|| bad("train_loss"))?,
            valid_loss: opt(valid, "valid_loss")?,
            copy_gain: opt(gain, "copy_gain")?,
            induction: opt(ind, "induction")?,
        });
    }
    if rows.is_empty() {
        return Err(format!(
            "'{}' has no logged steps yet (hint: plot it once the run has logged a line)",
            path.display()
        ));
    }
    Ok(rows)
}

/// The x value of a row: millions of tokens when every log has them, else steps.
fn x_of(r: &LogRow, tokens: bool) -> f64 {
    if tokens {
        r.tokens.unwrap_or(0) as f64 / 1e6
    } else {
        r.step as f64
    }
}

/// Draws the training figure to `path` (`.svg` or `.png`): loss on top, then copy gain and
/// induction score where any log has them.
pub fn draw(path: &Path, title: &str, logs: &[LossLog]) -> Result<(), String> {
    let ext = check_extension(path)?;
    register_font()?;
    let copy = logs
        .iter()
        .any(|l| l.rows.iter().any(|r| r.copy_gain.is_some()));
    let size = (960, if copy { 960 } else { 560 });
    let bytes = drawn(
        path,
        draw_in_memory(
            ext,
            size,
            |a| render(a, title, logs, copy),
            |a| render(a, title, logs, copy),
        ),
    )?;
    crate::files::write_bytes(path, &bytes)
}

/// A panel's curves: per log, the points of one field.
type Curves = Vec<(String, RGBColor, Vec<(f64, f64)>)>;

fn curves(logs: &[LossLog], tokens: bool, field: impl Fn(&LogRow) -> Option<f64>) -> Curves {
    logs.iter()
        .enumerate()
        .map(|(i, l)| {
            let pts = l
                .rows
                .iter()
                .filter_map(|r| field(r).map(|v| (x_of(r, tokens), v)))
                .collect();
            (l.label.clone(), COLORS[i % COLORS.len()], pts)
        })
        .collect()
}

/// The legend corner whose quarter of the plot holds the fewest of the curves' points.
fn emptiest_corner<'a>(
    curves: impl Iterator<Item = &'a (String, RGBColor, Vec<(f64, f64)>)>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let (xm, ym) = (f64::midpoint(x0, x1), f64::midpoint(y0, y1));
    // upper left, upper right, lower left, lower right
    let mut counts = [0usize; 4];
    for (_, _, pts) in curves {
        for &(x, y) in pts {
            counts[usize::from(x > xm) + 2 * usize::from(y <= ym)] += 1;
        }
    }
    let corners = [
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerLeft,
        SeriesLabelPosition::LowerRight,
    ];
    // Ties go to the upper right, then the upper left.
    let order = [1, 0, 3, 2];
    let best = order.into_iter().min_by_key(|&i| counts[i]).unwrap_or(1);
    corners[best].clone()
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    logs: &[LossLog],
    copy: bool,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot: {e}");
    let tokens = logs
        .iter()
        .all(|l| l.rows.iter().all(|r| r.tokens.is_some()));
    let x_desc = if tokens {
        "training tokens seen (millions)"
    } else {
        "optimiser steps"
    };
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let area = root
        .titled(title, ("sans-serif", 24))
        .map_err(|e| err(&e))?;
    let panels = if copy {
        area.split_evenly((3, 1))
    } else {
        vec![area]
    };
    let xmax = logs
        .iter()
        .flat_map(|l| &l.rows)
        .map(|r| x_of(r, tokens))
        .fold(0.0, f64::max)
        .max(1e-9);
    let mut specs: Vec<(&str, Curves, Curves)> = vec![(
        "loss (nats/token; thin: train, thick: valid)",
        curves(logs, tokens, |r| r.valid_loss),
        curves(logs, tokens, |r| Some(r.train_loss)),
    )];
    if copy {
        specs.push((
            "copy gain (nats): 1st minus 2nd occurrence",
            curves(logs, tokens, |r| r.copy_gain),
            Vec::new(),
        ));
        specs.push((
            "best head's induction score",
            curves(logs, tokens, |r| r.induction),
            Vec::new(),
        ));
    }
    for (panel, (y_desc, main, thin)) in panels.iter().zip(&specs) {
        let ys = main
            .iter()
            .chain(thin)
            .flat_map(|(_, _, p)| p.iter().map(|&(_, y)| y));
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        let (lo, hi) = if lo.is_finite() {
            let pad = ((hi - lo) * 0.08).max(0.02);
            (lo - pad, hi + pad)
        } else {
            (0.0, 1.0)
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..xmax * 1.02, lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(*y_desc)
            .x_label_formatter(&|x| format!("{x}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (_, color, pts) in thin {
            chart
                .draw_series(LineSeries::new(
                    pts.clone(),
                    color.mix(0.45).stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
        for (label, color, pts) in main {
            let color = *color;
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                .map_err(|e| err(&e))?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            // The corner whose quarter of the panel holds the fewest points keeps the legend off
            // the curves.
            .position(emptiest_corner(
                main.iter().chain(thin),
                (0.0, xmax * 1.02),
                (lo, hi),
            ))
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_new_and_old_logs() {
        let new = "step,lr,train_loss,valid_loss,grad_norm,tokens_per_s,elapsed_s,copy_gain,induction,tokens\n10,1e-3,5.5,,0.9,100,1.0,,,40960\n20,1e-3,5.1,5.2,0.8,100,2.0,0.0300,0.0500,81920\n";
        assert!(is_loss_log(new));
        let rows = parse(new, Path::new("x")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].valid_loss, None);
        assert_eq!(rows[1].copy_gain, Some(0.03));
        assert_eq!(rows[1].tokens, Some(81920));
        let old = "step,lr,train_loss,valid_loss,grad_norm,tokens_per_s,elapsed_s\n10,1e-3,5.5,5.6,0.9,100,1.0\n";
        let rows = parse(old, Path::new("x")).unwrap();
        assert_eq!((rows[0].tokens, rows[0].copy_gain), (None, None));
    }

    #[test]
    fn bad_logs_name_the_line() {
        let e = parse("step,train_loss\n10,abc\n", Path::new("l.csv")).unwrap_err();
        assert!(e.contains("line 2") && e.contains("train_loss"), "{e}");
        assert!(
            parse("step,train_loss\n", Path::new("l.csv"))
                .unwrap_err()
                .contains("no logged steps")
        );
        assert!(!is_loss_log("{\"points\": []}"));
        assert!(
            parse("a,b\n1,2\n", Path::new("l.csv"))
                .unwrap_err()
                .contains("not a loss log")
        );
    }
}
