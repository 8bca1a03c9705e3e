//! Perplexity (or bits per byte) vs input length: log-scale length axis, training length marked,
//! the extrapolation region shaded, the cursor, and one curve per slope setting / compare model,
//! with a legend.
//!
//! Curves that run close share braille cells, and a cell has one colour. So every curve is drawn
//! in one canvas layer (the dots of all curves stay, even where the colour is another curve's),
//! and each curve carries its own point marker (`●`, `▲`, ...) at some of its samples, staggered
//! along x so no two curves' markers fall into one cell; the legend shows each marker.

use super::super::app::{App, Metric, chart_x_bounds};
use super::super::palette;
use super::common::panel;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use ratatui::widgets::canvas::{Canvas, Line as CLine};

/// Width of the y-axis label column.
const Y_LABELS: u16 = 7;
/// Columns between two markers of one curve, per curve on the chart (the curves' markers take
/// turns along x).
const MARKER_COLUMNS_PER_CURVE: u16 = 4;
/// The fewest columns between two markers of one curve.
const MIN_MARKER_PERIOD: u16 = 8;
/// The main curve's marker.
const MAIN_MARKER: &str = "●";
/// The previous slopes' marker.
const PREVIOUS_MARKER: &str = "○";
/// Compare models' markers, in order.
const COMPARE_MARKERS: [&str; 4] = ["▲", "■", "◆", "✚"];
/// Recipe curves' markers, in order.
const RECIPE_MARKERS: [&str; 5] = ["◇", "△", "□", "▽", "✕"];
/// Said in the KL view when no curve differs from the original.
pub const NO_KL_NOTICE: &str =
    "no curve differs from the original: edit the slopes (p, *, +) or add a recipe (c)";
/// Said when the curves' models tokenize the text differently and the chart shows token ppl.
pub const TOKENIZER_NOTICE: &str =
    "token ppl: not comparable across tokenizers — press y for bits/byte";

/// The plot area inside the chart panel (where the canvas draws), for mouse mapping.
pub fn plot_area(panel: Rect) -> Rect {
    let inner = Rect::new(
        panel.x + 1,
        panel.y + 1,
        panel.width.saturating_sub(2),
        panel.height.saturating_sub(2),
    );
    Rect::new(
        inner.x + Y_LABELS,
        inner.y + 1,
        inner.width.saturating_sub(Y_LABELS),
        inner.height.saturating_sub(2),
    )
}

struct Drawn {
    label: String,
    color: Color,
    marker: &'static str,
    pts: Vec<(f64, f64)>,
    /// log2 of the length from which the curve's points are final; before it the markers are
    /// drawn in [`PROVISIONAL`] (None: no point is final yet).
    final_from: Option<f64>,
}

