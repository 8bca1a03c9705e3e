//! The live side of a tour: placeholders filled in from the running app ("computing…" until the
//! number exists), and the tasks' checks evaluated on its state.

use super::{Check, HeadRef, Length, Piece, Placeholder, SlopeChoice, Template};
use crate::alibi::{self, SlopeSpec};
use crate::tui::app::{App, MIN_LENGTH};
use crate::tui::views::{Stat, prior_stat};

/// What a placeholder shows while its number is being computed.
pub const COMPUTING: &str = "computing…";

/// A placeholder's text: `Ok` with the value, `Err` with why there is none (`computing…`, or a
/// short reason such as "no ALiBi slopes").
pub fn value(app: &App, p: Placeholder) -> Result<String, String> {
    let head = |h: HeadRef| -> Result<usize, String> {
        let n = app.info.n_heads;
        let i = match h {
            HeadRef::Selected => app.head,
            HeadRef::Fixed(idx) => idx.of(n),
        };
        if i < n {
            Ok(i)
        } else {
            Err(format!("n/a (no head {i})"))
        }
    };
    let slope = |h: HeadRef| -> Result<f64, String> {
        let i = head(h)?;
        if !app.is_alibi() {
            return Err(format!("n/a ({} has no ALiBi slopes)", app.info.position));
        }
        app.slopes
            .get(i)
            .copied()
            .ok_or_else(|| format!("n/a (no head {i})"))
    };
    let curve = |c: usize| {
        app.curves.get(c).ok_or_else(|| {
            format!("n/a (no curve {c}: run with --compare, or add compare: to the tour)")
        })
    };
    let ppl_at = |c: usize, len: usize| -> Result<String, String> {
        let point = curve(c)?
            .point_at(len)
            .ok_or_else(|| COMPUTING.to_string())?;
        Ok(format!("{:.1}", point.ppl))
    };
    let len = app.length();
    Ok(match p {
        Placeholder::Model => app.info.name.clone(),
        Placeholder::Position => app.info.position.to_string(),
        Placeholder::Heads => app.info.n_heads.to_string(),
        Placeholder::Layers => app.info.n_layers.to_string(),
        Placeholder::TrainLen => app.info.train_len.to_string(),
        Placeholder::Cursor => len.to_string(),
        Placeholder::Ratio => format!("{:.2}", len as f64 / app.info.train_len.max(1) as f64),
        Placeholder::Lmax => app.lmax.to_string(),
        Placeholder::Head => app.head.to_string(),
        Placeholder::Layer => app.layer.to_string(),
        Placeholder::Slopes => app.slopes_label.clone(),
        Placeholder::Slope(h) => fmt_slope(slope(h)?),
        Placeholder::Reach(h) => fmt_reach(alibi::reach(slope(h)?)),
        Placeholder::Bias(h, d) => {
            // The bias of a key d tokens back from a query at position d (column 0).
            let b = alibi::bias(slope(h)?, d, 0);
            fmt_slope(b).replace('-', "−")
        }
        Placeholder::Ppl(c) => ppl_at(c, len)?,
        Placeholder::PplTrain(c) => ppl_at(c, app.info.train_len)?,
        Placeholder::Name(c) => curve(c)?.label.clone(),
        Placeholder::MeanDistance(h) => {
            let i = head(h)?;
            let m = app
                .stats
                .at(len)
                .filter(|_| app.stats.generation == app.sweep_gen)
                .and_then(|r| r.head(app.layer, i))
                .ok_or_else(|| COMPUTING.to_string())?;
            format!("{:.1}", m.mean_distance)
        }
        Placeholder::PriorDistance(h) => {
            let m = slope(h)?;
            let v = prior_stat(Stat::MeanDistance, m, len).ok_or_else(|| "n/a".to_string())?;
            format!("{v:.1}")
        }
        Placeholder::Zeroed(h) => {
            let i = head(h)?;
            slope(h)?;
            let s = &app.sensitivity;
            let k = s
                .lengths
                .iter()
                .position(|&l| l == len.min(s.lengths.last().copied().unwrap_or(len)))
                .ok_or_else(|| COMPUTING.to_string())?;
            let d = s
                .rows
                .get(i)
                .and_then(|r| r[0].as_ref())
                .and_then(|d| d.get(k))
                .filter(|_| s.slopes == app.slopes && s.lengths == app.sensitivity_lengths())
                .ok_or_else(|| COMPUTING.to_string())?;
            format!("{:+.1}", d.delta_ppl)
        }
    })
}

