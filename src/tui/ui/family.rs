//! The position-encoding family: ALiBi beside KERPLE (log, power), T5's buckets, NoPE and
//! rotary's long-term decay (`alibi::family`), one cell per scheme with its bias matrix at the
//! cursor's length (half-block pixels, viridis: `e^bias`, the bucket over the last one, or the
//! bound over its value at 0; the white diagonal is `i − j = train_len`), its curve by log-binned
//! distance (the prior of the last query for the bias schemes, with ALiBi's dashed for
//! comparison; the bucket index for T5; the bound for rotary), formula, parameters, the prior's
//! mean distance and the source. On a small panel, one line per scheme with a colour strip by
//! distance bin and the selected scheme's details.

use super::super::app::App;
use super::super::palette;
use super::common::{half_block, panel};
use super::distance::{bin_x, distance_ticks};
use super::lineplot::{LinePlot, Series, VLine, compact, from_log10};
use crate::alibi::family::{Family, Scheme, Value};
use crate::alibi::prior::{log_bin, log_bin_range, log_bins};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// Rows of one scheme's cell in the full layout: two text lines and at least four for the
/// matrix and the curve.
const CELL_ROWS: u16 = 6;
/// The narrowest cell of the two-column layout.
const MIN_CELL_W: u16 = 38;
/// Decades of attention a prior's curve spans at most.
const DECADES: f64 = 6.0;
/// Colour-bar cells in the legend.
const LEGEND_CELLS: usize = 12;

/// ALiBi's prior, dashed under the other bias schemes' curves.
const ALIBI_DASHED: Color = Color::Gray;

/// The view's key line.
pub const KEYS: &str = "↑↓ scheme · +/- main param · h/l 2nd param";

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let len = app.length();
    let title = if area.width >= 2 * MIN_CELL_W {
        format!(" Position-encoding family · last query of {len} tokens · v: next view ")
    } else {
        format!(" Position-encoding family · length {len} ")
    };
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.width < 20 || inner.height < 3 {
        return;
    }
    let n = Scheme::ALL.len() as u16;
    let cols = if inner.width >= 2 * MIN_CELL_W { 2 } else { 1 };
    let rows = n.div_ceil(cols);
    let footer = 2;
    if inner.height >= rows * CELL_ROWS + footer {
        let cell_h = (inner.height - footer) / rows;
        let cell_w = inner.width / cols;
        for (k, &s) in Scheme::ALL.iter().enumerate() {
            let (c, r) = (k as u16 % cols, k as u16 / cols);
            let cell = Rect::new(
                inner.x + c * cell_w,
                inner.y + r * cell_h,
                cell_w.saturating_sub(1),
                // A blank row between cells only where there is one to spare.
                if cell_h > CELL_ROWS {
                    cell_h - 1
                } else {
                    cell_h
                },
            );
            draw_cell(app, s, k == app.family.selected, cell, buf);
        }
        legend(
            app,
            Rect::new(inner.x, inner.bottom() - 2, inner.width, 1),
            buf,
        );
    } else {
        draw_compact(
            app,
            Rect::new(inner.x, inner.y, inner.width, inner.height - 1),
            buf,
        );
    }
    let keys = if focused {
        KEYS.to_string()
    } else {
        format!("{KEYS} (Tab here first)")
    };
    Line::from(keys)
        .dark_gray()
        .render(Rect::new(inner.x, inner.bottom() - 1, inner.width, 1), buf);
}

/// The scheme's prior mean distance, or why it has none, short.
fn mean_text(f: &Family, s: Scheme, len: usize) -> String {
    match f.prior_mean_distance(s, len) {
        Some(m) => format!("prior mean d {m:.1}"),
        None if s == Scheme::T5 => "no prior: learned".to_string(),
        None => "no prior: a bound".to_string(),
    }
}

fn title_style(selected: bool) -> Style {
    if selected {
        Style::new().black().on_cyan()
    } else {
        Style::new().white().bold()
    }
}

