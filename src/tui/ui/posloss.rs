//! Loss by position: the mean loss at each position of the sweep's windows (position `p` is the
//! prediction made with `p + 1` tokens of context), in log-spaced position bins, for every curve on
//! the chart, with the training length marked. Where the curve stops falling, more context stops
//! helping; past the training length a model that extrapolates stays flat, one that does not
//! climbs.

use super::super::app::App;
use super::super::palette;
use super::common::panel;
use super::distance::{bin_x, distance_ticks};
use super::lineplot::{LinePlot, Series, VLine, compact};
use crate::alibi::prior::{log_bin, log_bins};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// `(bin x, mean nll)` of per-position means, in log bins of position.
pub fn binned(position_nll: &[f64]) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0, 0usize); log_bins(position_nll.len())];
    for (p, &v) in position_nll.iter().enumerate() {
        if v.is_finite() {
            let b = &mut sums[log_bin(p)];
            b.0 += v;
            b.1 += 1;
        }
    }
    sums.iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(bin, (s, n))| (bin_x(bin), s / *n as f64))
        .collect()
}

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let title = format!(
        " Loss by position · windows of {} · v: next view ",
        app.lmax
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let mut series = Vec::new();
    let mut windows = 0;
    let mut push = |label: &str, color, c: &super::super::app::Curve| {
        if c.acc.windows() == 0 {
            return;
        }
        windows = windows.max(c.acc.windows());
        series.push(Series {
            label: label.to_string(),
            color,
            points: binned(&c.acc.position_nll()),
            dashed: false,
        });
    };
    if let Some(prev) = &app.previous {
        push(&prev.label, palette::PREVIOUS, prev);
    }
    for (i, c) in app.curves.iter().enumerate().skip(1) {
        push(
            &c.label,
            palette::COMPARE[(i - 1) % palette::COMPARE.len()],
            c,
        );
    }
    push(&app.curves[0].label, palette::CURRENT, &app.curves[0]);
    if series.is_empty() {
        Line::from("waiting for the sweep's first window…")
            .dark_gray()
            .render(inner, buf);
        return;
    }
    let bins = log_bins(app.lmax);
    let plot = LinePlot {
        x_bounds: (0.0, (bins - 1).max(1) as f64),
        y_bounds: None,
        x_ticks: distance_ticks(bins),
        y_fmt: compact,
        y_unit: "nll".into(),
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
        "x: position in the window (tokens of context − 1, log bins) · y: mean loss, nats/token · white: train_len · {}",
        crate::text::count(windows, "window")
    ))
    .dark_gray()
    .render(
        Rect::new(inner.x, inner.bottom().saturating_sub(1), inner.width, 1),
        buf,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_averaged_in_log_bins() {
        // Bins: [0,1) [1,2) [2,4) [4,8).
        let b = binned(&[4.0, 3.0, 2.0, 2.5, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(b, vec![(0.0, 4.0), (1.0, 3.0), (2.0, 2.25), (3.0, 1.0)]);
    }
}
