//! `reach --plot`: copy gain against distance (log scale), one curve per model or recipe with
//! ± 1 s.e. bars, the zero line (no copying) and the first model's training length marked.

use super::{COLORS, check_extension, draw_in_memory, drawn, mark_train_len, register_font};
use plotters::prelude::*;
use std::path::Path;

/// One curve: a model (or a model under a recipe) and its copy gain by distance.
#[derive(Debug, Clone)]
pub struct CopyCurve {
    /// Legend label.
    pub label: String,
    /// `(distance in tokens, copy gain in nats, its standard error)`, ascending distance.
    pub points: Vec<(usize, f64, f64)>,
}

/// Draws the figure to `path` (`.svg` or `.png`); `train_len` is marked with a vertical line.
///
/// # Errors
/// A path that is not `.svg`/`.png`, no finite point, no font, or a failed write.
pub fn draw(
    path: &Path,
    title: &str,
    train_len: usize,
    curves: &[CopyCurve],
) -> Result<(), String> {
    let ext = check_extension(path)?;
    register_font()?;
    let bytes = drawn(
        path,
        draw_in_memory(
            ext,
            (960, 600),
            |a| render(a, title, train_len, curves),
            |a| render(a, title, train_len, curves),
        ),
    )?;
    crate::files::write_bytes(path, &bytes)
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    train_len: usize,
    curves: &[CopyCurve],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot: {e}");
    let finite: Vec<&(usize, f64, f64)> = curves
        .iter()
        .flat_map(|c| &c.points)
        .filter(|p| p.1.is_finite())
        .collect();
    if finite.is_empty() {
        return Err("nothing to plot".to_string());
    }
    let d = |f: fn(usize, usize) -> usize, start: usize| {
        finite.iter().map(|p| p.0).fold(start, f).max(1) as f64
    };
    let (xmin, xmax) = (
        d(usize::min, train_len) / 1.25,
        d(usize::max, train_len) * 1.25,
    );
    let lo = finite
        .iter()
        .map(|p| p.1 - p.2.max(0.0))
        .fold(0.0, f64::min);
    let hi = finite
        .iter()
        .map(|p| p.1 + p.2.max(0.0))
        .fold(0.0, f64::max);
    let pad = ((hi - lo) * 0.1).max(0.1);
    let (ymin, ymax) = (lo - pad, hi + pad);
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), ymin..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("distance between a token and its copy (tokens, log scale)")
        .y_desc("copy gain (nats): 1st - 2nd occurrence")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    mark_train_len(
        &mut chart,
        train_len,
        (xmax, ymin, ymax),
        &format!("train_len = {train_len}  →  past it"),
        ymax - (ymax - ymin) * 0.04,
    )?;
    chart
        .draw_series(LineSeries::new(
            vec![(xmin, 0.0), (xmax, 0.0)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64, f64)> = c
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(d, g, s)| (d as f64, g, if s.is_finite() { s } else { 0.0 }))
            .collect();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                color.stroke_width(3),
            ))
            .map_err(|e| err(&e))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(
                pts.iter().map(|&(x, y, s)| {
                    ErrorBar::new_vertical(x, y - s, y, y + s, color.filled(), 8)
                }),
            )
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
