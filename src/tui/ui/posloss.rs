//! Loss by position: the mean loss at each position of the window (position `p` is the prediction
//! made with `p + 1` tokens of context), pooled over every pass the worker has run (the sweep's
//! windows and the refinement's shorter ones, so short positions rest on hundreds of windows), in
//! log-spaced position bins, for every curve on the chart, with the training length marked. The
//! main curve carries a ± 1 s.e. band; bins resting on fewer than [`POSITION_MIN_TOKENS`] tokens
//! are drawn dashed grey, so their noise is not read as a finding. Where the curve stops falling,
//! more context stops helping; past the training length a model that extrapolates stays flat, one
//! that does not climbs.

use super::super::app::App;
use super::super::palette;
use super::common::panel;
use super::distance::{bin_x, distance_ticks};
use super::lineplot::{LinePlot, Series, VLine, compact};
use crate::alibi::prior::{log_bin, log_bins};
use crate::eval::{POSITION_MIN_TOKENS, PositionLoss, bin_position_stats, thin_stretch};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Stylize};
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// The series of one curve's bins: the line over bins with enough tokens, optionally its ± s.e.
/// band, and the thin bins (joined to their solid neighbours) dashed grey.
pub fn series(label: &str, color: Color, bins: &[PositionLoss], band: bool) -> Vec<Series> {
    let x = |b: &PositionLoss| bin_x(log_bin(b.from));
    let solid: Vec<&PositionLoss> = bins.iter().filter(|b| !b.few_tokens).collect();
    let mut out = vec![Series {
        label: label.to_string(),
        color,
        points: solid.iter().map(|b| (x(b), b.nll)).collect(),
        dashed: false,
    }];
    if band {
        for sign in [-1.0, 1.0] {
            out.push(Series {
                label: String::new(),
                color,
                points: solid
                    .iter()
                    .map(|b| (x(b), b.nll + sign * b.stderr))
                    .collect(),
                dashed: true,
            });
        }
    }
    let thin: Vec<(f64, f64)> = thin_stretch(bins).iter().map(|b| (x(b), b.nll)).collect();
    if !thin.is_empty() {
        out.push(Series {
            label: String::new(),
            color: THIN,
            points: thin,
            dashed: true,
        });
    }
    out
}

/// The colour of bins resting on too few tokens.
const THIN: Color = Color::Gray;

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let title = format!(
        " Loss by position · every pass (windows of {} and shorter) · v: next view ",
        app.lmax
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let mut all = Vec::new();
    let mut windows = 0;
    let mut thin = false;
    let mut push = |label: &str, color, c: &super::super::app::Curve, band: bool| {
        if c.acc.windows() == 0 {
            return;
        }
        windows = windows.max(c.acc.windows());
        let bins = bin_position_stats(&c.acc.position_stats());
        thin |= bins.iter().any(|b| b.few_tokens);
        all.extend(series(label, color, &bins, band));
    };
    if let Some(prev) = &app.previous {
        push(&prev.label, palette::PREVIOUS, prev, false);
    }
    for (i, c) in app.curves.iter().enumerate().skip(1) {
        push(
            &c.label,
            palette::COMPARE[(i - 1) % palette::COMPARE.len()],
            c,
            false,
        );
    }
    push(&app.curves[0].label, palette::CURRENT, &app.curves[0], true);
    let series = all;
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
        "{}, all passes · {}dashed: ±1 s.e. · y: nats/token",
        crate::text::count(windows, "window"),
        if thin {
            format!("grey: bins < {POSITION_MIN_TOKENS} tokens · ")
        } else {
            String::new()
        },
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
    fn thin_bins_are_a_grey_dashed_series_and_the_band_brackets_the_line() {
        let bin = |from, to, tokens, nll, stderr| PositionLoss {
            from,
            to,
            tokens,
            nll,
            stderr,
            few_tokens: tokens < POSITION_MIN_TOKENS,
        };
        let bins = [
            bin(0, 1, 40, 5.0, 0.3),
            bin(1, 2, 400, 4.0, 0.1),
            bin(2, 4, 800, 3.5, 0.05),
        ];
        let s = series("m", Color::Cyan, &bins, true);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].points, vec![(1.0, 4.0), (2.0, 3.5)]);
        assert_eq!(s[1].points, vec![(1.0, 3.9), (2.0, 3.45)]);
        assert!(s[3].dashed && s[3].color == THIN && s[3].label.is_empty());
        // The thin bin joined to its solid neighbour.
        assert_eq!(s[3].points, vec![(0.0, 5.0), (1.0, 4.0)]);
        // Without thin bins there is no grey series; without a band, only the line.
        assert_eq!(series("m", Color::Cyan, &bins[1..], false).len(), 1);
    }
}
