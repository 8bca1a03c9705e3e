//! The attention heatmap of the selected layer and head over the real tokens.
//!
//! Each screen cell holds two pixels (`▀`, foreground = upper, background = lower; the masked
//! future is blank). A pixel covers
//! a block of queries x keys and shows the block's max or mean (the rule is stated in the title);
//! colour is log-scaled from `max/10^4` to `max`, with the range in the legend. Zoom shows a square
//! window on the diagonal; the query row's most attended tokens are listed below.

use super::super::app::{App, Rule};
use super::super::palette;
use super::common::{half_block, panel, token_label};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// Orders of magnitude shown by the colour scale.
pub const DECADES: f64 = 4.0;
/// Width of the token-label column when zoomed in.
const LABEL_W: u16 = 9;

/// Downsamples rows/cols `first..first+count` of a `len x len` map to `w x h` pixels. Pixels whose
/// block lies entirely above the diagonal (the future) are `None`.
pub fn downsample(
    probs: &[f32],
    len: usize,
    first: usize,
    count: usize,
    w: usize,
    h: usize,
    rule: Rule,
) -> Vec<Option<f32>> {
    let mut out = Vec::with_capacity(w * h);
    let span = |p: usize, n: usize| {
        let a = first + p * count / n;
        let b = (first + (p + 1) * count / n).max(a + 1).min(len);
        (a.min(len - 1), b)
    };
    for py in 0..h {
        let (q0, q1) = span(py, h);
        for px in 0..w {
            let (k0, k1) = span(px, w);
            if k0 > q1 - 1 {
                out.push(None);
                continue;
            }
            let mut acc = 0f32;
            let mut n = 0usize;
            for q in q0..q1 {
                let row = &probs[q * len..q * len + len];
                for &v in &row[k0..k1.min(q + 1).max(k0)] {
                    acc = if rule == Rule::Max {
                        acc.max(v)
                    } else {
                        acc + v
                    };
                    n += 1;
                }
            }
            out.push(if n == 0 {
                None
            } else if rule == Rule::Max {
                Some(acc)
            } else {
                Some(acc / n as f32)
            });
        }
    }
    out
}

/// Position of `v` on the log colour scale `[max/10^DECADES, max]`, in `[0, 1]`.
pub fn log_scale(v: f32, max: f32) -> f64 {
    if v <= 0.0 || max <= 0.0 {
        return 0.0;
    }
    let lo = f64::from(max).log10() - DECADES;
    ((f64::from(v).log10() - lo) / DECADES).clamp(0.0, 1.0)
}

