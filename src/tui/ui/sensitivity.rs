//! Per-head slope sensitivity: heads (rows) x slope variants (0, half, double) at the training
//! length and the cursor's (columns), each cell the change in perplexity against the current
//! slopes (± its paired standard error when there is room), on a diverging map: red = worse
//! without/with that change, blue = better. The worker fills it one run at a time.

use super::super::app::App;
use super::super::palette;
use super::common::{panel, text_on};
use super::lineplot::compact;
use crate::eval::ablate::Variant;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// Width of the head label column.
const HEAD_W: u16 = 12;

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let s = &app.sensitivity;
    let lengths = &s.lengths;
    let title = format!(
        " Slope sensitivity · Δ perplexity at {} · v: next view ",
        lengths
            .iter()
            .map(|l| format!("L={l}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if !app.is_alibi() {
        Line::from(format!(
            "{} uses {} positions: there are no ALiBi slopes to vary",
            app.info.name, app.info.position
        ))
        .dark_gray()
        .render(inner, buf);
        return;
    }
    let Some(base) = &s.baseline else {
        Line::from(
            "computing the baseline… (the worker runs the sensitivity after sweeps and statistics)",
        )
        .dark_gray()
        .render(inner, buf);
        return;
    };
    let cols = Variant::SLOPES.len() * lengths.len().max(1);
    let col_w = (inner.width.saturating_sub(HEAD_W) / cols.max(1) as u16).max(4);
    // Header: variant and length; the baseline under it.
    for (v, variant) in Variant::SLOPES.iter().enumerate() {
        for (k, len) in lengths.iter().enumerate() {
            let x = inner.x + HEAD_W + ((v * lengths.len() + k) as u16) * col_w;
            if x + col_w > inner.right() {
                continue;
            }
            // One column of space between headers: the longest label form that leaves it.
            let name = variant.name();
            let initial = &name[..1];
            let forms = [
                format!("{name} @{len}"),
                format!("{name}@{len}"),
                format!("{initial}@{len}"),
                format!("{initial}{len}"),
            ];
            let text = super::common::first_fitting(&forms, (col_w as usize).saturating_sub(1));
            buf.set_stringn(
                x,
                inner.y,
                format!("{text:^w$}", w = col_w as usize - 1),
                col_w as usize - 1,
                Style::new().gray(),
            );
        }
    }
    let base_text = base
        .iter()
        .map(|d| format!("ppl {:.2} at {}", d.ppl, d.length))
        .collect::<Vec<_>>()
        .join(", ");
    buf.set_stringn(
        inner.x,
        inner.y,
        "head  slope",
        HEAD_W as usize,
        Style::new().gray(),
    );
    let max_abs = s
        .rows
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .map(|d| d.delta_ppl.abs())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let rows_room = inner.height.saturating_sub(3) as usize;
    let heads = s.slopes.len();
    let first = app
        .head
        .saturating_sub(rows_room / 2)
        .min(heads.saturating_sub(rows_room));
    for (row, head) in (first..heads).take(rows_room).enumerate() {
        let y = inner.y + 1 + row as u16;
        let mut label = Style::new().gray();
        if head == app.head {
            label = label.add_modifier(Modifier::BOLD | Modifier::REVERSED);
        }
        buf.set_stringn(
            inner.x,
            y,
            format!(
                "h{head:<3} {:<7}",
                crate::alibi::fmt_fixed(s.slopes[head], 4, 7)
            ),
            HEAD_W as usize,
            label,
        );
        for v in 0..Variant::SLOPES.len() {
            for k in 0..lengths.len() {
                let x = inner.x + HEAD_W + ((v * lengths.len() + k) as u16) * col_w;
                if x + col_w > inner.right() {
                    continue;
                }
                let cell = s
                    .rows
                    .get(head)
                    .and_then(|r| r[v].as_ref())
                    .and_then(|d| d.get(k));
                let (text, style) = match cell {
                    Some(d) => {
                        let bg = palette::diverging(d.delta_ppl / max_abs, app.truecolor);
                        let sign = if d.delta_ppl > 0.0 { "+" } else { "" };
                        let mut t = format!("{sign}{}", compact(d.delta_ppl));
                        let with_se = format!("{t}±{}", compact(d.delta_stderr));
                        if with_se.chars().count() < col_w as usize {
                            t = with_se;
                        }
                        (t, Style::new().bg(bg).fg(text_on(bg)))
                    }
                    None => ("…".to_string(), Style::new().dark_gray()),
                };
                buf.set_stringn(
                    x,
                    y,
                    format!("{text:^w$}", w = col_w as usize),
                    col_w as usize,
                    style,
                );
            }
        }
    }
    let (done, total) = s.progress;
    Line::from(format!(
        "{done}/{total} runs · baseline {base_text} · red worse, blue better (± paired s.e.) · first {} tokens",
        crate::tui::worker::SENSITIVITY_TOKENS
    ))
    .dark_gray()
    .render(
        Rect::new(inner.x, inner.bottom().saturating_sub(1), inner.width, 1),
        buf,
    );
}