fn draw_cell(app: &App, s: Scheme, selected: bool, area: Rect, buf: &mut Buffer) {
    let f = &app.family.params;
    let len = app.length();
    let w = area.width as usize;
    let marker = if selected { "▶ " } else { "  " };
    let title = format!("{marker}{} · {}", s.title(), f.params_text(s));
    let x = buf
        .set_stringn(area.x, area.y, &title, w, title_style(selected))
        .0;
    let source = format!(" · {}", s.source());
    // The source goes after the title where it fits, else into the curve's legend.
    let source_in_title = (x - area.x) as usize + source.chars().count() <= w;
    if source_in_title {
        buf.set_stringn(x, area.y, source, w, Style::new().dark_gray());
    }
    buf.set_stringn(
        area.x + 2,
        area.y + 1,
        format!("{} · {}", s.formula(), mean_text(f, s, len)),
        w.saturating_sub(2),
        Style::new().gray(),
    );
    let body_h = area.height.saturating_sub(2);
    let side = (body_h * 2).min(area.width / 3);
    let matrix = Rect::new(area.x + 1, area.y + 2, side, body_h);
    draw_matrix(app, s, matrix, buf);
    // No gap: the plot opens with its right-aligned y labels.
    let plot_x = matrix.right();
    let plot = Rect::new(
        plot_x,
        area.y + 2,
        area.right().saturating_sub(plot_x),
        body_h,
    );
    let legend = if source_in_title { "" } else { s.source() };
    draw_curve(app, s, legend, plot, buf);
}

/// The scheme's matrix over queries x keys of the cursor's length; the future is blank.
fn draw_matrix(app: &App, s: Scheme, area: Rect, buf: &mut Buffer) {
    let f = &app.family.params;
    let len = app.length() as f64;
    let (px_w, px_h) = (area.width as usize, 2 * area.height as usize);
    if px_w == 0 {
        return;
    }
    let tl = app.info.train_len as f64;
    let (cell_q, cell_k) = (len / px_h as f64, len / px_w as f64);
    let color = |qi: usize, kj: usize| -> Option<Color> {
        let i = (qi as f64 + 0.5) * cell_q;
        let j = (kj as f64 + 0.5) * cell_k;
        if j > i + cell_k / 2.0 {
            return None;
        }
        let d = (i - j).max(0.0);
        if (d - tl).abs() <= f64::midpoint(cell_q, cell_k) && tl < len {
            return Some(palette::TRAIN_LEN);
        }
        Some(palette::heat(f.shade(s, d.round() as usize), app.truecolor))
    };
    for row in 0..area.height {
        for col in 0..area.width {
            let top = color(2 * row as usize, col as usize);
            let bottom = color(2 * row as usize + 1, col as usize);
            if let Some(cell) = buf.cell_mut((area.x + col, area.y + row)) {
                half_block(cell, top, bottom);
            }
        }
    }
}

/// The scheme's curve by log-binned distance.
/// `label` names the curve in its legend row (empty: no legend).
fn draw_curve(app: &App, s: Scheme, label: &str, area: Rect, buf: &mut Buffer) {
    let f = &app.family.params;
    let len = app.length();
    let bins = log_bins(len).max(1);
    let xy = |v: &[f64], log: bool| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(b, &y)| {
                let y = if !log {
                    y
                } else if y > 0.0 {
                    y.log10()
                } else {
                    f64::NAN
                };
                (bin_x(b), y)
            })
            .collect()
    };
    let profile = f.profile(s, len);
    let mut series = Vec::new();
    let (y_bounds, y_fmt, unit): (_, fn(f64) -> String, _) = match s.value_kind() {
        Value::Bias => {
            let own = xy(&profile, true);
            let ys: Vec<f64> = own.iter().map(|p| p.1).filter(|y| y.is_finite()).collect();
            let top = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let bottom = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let lo = (bottom - 0.5).max(top - DECADES).min(top - 1.0);
            series.push(Series {
                label: label.to_string(),
                color: palette::CURRENT,
                points: own,
                dashed: false,
            });
            if s != Scheme::Alibi {
                let mut alibi = xy(&f.profile(Scheme::Alibi, len), true);
                for p in &mut alibi {
                    p.1 = p.1.max(lo);
                }
                series.insert(
                    0,
                    Series {
                        label: String::new(),
                        color: ALIBI_DASHED,
                        points: alibi,
                        dashed: true,
                    },
                );
            }
            (
                top.is_finite().then_some((lo, top + 0.3)),
                from_log10,
                "attn",
            )
        }
        Value::Bucket => {
            series.push(Series {
                label: label.to_string(),
                color: palette::CURRENT,
                points: xy(&profile, false),
                dashed: false,
            });
            let last = f.t5_buckets.saturating_sub(1) as f64;
            (Some((0.0, last + 0.5)), compact, "bucket")
        }
        Value::DecayBound => {
            series.push(Series {
                label: label.to_string(),
                color: palette::CURRENT,
                points: xy(&profile, false),
                dashed: false,
            });
            (Some((0.0, 1.05)), compact, "bound")
        }
    };
    LinePlot {
        x_bounds: (0.0, (bins - 1).max(1) as f64),
        y_bounds,
        x_ticks: distance_ticks(bins),
        y_fmt,
        y_unit: unit.into(),
        series,
        vlines: vec![VLine {
            x: bin_x(log_bin(app.info.train_len)),
            color: palette::TRAIN_LEN,
        }],
    }
    .render(area, buf);
}