/// A reach in tokens (`inf` for a zero slope).
fn fmt_reach(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.0}")
    } else {
        "inf".to_string()
    }
}

/// A number with four significant digits, trailing zeros dropped (0.5, 0.0625, 0.003906).
fn fmt_slope(m: f64) -> String {
    if m == 0.0 || !m.is_finite() {
        return format!("{m}");
    }
    let decimals = (3 - m.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{m:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A template's text with every placeholder filled in (or its reason for having no value).
pub fn fill(app: &App, t: &Template) -> String {
    fill_marked(app, t).into_iter().map(|(s, _)| s).collect()
}

/// A template's pieces, each with whether it is a live value (`Some(true)` a number,
/// `Some(false)` still computing or unavailable, `None` literal text) for colouring.
pub fn fill_marked(app: &App, t: &Template) -> Vec<(String, Option<bool>)> {
    t.0.iter()
        .map(|p| match p {
            Piece::Text(s) => (s.clone(), None),
            Piece::Live(p) => match value(app, *p) {
                Ok(v) => (v, Some(true)),
                Err(why) => (why, Some(false)),
            },
        })
        .collect()
}

/// Whether no placeholder of the template is still computing (values that cannot exist, such as
/// the slope of a model without ALiBi, count as complete).
pub fn complete(app: &App, t: &Template) -> bool {
    t.0.iter().all(|p| match p {
        Piece::Text(_) => true,
        Piece::Live(p) => value(app, *p) != Err(COMPUTING.to_string()),
    })
}

/// A tour length in tokens for this app (the nearest length on its grid is what the app uses).
pub fn tokens(app: &App, l: Length) -> f64 {
    l.tokens(
        app.info.train_len,
        app.grid.first().copied().unwrap_or(MIN_LENGTH),
        app.lmax,
    )
}

/// The slopes a choice names, for this app's head count.
pub fn slopes_of(app: &App, c: SlopeChoice) -> Option<Vec<f64>> {
    match c {
        SlopeChoice::Model => app.info.slopes.clone(),
        SlopeChoice::Preset(preset) => SlopeSpec {
            preset,
            ..SlopeSpec::default()
        }
        .slopes(app.info.n_heads)
        .ok(),
    }
}

/// Whether a task's check holds in the app's state.
pub fn holds(app: &App, check: Check) -> bool {
    match check {
        Check::Cursor(op, l) => {
            let want = tokens(app, l);
            op.holds(app.length() as f64, want)
        }
        Check::Head(op, i) => op.holds(app.head, i.of(app.info.n_heads)),
        Check::Layer(op, i) => op.holds(app.layer, i.of(app.info.n_layers)),
        Check::View(op, v) => op.holds(app.view == v, true),
        Check::Focus(op, f) => op.holds(app.focus == f, true),
        Check::Slopes(op, c) => {
            let same = slopes_of(app, c).is_some_and(|s| {
                s.len() == app.slopes.len()
                    && s.iter()
                        .zip(&app.slopes)
                        .all(|(a, b)| (a - b).abs() <= 1e-12 * a.abs().max(1e-300))
            });
            op.holds(same, true)
        }
        Check::Recipes(op, n) => op.holds(app.recipes.len(), n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::tour::Op;

    #[test]
    fn slopes_print_short() {
        assert_eq!(fmt_slope(0.5), "0.5");
        assert_eq!(fmt_slope(0.0625), "0.0625");
        assert_eq!(fmt_slope(0.003_906_25), "0.003906");
        assert_eq!(fmt_slope(-5.0), "-5");
        assert_eq!(fmt_slope(1179.0), "1179");
        assert_eq!(fmt_slope(0.0), "0");
    }

    #[test]
    fn ops_compare() {
        assert!(Op::Gt.holds(3, 2) && !Op::Gt.holds(2, 2) && Op::Ge.holds(2, 2));
        assert!(Op::Ne.holds(true, false) && Op::Eq.holds(true, true));
    }
}
