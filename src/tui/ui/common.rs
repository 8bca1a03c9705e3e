//! Small pieces every panel uses: the bordered panel block, reach and token labels.

use super::super::palette;
use ratatui::style::Style;
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

/// Formats a reach in tokens (`inf` for zero slopes).
pub fn fmt_reach(r: f64) -> String {
    if !r.is_finite() {
        "inf".to_string()
    } else if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
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