/// The colour bar and what colour and lines mean.
fn legend(app: &App, area: Rect, buf: &mut Buffer) {
    let mut spans = vec![Span::raw("colour 0 ")];
    for k in 0..LEGEND_CELLS {
        let t = k as f64 / (LEGEND_CELLS - 1) as f64;
        spans.push(Span::styled(
            "█",
            Style::new().fg(palette::heat(t, app.truecolor)),
        ));
    }
    spans.push(Span::raw(" 1 = e^bias, bucket/last, bound/bound(0) · "));
    spans.push(Span::styled("┄ ALiBi", Style::new().fg(ALIBI_DASHED)));
    spans.push(Span::raw(" · white: train_len"));
    Line::from(spans).render(area, buf);
}

/// One line per scheme (a colour strip over the distance bins, the prior's mean distance), then
/// the selected scheme's parameters, formula and source.
fn draw_compact(app: &App, area: Rect, buf: &mut Buffer) {
    let f = &app.family.params;
    let len = app.length();
    let bins = log_bins(len);
    let n = Scheme::ALL.len();
    let detail_rows = usize::from(area.height).saturating_sub(n).clamp(1, 2);
    let list_rows = usize::from(area.height).saturating_sub(detail_rows).max(1);
    // Scroll so the selected scheme stays in view.
    let first = (app.family.selected + 1).saturating_sub(list_rows);
    let name_w = 13;
    for (row, k) in (first..n).take(list_rows).enumerate() {
        let s = Scheme::ALL[k];
        let selected = k == app.family.selected;
        let y = area.y + row as u16;
        let marker = if selected { "▶" } else { " " };
        buf.set_stringn(
            area.x,
            y,
            format!("{marker}{:<12}", s.title()),
            name_w,
            title_style(selected),
        );
        let strip_w = bins.min(usize::from(area.width).saturating_sub(name_w + 12));
        for b in 0..strip_w {
            let (from, to) = log_bin_range(b);
            let d = (from + to.min(len).max(from + 1) - 1) / 2;
            let c = palette::heat(f.shade(s, d), app.truecolor);
            if let Some(cell) = buf.cell_mut((area.x + name_w as u16 + b as u16, y)) {
                half_block(cell, Some(c), Some(c));
            }
        }
        let info = match f.prior_mean_distance(s, len) {
            Some(m) => format!("mean d {m:.1}"),
            None => "no prior".to_string(),
        };
        let x = area.x + (name_w + strip_w + 1) as u16;
        buf.set_stringn(
            x,
            y,
            info,
            usize::from(area.right().saturating_sub(x)),
            Style::new().gray(),
        );
    }
    let s = app.family.scheme();
    let details = [
        format!("{} · {}", f.params_text(s), s.formula()),
        format!("{} · {}", s.source(), mean_text(f, s, len)),
    ];
    for (k, text) in details.iter().take(detail_rows).enumerate() {
        buf.set_stringn(
            area.x,
            area.y + (list_rows + k) as u16,
            text,
            usize::from(area.width),
            Style::new().white(),
        );
    }
}
