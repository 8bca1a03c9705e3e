//! The tour's card on the screen: where it goes (beside the live panels), the card itself (the
//! step's text with live numbers, its task and whether it is done), and the highlight on the panel
//! the step is about.
//!
//! Wide terminals (at least [`WIDE_COLS`] columns) keep all four panels' places: the card takes
//! the slopes panel's (or, when the slopes have the focus, the bias panel's). Narrower ones keep
//! the chart and one lower panel (the focused one, else the step's, else the attention panel) on
//! the left, and give the card the right [`NARROW_CARD_PERCENT`] percent, full height; a focused
//! bias or slopes panel takes the whole left column (the bias matrices need it).

use super::live::{fill, fill_marked};
use crate::tui::app::App;
use crate::tui::keymap::Focus;
use crate::tui::palette;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Widget, Wrap};

/// From this width on, the card takes one panel's place; below it, a column of its own.
pub const WIDE_COLS: u16 = 120;
/// The card's share of a narrow terminal's width.
pub const NARROW_CARD_PERCENT: u16 = 42;
/// The tour's colour: the card's border and the highlighted panel's.
pub const TOUR: Color = Color::LightMagenta;
/// The tag drawn on the highlighted panel's top border.
pub const TAG: &str = " ◆ tour ";

/// The panels' places with the card shown, in [`Focus::ALL`]'s order (a panel not shown gets an
/// empty rectangle), and the card's place. `panels` is the layout without the card, `status_rows`
/// the status bar's height, `area` the whole screen.
pub fn place(app: &App, panels: [Rect; 4], status_rows: u16, area: Rect) -> ([Rect; 4], Rect) {
    let [mut chart, mut slopes, mut bias, mut attention] = panels;
    let card;
    if area.width >= WIDE_COLS {
        if app.focus == Focus::Slopes {
            card = std::mem::take(&mut bias);
        } else {
            card = std::mem::take(&mut slopes);
        }
    } else {
        let main = Rect {
            height: area.height.saturating_sub(status_rows),
            ..area
        };
        let [left, right] = Layout::horizontal([
            Constraint::Percentage(100 - NARROW_CARD_PERCENT),
            Constraint::Percentage(NARROW_CARD_PERCENT),
        ])
        .areas(main);
        card = right;
        // The bias matrices and the slope table need the whole column to be legible; they get it
        // while they hold the focus.
        let [top, lower] = if matches!(app.focus, Focus::Slopes | Focus::Bias) {
            [Rect::default(), left]
        } else {
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(left)
        };
        let step_panel = highlighted(app).filter(|f| *f != Focus::Chart);
        let shown = match app.focus {
            Focus::Chart => step_panel.unwrap_or(Focus::Attention),
            f => f,
        };
        chart = top;
        slopes = Rect::default();
        bias = Rect::default();
        attention = Rect::default();
        match shown {
            Focus::Slopes => slopes = lower,
            Focus::Bias => bias = lower,
            _ => attention = lower,
        }
    }
    ([chart, slopes, bias, attention], card)
}

/// The panel the current step is about (its `focus:`), when the card is shown.
pub fn highlighted(app: &App) -> Option<Focus> {
    let t = app.tour.as_ref().filter(|t| t.visible)?;
    t.current().state.focus
}

/// Recolours the border of the step's panel and tags it (drawn after the panels).
pub fn highlight(app: &App, panels: [Rect; 4], buf: &mut Buffer) {
    let Some(f) = highlighted(app) else { return };
    let i = Focus::ALL.iter().position(|p| *p == f).unwrap_or(0);
    let r = panels[i].intersection(buf.area);
    if r.width < 2 || r.height < 2 {
        return;
    }
    let border = |s: &str| s.chars().all(|c| ('\u{2500}'..='\u{257f}').contains(&c));
    for x in r.left()..r.right() {
        for y in [r.top(), r.bottom() - 1] {
            let cell = &mut buf[(x, y)];
            if border(cell.symbol()) {
                cell.set_fg(TOUR);
            }
        }
    }
    for y in r.top()..r.bottom() {
        for x in [r.left(), r.right() - 1] {
            let cell = &mut buf[(x, y)];
            if border(cell.symbol()) {
                cell.set_fg(TOUR);
            }
        }
    }
    let w = TAG.chars().count() as u16;
    if r.width > w + 4 {
        let x = r.right() - 2 - w;
        buf.set_string(
            x,
            r.top(),
            TAG,
            Style::new()
                .fg(Color::Black)
                .bg(TOUR)
                .add_modifier(Modifier::BOLD),
        );
    }
}

