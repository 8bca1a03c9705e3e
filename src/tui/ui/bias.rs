//! Per-head ALiBi bias matrices at the current length, as small multiples. Colour is
//! `exp(bias) = exp(-m*(i-j))`: the factor by which the bias alone scales attention to a key
//! `i-j` tokens back (1 = no penalty). The diagonal `i-j = train_len` is drawn in white: keys
//! farther back than that were never seen in training; the panel's title says so whenever the
//! length is past `train_len`, so the line does not read as holes in the matrix.

use super::super::app::App;
use super::super::palette;
use super::common::{first_fitting, fmt_reach, half_block, panel};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget};

/// The smallest box for one head.
const MIN_BOX: (u16, u16) = (12, 5);

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let len = app.length();
    let tl = app.info.train_len;
    // Past train_len the white line needs naming; on a narrow panel the colour key goes first,
    // then the wording shortens, so the line's meaning stays readable.
    let titles = if tl < len && app.is_alibi() {
        vec![
            format!(
                " ALiBi bias per head · length {len} · white: i-j = train_len {tl} · colour = e^bias "
            ),
            format!(" ALiBi bias per head · length {len} · white: i-j = train_len {tl} "),
            format!(" ALiBi bias · length {len} · white: i-j = train_len {tl} "),
            format!(" bias · length {len} · white: i-j = train_len {tl} "),
            format!(" bias · length {len} · white: i-j = {tl} "),
            format!(" bias · white: i-j = {tl} "),
        ]
    } else {
        vec![format!(
            " ALiBi bias per head · length {len} · colour = e^bias "
        )]
    };
    let title = first_fitting(&titles, area.width.saturating_sub(2) as usize);
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if !app.is_alibi() {
        Paragraph::new(format!(
            "{} uses {} positions: no bias matrices.",
            app.info.name, app.info.position
        ))
        .render(inner, buf);
        return;
    }
    let n = app.slopes.len();
    if n == 0 || inner.width < MIN_BOX.0 || inner.height < MIN_BOX.1 {
        return;
    }
    if app.enlarged {
        let h = app.head.min(n - 1);
        draw_head(app, h, inner, buf, true);
        return;
    }
    // Choose a grid that keeps boxes roughly square on screen (cells are ~2:1).
    let mut best = (1usize, n);
    let mut best_score = f64::MIN;
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let w = inner.width as usize / cols;
        let h = inner.height as usize / rows;
        if w < MIN_BOX.0 as usize || h < MIN_BOX.1 as usize {
            continue;
        }
        let side = (w as f64 / 2.0).min(h as f64 - 1.0);
        if side > best_score {
            best_score = side;
            best = (cols, rows);
        }
    }
    let (cols, rows) = best;
    let w = inner.width / cols as u16;
    let h = inner.height / rows as u16;
    if w < MIN_BOX.0 || h < MIN_BOX.1 {
        Line::from("too small for every head: press e to enlarge one")
            .dark_gray()
            .render(inner, buf);
        return;
    }
    for head in 0..n {
        let (c, r) = ((head % cols) as u16, (head / cols) as u16);
        if r >= rows as u16 {
            break;
        }
        let cell = Rect::new(inner.x + c * w, inner.y + r * h, w.saturating_sub(1), h);
        draw_head(app, head, cell, buf, false);
    }
}

fn draw_head(app: &App, head: usize, area: Rect, buf: &mut Buffer, large: bool) {
    let m = app.slopes[head];
    let len = app.length();
    let selected = head == app.head;
    let label = if large {
        format!(
            "head {head} · slope {m:.6} · reach {} tokens · train_len {} (white)",
            fmt_reach(crate::alibi::reach(m)),
            app.info.train_len
        )
    } else {
        let reach = fmt_reach(crate::alibi::reach(m));
        let labels = [
            format!("h{head} m={m:.3} r={reach}"),
            format!("h{head} r={reach}"),
        ];
        first_fitting(&labels, area.width as usize).to_string()
    };
    let style = if selected {
        Style::new().black().on_cyan()
    } else {
        Style::new().gray()
    };
    buf.set_stringn(area.x, area.y, label, area.width as usize, style);
    let plot = Rect::new(
        area.x,
        area.y + 1,
        area.width,
        area.height.saturating_sub(1),
    );
    let side = plot.width.min(plot.height * 2);
    let px_w = side as usize;
    let px_h = (side as usize).div_ceil(2) * 2;
    let tl = app.info.train_len as f64;
    // None = the masked future (drawn blank).
    let color = |qi: usize, kj: usize| -> Option<Color> {
        // Pixel (qi, kj) covers a block of queries/keys; use its centre.
        let i = (qi as f64 + 0.5) * len as f64 / px_h as f64;
        let j = (kj as f64 + 0.5) * len as f64 / px_w as f64;
        let cell_k = len as f64 / px_w as f64;
        if j > i + cell_k / 2.0 {
            return None;
        }
        let d = (i - j).max(0.0);
        // One pixel per row: the key cell that holds i - train_len (a thin line, not a band).
        if (d - tl).abs() <= cell_k / 2.0 && tl < len as f64 {
            return Some(Color::White);
        }
        Some(palette::heat((-m * d).exp(), app.truecolor))
    };
    for row in 0..(px_h / 2) as u16 {
        if row >= plot.height {
            break;
        }
        for col in 0..px_w as u16 {
            let top = color(2 * row as usize, col as usize);
            let bottom = color(2 * row as usize + 1, col as usize);
            if let Some(cell) = buf.cell_mut((plot.x + col, plot.y + row)) {
                half_block(cell, top, bottom);
            }
        }
    }
}
