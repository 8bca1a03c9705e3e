//! The slope editor: each head's slope and reach, the selected head, `slopes check`'s verdict on
//! the current slopes, and the editing keys.

use super::super::app::App;
use super::common::{fmt_reach, panel};
use crate::alibi::check::{CheckOptions, Verdict, check, infer_max_bias};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

/// `slopes check`'s verdict on the current slopes, against the paper's formula and, for a model
/// whose own slopes are the geometric sequence of another maximum bias (MPT's
/// `alibi_bias_max`), that one too.
fn verdict_line(app: &App) -> Line<'static> {
    let mpt_bias_max = app.info.slopes.as_deref().and_then(infer_max_bias);
    let verdict = check(
        &app.slopes,
        &CheckOptions {
            heads: Some(app.info.n_heads),
            mpt_bias_max,
        },
    );
    let (mark, colour) = match verdict {
        Verdict::Match(_) => ("✓", Color::Green),
        Verdict::Unknown => ("?", Color::Yellow),
        Verdict::Fault(_) => ("✗", Color::LightRed),
    };
    Line::from(vec![
        Span::styled("check ", Style::new().dark_gray()),
        Span::styled(
            format!("{mark} {}", verdict.short()),
            Style::new().fg(colour),
        ),
    ])
}

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let block = panel(format!(" Slopes · {} ", app.slopes_label), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if !app.is_alibi() {
        Paragraph::new(vec![
            Line::from(format!(
                "{} uses {} positions.",
                app.info.name, app.info.position
            )),
            Line::from("There are no ALiBi slopes to edit; the chart,").dark_gray(),
            Line::from("heatmap and --compare models still work.").dark_gray(),
        ])
        .render(inner, buf);
        return;
    }
    let reaches = app.reaches();
    let max = app.slopes.iter().copied().fold(0.0, f64::max).max(1e-12);
    let bar_w = inner.width.saturating_sub(26) as usize;
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{:>3} {:>10} {:>7}  ", "h", "slope", "reach"),
            Style::new().dark_gray(),
        ),
        Span::styled("slope (relative)", Style::new().dark_gray()),
    ])];
    let rows = inner.height.saturating_sub(4) as usize;
    let first = app.head.saturating_sub(rows.saturating_sub(1));
    for (h, (&m, &r)) in app
        .slopes
        .iter()
        .zip(&reaches)
        .enumerate()
        .skip(first)
        .take(rows)
    {
        let filled = ((m / max) * bar_w as f64).round() as usize;
        let changed = app
            .info
            .slopes
            .as_ref()
            .and_then(|s| s.get(h))
            .is_some_and(|&orig| (orig - m).abs() > 1e-12 * orig.abs().max(1.0));
        let style = if h == app.head {
            Style::new().black().on_cyan()
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{h:>3} {:>10} {:>7}  ",
                    crate::alibi::fmt_fixed(m, 6, 10),
                    fmt_reach(r)
                ),
                style,
            ),
            Span::styled(
                "█".repeat(filled),
                Style::new().fg(if changed {
                    Color::LightMagenta
                } else {
                    Color::Cyan
                }),
            ),
        ]));
    }
    while lines.len() < rows + 1 {
        lines.push(Line::from(""));
    }
    lines.push(verdict_line(app));
    lines.push(
        Line::from("reach = ln(100)/slope: tokens until the bias cuts attention 100x").dark_gray(),
    );
    lines.push(Line::from("p preset  */ scale all  +- head  r reset  b A/B  S/L file").dark_gray());
    Paragraph::new(lines).render(inner, buf);
}
