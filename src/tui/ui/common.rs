//! Small pieces every panel uses: the bordered panel block, half-block pixels, reach and token
//! labels.

use super::super::palette;
use ratatui::buffer::Cell;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType};

/// A bordered panel block, highlighted when focused.
pub fn panel<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let block = Block::bordered().title(title.into());
    if focused {
        block
            .border_type(BorderType::Thick)
            .border_style(Style::new().fg(palette::FOCUS))
    } else {
        block.border_style(Style::new().dark_gray())
    }
}

/// Draws two vertical pixels into one cell; `None` is a blank pixel (the masked future). A blank
/// pixel must be the panel's background, not a glyph in `Color::Reset` (the terminal would paint
/// that in its default foreground, as a light stripe): both blank is a space, one blank is the
/// other pixel's half block (`▀` or `▄`) over the panel background.
pub fn half_block(cell: &mut Cell, top: Option<Color>, bottom: Option<Color>) {
    let (symbol, fg, bg) = match (top, bottom) {
        (Some(t), Some(b)) => ("▀", t, b),
        (Some(t), None) => ("▀", t, palette::PANEL_BG),
        (None, Some(b)) => ("▄", b, palette::PANEL_BG),
        (None, None) => (" ", palette::PANEL_BG, palette::PANEL_BG),
    };
    cell.set_symbol(symbol).set_fg(fg).set_bg(bg);
}

/// The first of `candidates` (longest first) that fits in `width` columns, else the last one.
pub fn first_fitting(candidates: &[String], width: usize) -> &str {
    candidates
        .iter()
        .find(|t| t.chars().count() <= width)
        .or(candidates.last())
        .map_or("", String::as_str)
}

/// Formats a reach in tokens in at most 7 columns (`inf` for zero slopes): `850`, `12k`,
/// `3400k`, `12M`, `9999M`, then scientific (`1.3e21`).
pub fn fmt_reach(r: f64) -> String {
    if !r.is_finite() {
        "inf".to_string()
    } else if r < 10_000.0 {
        format!("{r:.0}")
    } else if r < 1e7 {
        format!("{:.0}k", r / 1e3)
    } else if r < 1e10 {
        format!("{:.0}M", r / 1e6)
    } else {
        crate::alibi::fmt_fixed(r, 0, 7)
    }
}

/// A short printable form of a token (whitespace made visible, cut to `max` chars).
pub fn token_label(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '→',
            ' ' => '·',
            c if c.is_control() => '?',
            c => c,
        })
        .take(max)
        .collect();
    t
}

/// Readable text (black or white) on a cell of colour `bg`, truecolor or xterm-256.
pub fn text_on(bg: Color) -> Color {
    /// The xterm 6x6x6 cube's channel levels.
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let (r, g, b) = match bg {
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Indexed(i @ 16..=231) => {
            let k = usize::from(i - 16);
            (LEVELS[k / 36], LEVELS[(k / 6) % 6], LEVELS[k % 6])
        }
        Color::Indexed(i @ 232..=255) => {
            let v = 8 + 10 * (i - 232);
            (v, v, v)
        }
        _ => return Color::White,
    };
    let luma = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    if luma > 140.0 {
        Color::Black
    } else {
        Color::White
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_readable_on_light_and_dark_cells() {
        assert_eq!(text_on(Color::Rgb(250, 250, 250)), Color::Black);
        assert_eq!(text_on(Color::Rgb(20, 20, 60)), Color::White);
        assert_eq!(text_on(Color::Indexed(231)), Color::Black);
        assert_eq!(text_on(Color::Indexed(16)), Color::White);
        assert_eq!(text_on(Color::Indexed(255)), Color::Black);
    }

    fn drawn(top: Option<Color>, bottom: Option<Color>) -> Cell {
        let mut cell = Cell::default();
        // A stale glyph and colours from the last frame must not survive.
        cell.set_symbol("X").set_fg(Color::Red).set_bg(Color::Blue);
        half_block(&mut cell, top, bottom);
        cell
    }

    #[test]
    fn masked_pixels_are_blank_in_both_palettes() {
        for truecolor in [true, false] {
            let a = palette::heat(0.2, truecolor);
            let b = palette::heat(0.9, truecolor);
            let both = drawn(Some(a), Some(b));
            assert_eq!((both.symbol(), both.fg, both.bg), ("▀", a, b));
            let top_only = drawn(Some(a), None);
            assert_eq!(
                (top_only.symbol(), top_only.fg, top_only.bg),
                ("▀", a, palette::PANEL_BG)
            );
            let bottom_only = drawn(None, Some(b));
            assert_eq!(
                (bottom_only.symbol(), bottom_only.fg, bottom_only.bg),
                ("▄", b, palette::PANEL_BG)
            );
            let none = drawn(None, None);
            assert_eq!(
                (none.symbol(), none.fg, none.bg),
                (" ", palette::PANEL_BG, palette::PANEL_BG)
            );
        }
    }
}
