//! The help overlay: every key, from the same table the README prints.

use super::super::keymap::KEY_HELP;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

pub(super) fn render(area: Rect, buf: &mut Buffer) {
    let w = area.width.min(96);
    let h = area.height.min(KEY_HELP.len() as u16 + 4);
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(popup, buf);
    let mut lines: Vec<Line> = KEY_HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>32}  "), Style::new().cyan()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("Esc or ? closes this help").dark_gray());
    Paragraph::new(lines)
        .block(Block::bordered().title(" Keys "))
        .render(popup, buf);
}
