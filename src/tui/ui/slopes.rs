//! The slope editor: each head's slope and reach, the selected head, and the editing keys.

use super::super::app::App;
use super::common::{fmt_reach, panel};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

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
    let rows = inner.height.saturating_sub(3) as usize;
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
            Span::styled(format!("{h:>3} {m:>10.6} {:>7}  ", fmt_reach(r)), style),
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
    lines.push(
        Line::from("reach = ln(100)/slope: tokens until the bias cuts attention 100x").dark_gray(),
    );
    lines.push(Line::from("p preset  */ scale all  +- head  r reset  b A/B  S/L file").dark_gray());
    Paragraph::new(lines).render(inner, buf);
}