/// The colour of the markers of points a later window will still change (the curve's own
/// marker, so the curve stays recognisable).
const PROVISIONAL: Color = Color::Gray;

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let what = match app.metric {
        Metric::TokenPpl => "Perplexity",
        Metric::BitsPerByte => "Bits per byte",
        Metric::Kl => "KL divergence from the original",
    };
    let title = format!(
        " {what} vs input length · train_len {} · sweep to {} ",
        app.info.train_len, app.lmax
    );
    let mut block = panel(title, focused);
    if app.metric == Metric::Kl {
        block = block.title_bottom(
            Line::from(" mean KL(original ‖ curve), nats/token · y for perplexity ").dark_gray(),
        );
    } else if app.tokenizers_differ() {
        block = block.title_bottom(match app.metric {
            Metric::TokenPpl => Line::styled(
                format!(" {TOKENIZER_NOTICE} "),
                Style::new().fg(palette::CURSOR),
            ),
            Metric::BitsPerByte | Metric::Kl => {
                Line::from(" bits/byte: comparable across tokenizers · y for token ppl ")
                    .dark_gray()
            }
        });
    }
    block.render(area, buf);
    let plot = plot_area(area);
    if plot.width < 10 || plot.height < 4 {
        return;
    }
    let curves = if app.metric == Metric::Kl {
        kl_curves(app)
    } else {
        value_curves(app)
    };
    let (x0, x1) = chart_x_bounds(&app.grid);
    let ys: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.pts.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .collect();
    let inner = Rect::new(
        area.x + 1,
        area.y + 1,
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    );
    let unit = match app.metric {
        Metric::TokenPpl => "ppl",
        Metric::BitsPerByte => "bits/B",
        Metric::Kl => "nats",
    };
    buf.set_stringn(
        inner.x,
        inner.y,
        format!("{unit:>6}"),
        Y_LABELS as usize - 1,
        Style::new().dark_gray(),
    );
    legend(
        &curves,
        Rect::new(
            inner.x + Y_LABELS,
            inner.y,
            inner.width.saturating_sub(Y_LABELS),
            1,
        ),
        buf,
    );
    if ys.is_empty() {
        let (done, total) = app.progress();
        let waiting = if app.metric == Metric::Kl {
            if curves.is_empty() {
                NO_KL_NOTICE.to_string()
            } else {
                "computing the KL divergence…".to_string()
            }
        } else if app.metric == Metric::BitsPerByte && !curves.is_empty() {
            "no byte counts for this input (token ids): press y for token perplexity".to_string()
        } else {
            match &app.curves[0].live {
                Some(p) => format!(
                    "computing the sweep… window {}/{total} · {}",
                    done + 1,
                    super::status::live(p)
                ),
                None => format!("computing the sweep… window {done}/{total}"),
            }
        };
        Line::from(waiting).dark_gray().render(
            Rect::new(
                plot.x + 2,
                plot.y + plot.height / 2,
                plot.width.saturating_sub(2),
                1,
            ),
            buf,
        );
        x_labels(x0, x1, plot, buf);
        return;
    }
    let mut y0 = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let mut y1 = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if app.metric == Metric::Kl {
        // KL is never negative: the axis starts at 0.
        y0 = 0.0;
        y1 = (y1 * 1.08).max(1e-3);
    } else {
        let pad = ((y1 - y0) * 0.08).max(0.05);
        y0 -= pad;
        y1 += pad;
    }
    let tl = (app.info.train_len as f64).log2();
    let cx = (app.length() as f64).log2();
    Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([x0, x1])
        .y_bounds([y0, y1])
        .paint(|ctx| {
            ctx.draw(&CLine {
                x1: tl,
                y1: y0,
                x2: tl,
                y2: y1,
                color: palette::TRAIN_LEN,
            });
            ctx.layer();
            // One layer for every curve: a later layer would replace a shared cell's dots.
            for c in &curves {
                for w in c.pts.windows(2) {
                    ctx.draw(&CLine {
                        x1: w[0].0,
                        y1: w[0].1,
                        x2: w[1].0,
                        y2: w[1].1,
                        color: c.color,
                    });
                }
            }
            ctx.layer();
            ctx.draw(&CLine {
                x1: cx,
                y1: y0,
                x2: cx,
                y2: y1,
                color: palette::CURSOR,
            });
        })
        .render(plot, buf);
    // Shade the extrapolation region and label it.
    let col_of = |x: f64| {
        plot.x + (((x - x0) / (x1 - x0)) * f64::from(plot.width.saturating_sub(1))).round() as u16
    };
    let tcol = col_of(tl).min(plot.right().saturating_sub(1));
    let shade = palette::rgb(28, 30, 44, app.truecolor);
    for y in plot.top()..plot.bottom() {
        for x in (tcol + 1)..plot.right() {
            if let Some(cell) = buf.cell_mut((x, y)) {
                cell.set_bg(shade);
            }
        }
    }
    let label = " extrapolation → ";
    if plot.right() > tcol + 2 + label.len() as u16 {
        buf.set_string(
            tcol + 1,
            plot.y,
            label,
            Style::new().fg(Color::Gray).bg(shade),
        );
    }
    if tcol > plot.x + 12 {
        buf.set_string(
            tcol.saturating_sub(11),
            plot.y,
            "trained ← ",
            Style::new().fg(Color::Gray),
        );
    }
    markers(&curves, plot, [x0, x1], [y0, y1], buf);
    // y labels at five levels (perplexity on a log scale, or bits per byte).
    for k in 0..5 {
        let t = f64::from(k) / 4.0;
        let y = y0 + t * (y1 - y0);
        let row = plot.bottom().saturating_sub(1)
            - ((t * f64::from(plot.height.saturating_sub(1))).round() as u16);
        buf.set_string(
            inner.x,
            row,
            format!(
                "{:>6}",
                match app.metric {
                    Metric::TokenPpl => fmt_ppl(y.exp()),
                    Metric::BitsPerByte => format!("{y:.3}"),
                    Metric::Kl => fmt_kl(y),
                }
            ),
            Style::new().dark_gray(),
        );
    }
    x_labels(x0, x1, plot, buf);
}

fn fmt_kl(k: f64) -> String {
    if k >= 10.0 {
        format!("{k:.1}")
    } else if k >= 0.01 || k == 0.0 {
        format!("{k:.3}")
    } else {
        format!("{k:.0e}")
    }
}

