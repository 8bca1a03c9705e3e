//! The help overlay: every key, from the same table docs/tui.md prints. Descriptions wrap under
//! their own column, so no line is cut at the right edge of a narrow terminal, and a short
//! terminal scrolls it (↑/↓, PgUp/PgDn) instead of cutting the bottom.

use super::super::keymap::KEY_HELP;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

/// Columns the border and the gap between keys and descriptions take.
const CHROME: usize = 2 + 2;

/// Splits `text` into lines of at most `width` characters at spaces (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: String = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        let need = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if need > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

pub(super) fn render(area: Rect, buf: &mut Buffer, scroll: usize) {
    let key_w = KEY_HELP
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let desc_max = KEY_HELP
        .iter()
        .map(|(_, d)| d.chars().count())
        .max()
        .unwrap_or(0);
    let w = (key_w + desc_max + CHROME).min(area.width as usize);
    let desc_w = w.saturating_sub(key_w + CHROME).max(8);
    let mut lines: Vec<Line> = Vec::new();
    for (k, what) in KEY_HELP {
        for (i, part) in wrap(what, desc_w).into_iter().enumerate() {
            let key = if i == 0 { *k } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!("{key:>key_w$}  "), Style::new().cyan()),
                Span::raw(part),
            ]));
        }
    }
    let rows = (area.height as usize).saturating_sub(3).max(1);
    let total = lines.len();
    let hidden = total.saturating_sub(rows);
    let first = scroll.min(hidden);
    let mut lines: Vec<Line> = lines.into_iter().skip(first).take(rows).collect();
    lines.push(if hidden > 0 {
        Line::from(format!(
            "↑/↓ PgUp/PgDn scroll ({}–{} of {total} lines) · Esc or ? closes this help",
            first + 1,
            first + lines.len(),
        ))
        .dark_gray()
    } else {
        Line::from("Esc or ? closes this help").dark_gray()
    });
    let h = (lines.len() + 2).min(area.height as usize) as u16;
    let w = w as u16;
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(popup, buf);
    Paragraph::new(lines)
        .block(Block::bordered().title(" Keys "))
        .render(popup, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_terminal_scrolls_the_help_to_every_line() {
        let area = Rect::new(0, 0, 80, 24);
        let mut seen = String::new();
        for scroll in 0..60 {
            let mut buf = Buffer::empty(area);
            render(area, &mut buf, scroll);
            for y in 0..area.height {
                for x in 0..area.width {
                    seen.push_str(buf[(x, y)].symbol());
                }
                seen.push('\n');
            }
        }
        assert!(seen.contains("scroll"), "{seen}");
        for (_, what) in KEY_HELP {
            let last = what.split_whitespace().last().unwrap_or_default();
            assert!(seen.contains(last), "'{last}' never shown at 80x24");
        }
    }

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let lines = wrap(
            "toggle mouse capture (off lets the terminal select text)",
            12,
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(
            lines.join(" "),
            "toggle mouse capture (off lets the terminal select text)"
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }

    #[test]
    fn no_help_line_is_cut_at_the_right_edge() {
        for width in [80u16, 100, 200] {
            let area = Rect::new(0, 0, width, 60);
            let mut buf = Buffer::empty(area);
            render(area, &mut buf, 0);
            let text: String = (0..area.height)
                .map(|y| {
                    (0..area.width)
                        .map(|x| buf[(x, y)].symbol())
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\n");
            for (_, what) in KEY_HELP {
                // Each description's words appear in order, whatever the wrapping.
                let last = what.split_whitespace().last().unwrap_or_default();
                assert!(text.contains(last), "{width}: '{last}' missing:\n{text}");
            }
        }
    }
}
