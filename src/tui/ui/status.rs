//! The status bar: model, device, dtype, training length, the cursor's length and perplexity with
//! its standard error (or bits per byte, following the chart), the compared models' values at the
//! cursor, worker progress, and the last error or message.

use super::super::app::{App, Metric};
use super::super::messages::Progress;
use super::super::palette;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer) {
    let len = app.length();
    let ratio = len as f64 / app.info.train_len as f64;
    let point = app.point_at_cursor();
    let value = match (app.metric, point) {
        (Metric::TokenPpl | Metric::Kl, None) => "ppl …".to_string(),
        (Metric::BitsPerByte, None) => "bits/byte …".to_string(),
        (Metric::TokenPpl | Metric::Kl, Some(p)) => {
            format!("ppl {:.2} ± {:.2}", p.ppl, p.ppl_stderr)
        }
        (Metric::BitsPerByte, Some(p)) => format!("bits/byte {}", bpb(p.bits_per_byte)),
    };
    // How many tokens it rests on; a point is "final" once no later window can change it (see
    // `Curve::is_final`).
    let detail = point.map_or(String::new(), |p| {
        let state = if app.cursor_final() {
            "final"
        } else {
            "so far"
        };
        format!(" ({} tok, {state})", p.tokens)
    });
    // The compared models (`--compare`) at the same length, so `ALiBi@L at 2L` against a model
    // trained at 2L reads off one line.
    let compared: Vec<String> = app
        .compared_at_cursor()
        .into_iter()
        .map(|(name, p, fin)| {
            // `~`: a value later windows may still change (the main value's "so far").
            let so_far = if fin { "" } else { "~" };
            match (app.metric, p) {
                (_, None) => format!("{name} …"),
                (Metric::BitsPerByte, Some(p)) => {
                    format!("{name} {so_far}{}", bpb(p.bits_per_byte))
                }
                (_, Some(p)) => format!("{name} {so_far}{:.2}", p.ppl),
            }
        })
        .collect();
    let head = format!(" {} ", app.info.name);
    let cursor = format!(" length {len} ({ratio:.2}x train) ");
    let ppl = if compared.is_empty() {
        format!("{value}{detail}")
    } else {
        // On a narrow terminal the compared values matter more than the token count.
        let compared = compared.join(" · ");
        let full = format!("{value}{detail} │ {compared}");
        let width = head.chars().count() + cursor.chars().count() + 2 + full.chars().count();
        if width <= usize::from(area.width) {
            full
        } else {
            format!("{value} │ {compared}")
        }
    };
    let (done, total) = app.progress();
    let c = &app.curves[0];
    let work = if c.done {
        let swept = c.secs.map_or("sweep done".to_string(), |s| {
            format!("sweep done in {s:.1}s")
        });
        match (c.refined, c.refine) {
            (Some(s), _) => format!("{swept}, refined in {s:.1}s"),
            (None, (d, t)) if t > 0 => format!("{swept}, refining short lengths {d}/{t}"),
            _ => swept,
        }
    } else {
        format!("sweep {done}/{total} windows")
    };
    // The long forwards under way: on the first line when it has room, else first on the second.
    let running: Vec<String> = c
        .live
        .iter()
        .map(live)
        .chain(
            app.attention_progress
                .iter()
                .map(|p| format!("attention: layer {}/{}", p.layer.0 + 1, p.layer.1)),
        )
        .collect();
    let running = running.join(" · ");
    let tail = format!(" │ slopes: {}", app.slopes_label);
    let with_running = format!("│ {ppl} │ {work} · {running}{tail}");
    let fits = (head.chars().count() + cursor.chars().count() + with_running.chars().count())
        <= usize::from(area.width);
    let rest = if running.is_empty() {
        format!("│ {ppl} │ {work}{tail}")
    } else if fits {
        with_running
    } else {
        format!("│ {ppl} │ {work}{tail}")
    };
    let line1 = Line::from(vec![
        Span::styled(head, Style::new().black().on_cyan()),
        Span::styled(cursor, Style::new().fg(palette::CURSOR)),
        Span::raw(rest),
    ]);
    line1.render(Rect::new(area.x, area.y, area.width, 1), buf);
    let running_below = !running.is_empty() && !fits;
    let facts = format!(
        " {} · {} · {} ({}) · {} · train_len {} │ ",
        app.info.arch,
        app.info.position,
        app.info.device,
        app.info.device_note,
        app.info.dtype,
        app.info.train_len
    );
    let line2 = if let Some(e) = &app.error {
        Line::from(Span::styled(
            format!(" error: {e}"),
            Style::new().fg(palette::ERROR),
        ))
    } else if running_below {
        Line::from(Span::styled(
            format!(" {running}"),
            Style::new().fg(palette::CURSOR),
        ))
    } else if !app.message.is_empty() {
        Line::from(format!(" {}", app.message))
    } else {
        Line::from(vec![
            Span::raw(facts),
            Span::styled(
                format!(
                    "? help · q quit · Tab panel · m mouse {}",
                    if app.mouse { "on" } else { "off" }
                ),
                Style::new().dark_gray(),
            ),
        ])
    };
    line2.render(Rect::new(area.x, area.y + 1, area.width, 1), buf);
}

/// A long window's progress: positions scored, the layer running, speed and time left.
pub fn live(p: &Progress) -> String {
    format!(
        "window: {}/{} tok, layer {}/{}, {:.0} tok/s, ETA {}",
        p.tokens.0,
        p.tokens.1,
        (p.layer.0 + 1).min(p.layer.1),
        p.layer.1,
        p.tokens_per_s,
        duration(p.eta_s)
    )
}

/// Seconds as `42s`, `3m05s` or `1h02m`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Bits per byte as the status bar shows it (`-` when the text's bytes are unknown).
fn bpb(b: Option<f64>) -> String {
    b.map_or("-".to_string(), |b| format!("{b:.4}"))
}