/// The perplexity (or bits per byte) curves: previous slopes, compare models, recipes, then the
/// main curve (drawn last, on top).
fn value_curves(app: &App) -> Vec<Drawn> {
    let mut curves = Vec::new();
    if let Some(prev) = &app.previous
        && let Some(p) = prev.points(&app.grid)
    {
        curves.push(Drawn {
            label: prev.label.clone(),
            color: palette::PREVIOUS,
            marker: PREVIOUS_MARKER,
            pts: to_xy(&app.grid, &p, app.metric),
            final_from: final_from(prev, &app.grid),
        });
    }
    for (i, c) in app.curves.iter().enumerate().skip(1) {
        if let Some(p) = c.points(&app.grid) {
            curves.push(Drawn {
                label: c.label.clone(),
                color: palette::COMPARE[(i - 1) % palette::COMPARE.len()],
                marker: COMPARE_MARKERS[(i - 1) % COMPARE_MARKERS.len()],
                pts: to_xy(&app.grid, &p, app.metric),
                final_from: final_from(c, &app.grid),
            });
        }
    }
    for (i, c) in app.recipes.iter().enumerate() {
        let p = app.recipe_points(i);
        let lengths: Vec<usize> = p.iter().map(|p| p.length).collect();
        curves.push(Drawn {
            label: c.label(),
            color: palette::RECIPE[i % palette::RECIPE.len()],
            marker: RECIPE_MARKERS[i % RECIPE_MARKERS.len()],
            pts: to_xy(&lengths, &p, app.metric),
            final_from: Some(f64::NEG_INFINITY),
        });
    }
    if let Some(p) = app.curves[0].points(&app.grid) {
        curves.push(Drawn {
            label: app.curves[0].label.clone(),
            color: palette::CURRENT,
            marker: MAIN_MARKER,
            pts: to_xy(&app.grid, &p, app.metric),
            final_from: final_from(&app.curves[0], &app.grid),
        });
    }
    curves
}

/// The KL curves: every curve that differs from the original and has some length scored.
fn kl_curves(app: &App) -> Vec<Drawn> {
    let xy = |kl: &mut dyn Iterator<Item = (usize, crate::eval::KlStats)>| -> Vec<(f64, f64)> {
        kl.map(|(l, k)| ((l as f64).log2(), k.mean)).collect()
    };
    let mut curves = Vec::new();
    for (i, c) in app.curves.iter().enumerate().skip(1) {
        if !c.kl.is_empty() {
            curves.push(Drawn {
                label: c.label.clone(),
                color: palette::COMPARE[(i - 1) % palette::COMPARE.len()],
                marker: COMPARE_MARKERS[(i - 1) % COMPARE_MARKERS.len()],
                pts: xy(&mut c.kl.iter().map(|(l, k)| (*l, *k))),
                final_from: Some(f64::NEG_INFINITY),
            });
        }
    }
    for (i, c) in app.recipes.iter().enumerate() {
        let kl = app.recipe_kl(i);
        if !kl.is_empty() {
            curves.push(Drawn {
                label: c.label(),
                color: palette::RECIPE[i % palette::RECIPE.len()],
                marker: RECIPE_MARKERS[i % RECIPE_MARKERS.len()],
                pts: xy(&mut kl.into_iter()),
                final_from: Some(f64::NEG_INFINITY),
            });
        }
    }
    let main = &app.curves[0];
    if app.slopes_edited() && !main.kl.is_empty() {
        curves.push(Drawn {
            label: main.label.clone(),
            color: palette::CURRENT,
            marker: MAIN_MARKER,
            pts: xy(&mut main.kl.iter().map(|(l, k)| (*l, *k))),
            final_from: Some(f64::NEG_INFINITY),
        });
    }
    curves
}