pub(super) fn render(app: &App, area: Rect, buf: &mut Buffer, focused: bool) {
    let rule = if app.rule == Rule::Max { "max" } else { "mean" };
    let title = format!(
        " Attention · layer {} head {} · length {} · zoom {}x · {rule} per block · v: next view ",
        app.layer,
        app.head,
        app.attention_len(),
        app.zoom
    );
    let block = panel(title, focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let Some(map) = &app.attention else {
        Line::from("computing attention…")
            .dark_gray()
            .render(inner, buf);
        return;
    };
    if map.len != app.attention_len() || map.layer != app.layer || map.head != app.head {
        buf.set_string(
            inner.right().saturating_sub(12),
            area.y,
            " updating… ",
            Style::new().yellow(),
        );
    }
    if inner.height < 6 || inner.width < 20 {
        return;
    }
    let len = map.len;
    let (first, count) = app.view();
    let (first, count) = (first.min(len - 1), count.min(len - first.min(len - 1)));
    let plot_h = inner.height - 4;
    let labels = count <= plot_h as usize * 2;
    let x0 = inner.x + if labels { LABEL_W } else { 0 };
    let side = (inner.width - (x0 - inner.x)).min(plot_h * 2);
    let (w, h) = (side as usize, plot_h as usize * 2);
    let pixels = downsample(&map.probs, len, first, count, w, h, app.rule);
    let max = pixels.iter().flatten().copied().fold(0f32, f32::max);
    let color = |p: Option<f32>| p.map(|v| palette::heat(log_scale(v, max), app.truecolor));
    for row in 0..plot_h {
        for col in 0..side {
            let top = pixels[(2 * row as usize) * w + col as usize];
            let bottom = pixels[(2 * row as usize + 1) * w + col as usize];
            if let Some(cell) = buf.cell_mut((x0 + col, inner.y + row)) {
                half_block(cell, color(top), color(bottom));
            }
        }
    }
    let qrow = app.query.clamp(first, first + count - 1);
    let qy = inner.y + (((qrow - first) * h / count) / 2) as u16;
    if labels {
        for row in 0..plot_h {
            let q = first + (2 * row as usize) * count / h;
            let style = if (first + (2 * row as usize) * count / h
                ..first + (2 * row as usize + 2) * count / h)
                .contains(&qrow)
            {
                Style::new().black().on_yellow()
            } else {
                Style::new().dark_gray()
            };
            let text = app
                .token_text
                .get(q)
                .map_or(String::new(), |t| token_label(t, LABEL_W as usize - 1));
            buf.set_stringn(
                inner.x,
                inner.y + row,
                format!("{text:>8}"),
                LABEL_W as usize - 1,
                style,
            );
        }
    } else if x0 > inner.x || side < inner.width {
        buf.set_string(x0 + side, qy, "◀ query", Style::new().yellow());
    }
    let axis = format!("queries ↓ / keys → {}..{} of {len}", first, first + count);
    buf.set_stringn(
        inner.x,
        inner.y + plot_h,
        axis,
        inner.width as usize,
        Style::new().dark_gray(),
    );
    // Legend: colour bar with the value range.
    let mut spans = vec![Span::raw(format!(
        "{:.0e} ",
        f64::from(max) / 10f64.powf(DECADES)
    ))];
    for k in 0..16 {
        spans.push(Span::styled(
            "█",
            Style::new().fg(palette::heat(f64::from(k) / 15.0, app.truecolor)),
        ));
    }
    spans.push(Span::raw(format!(
        " {max:.3} (log scale; blank = future, masked)"
    )));
    Line::from(spans).render(
        Rect::new(inner.x, inner.y + plot_h + 1, inner.width, 1),
        buf,
    );
    // Most attended tokens for the query row.
    let top = app.top_attended(5);
    let q_text = app
        .token_text
        .get(qrow)
        .map_or(String::new(), |t| token_label(t, 12));
    let mut spans = vec![Span::styled(
        format!("query {qrow} '{q_text}' → "),
        Style::new().yellow(),
    )];
    for (k, p) in top {
        let t = app
            .token_text
            .get(k)
            .map_or(String::new(), |t| token_label(t, 10));
        spans.push(Span::raw(format!("{k}'{t}' {p:.2}  ")));
    }
    Line::from(spans).render(
        Rect::new(inner.x, inner.y + plot_h + 2, inner.width, 2),
        buf,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_rules_and_mask() {
        // 4x4 causal map.
        let p = [
            1.0, 0.0, 0.0, 0.0, //
            0.5, 0.5, 0.0, 0.0, //
            0.2, 0.3, 0.5, 0.0, //
            0.1, 0.2, 0.3, 0.4,
        ];
        let full = downsample(&p, 4, 0, 4, 4, 4, Rule::Max);
        assert_eq!(full[0], Some(1.0));
        assert_eq!(full[1], None, "future keys are masked");
        assert_eq!(full[15], Some(0.4));
        let max = downsample(&p, 4, 0, 4, 2, 2, Rule::Max);
        assert_eq!(max, vec![Some(1.0), None, Some(0.3), Some(0.5)]);
        let mean = downsample(&p, 4, 0, 4, 2, 2, Rule::Mean);
        assert!((mean[0].unwrap() - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-6);
        assert!((mean[2].unwrap() - (0.2 + 0.3 + 0.1 + 0.2) / 4.0).abs() < 1e-6);
        // A zoomed window on the diagonal.
        let zoom = downsample(&p, 4, 2, 2, 2, 2, Rule::Max);
        assert_eq!(zoom, vec![Some(0.5), None, Some(0.3), Some(0.4)]);
    }

    #[test]
    fn log_scale_spans_four_decades() {
        assert!((log_scale(1.0, 1.0) - 1.0).abs() < 1e-12);
        assert!(log_scale(1e-4, 1.0).abs() < 1e-6);
        assert!((log_scale(1e-2, 1.0) - 0.5).abs() < 1e-6);
        assert_eq!(log_scale(0.0, 1.0), 0.0);
    }
}