/// Text with `**bold**`, `*italic*` and `` `code` `` spans styled; `base` for the rest.
fn styled(text: &str, base: Style, spans: &mut Vec<Span<'static>>) {
    let mut bold = false;
    let mut italic = false;
    let mut code = false;
    let mut cur = String::new();
    let flush =
        |cur: &mut String, bold: bool, italic: bool, code: bool, spans: &mut Vec<Span<'static>>| {
            if cur.is_empty() {
                return;
            }
            let mut st = base;
            if bold {
                st = st.add_modifier(Modifier::BOLD);
            }
            if italic {
                st = st.add_modifier(Modifier::ITALIC);
            }
            if code {
                st = st.fg(Color::LightCyan);
            }
            spans.push(Span::styled(std::mem::take(cur), st));
        };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("**") && !code {
            flush(&mut cur, bold, italic, code, spans);
            bold = !bold;
            rest = &rest[2..];
        } else if c == '*' && !code && (italic || rest[1..].contains('*')) {
            flush(&mut cur, bold, italic, code, spans);
            italic = !italic;
            rest = &rest[1..];
        } else if c == '`' {
            flush(&mut cur, bold, italic, code, spans);
            code = !code;
            rest = &rest[1..];
        } else {
            cur.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    flush(&mut cur, bold, italic, code, spans);
}

/// Rows a line takes when wrapped at words into `width` columns (as the card's paragraph does,
/// near enough to say whether the text fits).
fn wrapped_rows(line: &Line<'_>, width: usize) -> usize {
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    let mut rows = 1;
    let mut col = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let w = Line::from(word).width();
        let need = if col == 0 { w } else { col + 1 + w };
        if need > width && col > 0 {
            rows += 1 + (w.saturating_sub(1)) / width.max(1);
            col = w % width.max(1);
        } else {
            col = need;
        }
    }
    rows
}

/// A template line as styled spans: live numbers green, "computing…" grey.
fn line_of(app: &App, t: &super::Template, base: Style) -> Line<'static> {
    let mut spans = Vec::new();
    for (text, live) in fill_marked(app, t) {
        match live {
            None => styled(&text, base, &mut spans),
            Some(true) => spans.push(Span::styled(
                text,
                base.fg(Color::LightGreen).add_modifier(Modifier::BOLD),
            )),
            Some(false) => spans.push(Span::styled(
                text,
                base.fg(Color::DarkGray).add_modifier(Modifier::ITALIC),
            )),
        }
    }
    Line::from(spans)
}

/// Markdown paragraphs: consecutive lines joined by a space, a blank line between paragraphs;
/// list items (`- `) and headings start a line of their own.
fn paragraphs(app: &App, body: &[super::Template]) -> Vec<Line<'static>> {
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut open = false;
    for t in body {
        if t.is_blank() {
            out.push(Line::default());
            open = false;
            continue;
        }
        let mut l = line_of(app, t, Style::new());
        let first = l
            .spans
            .first()
            .map(|s| s.content.to_string())
            .unwrap_or_default();
        let starts_block =
            first.starts_with("- ") || first.starts_with("* ") || first.starts_with('#');
        if let Some(s) = l.spans.first_mut()
            && s.content.starts_with('#')
        {
            s.content = s
                .content
                .trim_start_matches('#')
                .trim_start()
                .to_string()
                .into();
            s.style = s.style.add_modifier(Modifier::BOLD);
        }
        match out.last_mut() {
            Some(prev) if open && !starts_block => {
                prev.spans.push(Span::raw(" "));
                prev.spans.extend(l.spans);
            }
            _ => out.push(l),
        }
        open = true;
    }
    out
}

/// Draws the card of the current step.
pub fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let Some(t) = &app.tour else { return };
    let step = t.current();
    let title = format!(
        " Tour {}/{} · {} ",
        t.step + 1,
        t.tour.steps.len(),
        fill(app, &step.title)
    );
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(TOUR))
        .title(Span::styled(
            title,
            Style::new().fg(TOUR).add_modifier(Modifier::BOLD),
        ));
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    // The task and the keys stay at the bottom; the text fills the rest.
    let mut foot: Vec<Line> = Vec::new();
    if let Some(task) = &step.task {
        let done = t.done.get(t.step).copied().unwrap_or(false);
        let (mark, colour) = if done {
            ("✓ done: ", Color::LightGreen)
        } else {
            ("▶ try: ", palette::CURSOR)
        };
        let mut l = line_of(app, &task.text, Style::new().fg(colour));
        l.spans.insert(
            0,
            Span::styled(mark, Style::new().fg(colour).add_modifier(Modifier::BOLD)),
        );
        foot.push(l);
    }
    foot.push(Line::from(Span::styled(
        "n next · N back · g leave the tour · ? keys",
        Style::new().dark_gray(),
    )));
    let w = usize::from(inner.width.max(1));
    let foot_h = foot
        .iter()
        .map(|l| l.width().div_ceil(w).max(1))
        .sum::<usize>()
        .min(usize::from(inner.height)) as u16;
    let foot_par = Paragraph::new(foot).wrap(Wrap { trim: true });
    let [text_area, foot_area] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(foot_h)]).areas(inner);
    let text = paragraphs(app, &step.body);
    let rows: usize = text.iter().map(|l| wrapped_rows(l, w)).sum();
    let mut text_area = text_area;
    if rows > usize::from(text_area.height) && text_area.height > 1 {
        // Say that the text goes on rather than cut it silently.
        let more = Rect {
            y: text_area.bottom() - 1,
            height: 1,
            ..text_area
        };
        Line::from(Span::styled(
            "… more: a bigger terminal shows the rest",
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::ITALIC),
        ))
        .render(more, buf);
        text_area.height -= 1;
    }
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .render(text_area, buf);
    foot_par.render(foot_area, buf);
}