fn fmt_ppl(p: f64) -> String {
    if p >= 10_000.0 {
        format!("{:.0}k", p / 1000.0)
    } else if p >= 100.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

fn x_labels(x0: f64, x1: f64, plot: Rect, buf: &mut Buffer) {
    let row = plot.bottom();
    let mut labels = Vec::new();
    let mut k = x0;
    while k <= x1 + 1e-9 {
        let col = plot.x
            + (((k - x0) / (x1 - x0)) * f64::from(plot.width.saturating_sub(1))).round() as u16;
        let text = format!("{}", 2f64.powf(k).round() as u64);
        let start = col
            .saturating_sub(text.len() as u16 / 2)
            .min(plot.right().saturating_sub(text.len() as u16));
        labels.push((start, text));
        k += 1.0;
    }
    // A label that would touch its neighbour is left out (narrow terminals, many octaves); the
    // longest length always keeps its label.
    let last_start = labels.last().map_or(plot.right(), |l| l.0);
    let mut free_from = plot.x;
    let n = labels.len();
    for (i, (start, text)) in labels.into_iter().enumerate() {
        let end = start + text.len() as u16;
        if start >= free_from && (i + 1 == n || end < last_start) {
            free_from = end + 1;
            buf.set_string(start, row, text, Style::new().dark_gray());
        }
    }
}

/// The curve's samples as (log2 length, y): `ln ppl` (the axis is log-scaled perplexity) or bits
/// per byte; samples without a value are left out.
fn to_xy(grid: &[usize], points: &[crate::eval::Point], metric: Metric) -> Vec<(f64, f64)> {
    grid.iter()
        .zip(points)
        .filter(|(_, p)| p.tokens > 0 && p.ppl.is_finite())
        .filter_map(|(&l, p)| {
            let y = match metric {
                Metric::TokenPpl => Some(p.nll),
                Metric::BitsPerByte => p.bits_per_byte,
                Metric::Kl => None,
            };
            y.filter(|y| y.is_finite()).map(|y| ((l as f64).log2(), y))
        })
        .collect()
}

/// Puts each curve's marker on some of its samples: curve `k` of `n` near the columns
/// `k*period/n + m*period`, so different curves' markers never share a cell and every curve shows
/// where curves run together. The cell is the one the canvas drew the sample's dot into.
fn markers(curves: &[Drawn], plot: Rect, xb: [f64; 2], yb: [f64; 2], buf: &mut Buffer) {
    let n = curves.len() as u16;
    if n == 0 {
        return;
    }
    let period = (MARKER_COLUMNS_PER_CURVE * n).max(MIN_MARKER_PERIOD);
    let reach = period / n / 2;
    // The canvas's own mapping (braille: 2x4 dots a cell).
    let dots = |v: f64, [lo, hi]: [f64; 2], cells: u16, per: f64, flip: bool| {
        let t = if flip { hi - v } else { v - lo };
        ((t * (f64::from(cells) * per - 1.0) / (hi - lo)).round() / per) as u16
    };
    let mut taken = std::collections::HashSet::new();
    for (k, c) in curves.iter().enumerate() {
        let cells: Vec<(u16, u16, bool)> = c
            .pts
            .iter()
            .filter(|p| p.1 >= yb[0] && p.1 <= yb[1])
            .map(|&(x, y)| {
                (
                    dots(x, xb, plot.width, 2.0, false),
                    dots(y, yb, plot.height, 4.0, true),
                    c.final_from.is_some_and(|f| x >= f - 1e-9),
                )
            })
            .collect();
        let mut target = k as u16 * period / n;
        while target < plot.width {
            let nearest = cells
                .iter()
                .min_by_key(|(col, _, _)| col.abs_diff(target))
                .filter(|(col, _, _)| col.abs_diff(target) <= reach);
            if let Some(&(col, row, fin)) = nearest
                && taken.insert((col, row))
                && let Some(cell) = buf.cell_mut((plot.x + col, plot.y + row))
            {
                cell.set_symbol(c.marker)
                    .set_fg(if fin { c.color } else { PROVISIONAL });
            }
            target += period;
        }
    }
}

/// log2 of the length from which `c`'s points on `grid` are final.
fn final_from(c: &super::super::app::Curve, grid: &[usize]) -> Option<f64> {
    c.final_from(grid, super::super::app::MIN_LENGTH)
        .map(|l| (l as f64).log2())
}

fn legend(curves: &[Drawn], area: Rect, buf: &mut Buffer) {
    let mut spans = Vec::new();
    if curves.iter().any(|c| {
        c.pts
            .first()
            .is_some_and(|p| c.final_from.is_none_or(|f| p.0 < f - 1e-9))
    }) {
        spans.push(Span::styled("● ", Style::new().fg(PROVISIONAL)));
        spans.push(Span::raw("so far   "));
    }
    for c in curves.iter().rev() {
        spans.push(Span::styled(
            format!("━{}━ ", c.marker),
            Style::new().fg(c.color),
        ));
        spans.push(Span::raw(format!("{}   ", c.label)));
    }
    spans.push(Span::styled("│ ", Style::new().fg(palette::TRAIN_LEN)));
    spans.push(Span::raw("train_len  "));
    spans.push(Span::styled("│ ", Style::new().fg(palette::CURSOR)));
    spans.push(Span::raw("cursor"));
    Line::from(spans).render(area, buf);
}
