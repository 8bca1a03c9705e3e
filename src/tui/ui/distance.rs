//! Attention by distance: the selected head's mean attention on a key `d` tokens back (over the
//! queries that have such a key), in log-spaced distance bins at the cursor's length, with the
//! ALiBi prior's curve (the bias alone, `softmax(-m·d)`) dashed under it and the training length
//! marked (the prior is drawn on top, dashed, so both show where they coincide). A head that
//! follows its prior looks as far as the bias lets it; one above it at long
//! distances reaches past its prior.

use super::super::app::App;
use super::super::palette;
use super::common::panel;
use super::lineplot::{LinePlot, Series, VLine, from_log10};
use crate::alibi::prior::{log_bin, log_bin_range};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// Decades of attention the plot spans at most.
const DECADES: f64 = 6.0;

/// The plot x of log bin `bin` (one unit per bin: distance 0, then octaves).
pub fn bin_x(bin: usize) -> f64 {
    bin as f64
}

/// Tick labels at each octave's lower edge.
pub fn distance_ticks(bins: usize) -> Vec<(f64, String)> {
    (0..bins)
        .map(|b| (bin_x(b), log_bin_range(b).0.to_string()))
        .collect()
}

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let len = app.length();
    let title = format!(
        " Attention by distance · layer {} head {} · length {len} · v: next view ",
        app.layer, app.head
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(m) = app.stats.at(len).and_then(|r| r.head(app.layer, app.head)) else {
        Line::from(format!(
            "computing attention statistics at length {len}… (the worker runs them after the sweep)"
        ))
        .dark_gray()
        .render(inner, buf);
        return;
    };
    let log = |v: f64| if v > 0.0 { v.log10() } else { f64::NAN };
    let measured: Vec<(f64, f64)> = m
        .profile
        .iter()
        .enumerate()
        .map(|(b, &v)| (bin_x(b), log(v)))
        .collect();
    let mut series = Vec::new();
    series.push(Series {
        label: format!("layer {} head {} (measured)", app.layer, app.head),
        color: palette::CURRENT,
        points: measured,
        dashed: false,
    });
    if app.is_alibi()
        && let Some(&slope) = app.slopes.get(app.head)
    {
        let prior = crate::tui::views::prior_distance_profile(slope, len);
        series.push(Series {
            label: format!("ALiBi prior (m = {slope:.4})"),
            color: palette::PREVIOUS,
            points: prior
                .iter()
                .enumerate()
                .map(|(b, &v)| (bin_x(b), log(v)))
                .collect(),
            dashed: true,
        });
    }
    let bins = m.profile.len().max(1);
    // The prior of a steep head falls to 1e-30 and below: keep the scale on the measured curve
    // (down to one decade under its smallest value, at most DECADES below its largest) and let
    // the prior run off the bottom.
    let measured_y: Vec<f64> = series
        .first()
        .map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .filter(|y| y.is_finite())
                .collect()
        })
        .unwrap_or_default();
    let top = measured_y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bottom = measured_y.iter().copied().fold(f64::INFINITY, f64::min);
    let y_bounds = top
        .is_finite()
        .then(|| ((bottom - 1.0).max(top - DECADES), top + 0.3));
    for s in &mut series {
        if let Some((lo, _)) = y_bounds {
            for p in &mut s.points {
                p.1 = p.1.max(lo);
            }
        }
    }
    let plot = LinePlot {
        x_bounds: (0.0, (bins - 1).max(1) as f64),
        y_bounds,
        x_ticks: distance_ticks(bins),
        y_fmt: from_log10,
        y_unit: "attn".into(),
        series,
        vlines: vec![VLine {
            x: bin_x(log_bin(app.info.train_len)),
            color: palette::TRAIN_LEN,
        }],
    };
    let plot_area = Rect::new(
        inner.x,
        inner.y,
        inner.width,
        inner.height.saturating_sub(1),
    );
    if !plot.render(plot_area, buf) {
        return;
    }
    Line::from(format!(
        "x: distance i−j, tokens (log bins) · y: mean attention per key · white: train_len · {} queries",
        m.queries
    ))
    .dark_gray()
    .render(
        Rect::new(inner.x, inner.bottom().saturating_sub(1), inner.width, 1),
        buf,
    );
}
