//! Head statistics: a layers x heads grid of one statistic at the cursor's length (viridis for
//! the statistic; with `d`, the statistic minus the ALiBi prior's on a diverging map), and below
//! it the selected head's statistic vs input length on the chart's log length axis, with the
//! prior dashed, the training length (white) and the cursor (yellow). A head whose reach holds
//! past the training length draws a flat line there.

use super::super::app::{App, chart_x_bounds};
use super::super::palette;
use super::super::views::prior_stat;
use super::common::{first_fitting, panel, text_on};
use super::lineplot::{LinePlot, Series, VLine, compact};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// Width of the layer label column.
const LAYER_W: u16 = 4;
/// Rows the length plot needs at least.
const PLOT_MIN_ROWS: u16 = 6;

/// A cell's value: the statistic, or the statistic minus the prior's.
fn cell_value(app: &App, layer: usize, head: usize, len: usize) -> Option<f64> {
    let m = app.stats.at(len)?.head(layer, head)?;
    let v = app.stat.of(m)?;
    if app.stat_minus_prior {
        let slope = *app.slopes.get(head)?;
        app.is_alibi().then_some(())?;
        Some(v - prior_stat(app.stat, slope, len)?)
    } else {
        Some(v)
    }
}

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let len = app.length();
    let what = if app.stat_minus_prior {
        format!("{} − prior", app.stat.label())
    } else {
        app.stat.label().to_string()
    };
    let title = format!(
        " Head statistics · {what} · length {len} · s: statistic · d: − prior · v: next view "
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if app.stat_minus_prior && !app.is_alibi() {
        Line::from(format!(
            "{} has {} positions: there is no ALiBi prior to subtract (press d)",
            app.info.name, app.info.position
        ))
        .dark_gray()
        .render(inner, buf);
        return;
    }
    let Some(result) = app.stats.at(len) else {
        Line::from(format!(
            "computing attention statistics at length {len}… (the worker runs them after the sweep)"
        ))
        .dark_gray()
        .render(inner, buf);
        return;
    };
    let (n_layers, n_heads) = (app.info.n_layers, app.info.n_heads);
    // Grid rows: a header, one per layer (a window around the selected one when they do not fit),
    // and the legend; the rest is the length plot.
    let room = inner.height.saturating_sub(PLOT_MIN_ROWS + 2).max(1) as usize;
    let shown = n_layers.min(room);
    let first = app
        .layer
        .saturating_sub(shown / 2)
        .min(n_layers.saturating_sub(shown));
    let cell_w = (inner.width.saturating_sub(LAYER_W) / n_heads.max(1) as u16).max(1);
    let values: Vec<Option<f64>> = (0..n_layers)
        .flat_map(|l| (0..n_heads).map(move |h| (l, h)))
        .map(|(l, h)| cell_value(app, l, h, len))
        .collect();
    let finite = values.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let max_abs = lo.abs().max(hi.abs()).max(1e-12);
    let colour = |v: f64| {
        if app.stat_minus_prior {
            palette::diverging(v / max_abs, app.truecolor)
        } else {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            palette::heat(t, app.truecolor)
        }
    };
    // Header: head numbers.
    for h in 0..n_heads {
        let x = inner.x + LAYER_W + h as u16 * cell_w;
        if cell_w >= 3 && x + cell_w <= inner.right() {
            buf.set_stringn(
                x,
                inner.y,
                format!("h{h}"),
                cell_w as usize,
                Style::new().gray(),
            );
        }
    }
    for (row, layer) in (first..first + shown).enumerate() {
        let y = inner.y + 1 + row as u16;
        buf.set_string(inner.x, y, format!("L{layer:<3}"), Style::new().gray());
        for h in 0..n_heads {
            let x = inner.x + LAYER_W + h as u16 * cell_w;
            if x + cell_w > inner.right() {
                break;
            }
            let v = values[layer * n_heads + h];
            let bg = v
                .filter(|v| v.is_finite())
                .map_or(palette::PANEL_BG, colour);
            let mut style = Style::new().bg(bg).fg(text_on(bg));
            if layer == app.layer && h == app.head {
                style = style.add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
            }
            let plain = v.map_or_else(|| "-".to_string(), compact);
            // The selected head in brackets where they fit (it is also bold and underlined).
            let mut options = vec![plain, String::new()];
            if layer == app.layer && h == app.head {
                options.insert(0, format!("[{}]", options[0]));
            }
            let text = first_fitting(&options, cell_w as usize);
            let text = format!("{text:^w$}", w = cell_w as usize);
            buf.set_stringn(x, y, text, cell_w as usize, style);
        }
    }
    let legend_y = inner.y + 1 + shown as u16;
    let scale = if app.stat_minus_prior {
        format!(
            "blue < 0 < red: below / above the prior, ±{} · ",
            compact(max_abs)
        )
    } else if lo.is_finite() {
        format!("colour {} … {} · ", compact(lo), compact(hi))
    } else {
        String::new()
    };
    let rows_note = if shown < n_layers {
        format!("layers {first}–{} of {n_layers} · ", first + shown - 1)
    } else {
        String::new()
    };
    Line::from(vec![
        Span::raw(scale).gray(),
        Span::raw(rows_note).gray(),
        Span::raw(format!(
            "{} of {len}",
            crate::text::count(result.windows, "window")
        ))
        .dark_gray(),
    ])
    .render(Rect::new(inner.x, legend_y, inner.width, 1), buf);
    // The selected head's statistic vs input length, on the chart's x axis.
    let plot_area = Rect::new(
        inner.x,
        legend_y + 1,
        inner.width,
        inner.bottom().saturating_sub(legend_y + 1),
    );
    let log_y = app.stat.is_distance();
    let tr = |v: f64| if log_y { v.max(0.1).log10() } else { v };
    let lx = |l: usize| (l as f64).log2();
    let mut series = Vec::new();
    series.push(Series {
        label: format!("L{} h{} {}", app.layer, app.head, app.stat.short()),
        color: palette::CURRENT,
        points: app
            .stats
            .series(app.layer, app.head, app.stat)
            .into_iter()
            .map(|(l, v)| (lx(l), tr(v)))
            .collect(),
        dashed: false,
    });
    if app.is_alibi()
        && let Some(&slope) = app.slopes.get(app.head)
    {
        let pts: Vec<(f64, f64)> = app
            .stats
            .by_len
            .keys()
            .filter_map(|&l| Some((lx(l), tr(prior_stat(app.stat, slope, l)?))))
            .collect();
        series.push(Series {
            label: "ALiBi prior".into(),
            color: palette::PREVIOUS,
            points: pts,
            dashed: true,
        });
    }
    let (x0, x1) = chart_x_bounds(&app.grid);
    let ticks = (x0 as i32..=x1 as i32)
        .map(|k| (f64::from(k), format!("{}", 1u64 << k.clamp(0, 62))))
        .collect();
    let plot = LinePlot {
        x_bounds: (x0, x1),
        y_bounds: None,
        x_ticks: ticks,
        y_fmt: if log_y {
            super::lineplot::from_log10
        } else {
            compact
        },
        y_unit: app.stat.short().into(),
        series,
        vlines: vec![
            VLine {
                x: lx(app.info.train_len),
                color: palette::TRAIN_LEN,
            },
            VLine {
                x: lx(len),
                color: palette::CURSOR,
            },
        ],
    };
    plot.render(plot_area, buf);
}
