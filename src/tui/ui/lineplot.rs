//! A small line plot for the attention panel's views: braille lines on a canvas, y labels on the
//! left, x tick labels below, vertical marker lines (training length, cursor) and a legend with
//! each series' colour. Dashed series (priors) are drawn as every other segment.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use ratatui::widgets::canvas::{Canvas, Line as CLine};

/// Width of the y label column.
pub const Y_LABEL_W: u16 = 7;

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Colour.
    pub color: Color,
    /// `(x, y)` in plot coordinates (already log-transformed where the axis is log).
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (every other segment of a finely subdivided line).
    pub dashed: bool,
}

/// A vertical marker line.
#[derive(Debug, Clone)]
pub struct VLine {
    /// Where, in plot x coordinates.
    pub x: f64,
    /// Colour.
    pub color: Color,
}

/// The plot's description.
#[derive(Debug, Clone)]
pub struct LinePlot {
    /// The x range.
    pub x_bounds: (f64, f64),
    /// The y range (None: from the data, padded).
    pub y_bounds: Option<(f64, f64)>,
    /// `(x, label)` ticks under the axis.
    pub x_ticks: Vec<(f64, String)>,
    /// Formats a y value for the labels.
    pub y_fmt: fn(f64) -> String,
    /// The y unit, above the labels.
    pub y_unit: String,
    /// Lines, drawn in order.
    pub series: Vec<Series>,
    /// Marker lines.
    pub vlines: Vec<VLine>,
}

/// Subdivisions of a dashed segment (dash, gap, dash, ...).
const DASHES: usize = 6;

impl LinePlot {
    /// The y range from the data (padded by 8 %), or the given one.
    fn y_range(&self) -> Option<(f64, f64)> {
        if let Some(b) = self.y_bounds {
            return Some(b);
        }
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite())
            .collect();
        let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return None;
        }
        let pad = ((hi - lo) * 0.08).max(1e-3);
        Some((lo - pad, hi + pad))
    }

    /// Draws the plot into `area`: legend on the first row, plot, x ticks on the last row.
    /// Returns false (and draws only the legend) when there is nothing to plot.
    pub fn render(&self, area: Rect, buf: &mut Buffer) -> bool {
        if area.height < 4 || area.width < Y_LABEL_W + 10 {
            return false;
        }
        let mut spans = Vec::new();
        // A series without a label (a band around a labelled one) has no legend entry.
        for s in self.series.iter().filter(|s| !s.label.is_empty()) {
            let glyph = if s.dashed { "┄┄ " } else { "━━ " };
            spans.push(Span::styled(glyph, Style::new().fg(s.color)));
            spans.push(Span::raw(format!("{}   ", s.label)));
        }
        Line::from(spans).render(
            Rect::new(area.x + Y_LABEL_W, area.y, area.width - Y_LABEL_W, 1),
            buf,
        );
        buf.set_stringn(
            area.x,
            area.y,
            format!("{:>6}", self.y_unit),
            Y_LABEL_W as usize - 1,
            Style::new().dark_gray(),
        );
        let plot = Rect::new(
            area.x + Y_LABEL_W,
            area.y + 1,
            area.width - Y_LABEL_W,
            area.height - 2,
        );
        let (x0, x1) = self.x_bounds;
        let Some((y0, y1)) = self.y_range() else {
            return false;
        };
        Canvas::default()
            .marker(Marker::Braille)
            .x_bounds([x0, x1])
            .y_bounds([y0, y1])
            .paint(|ctx| {
                for v in &self.vlines {
                    ctx.draw(&CLine {
                        x1: v.x,
                        y1: y0,
                        x2: v.x,
                        y2: y1,
                        color: v.color,
                    });
                }
                ctx.layer();
                for s in &self.series {
                    for w in s.points.windows(2) {
                        let (a, b) = (w[0], w[1]);
                        if !(a.1.is_finite() && b.1.is_finite()) {
                            continue;
                        }
                        if s.dashed {
                            for k in (0..DASHES).step_by(2) {
                                let t0 = k as f64 / DASHES as f64;
                                let t1 = (k + 1) as f64 / DASHES as f64;
                                ctx.draw(&CLine {
                                    x1: a.0 + (b.0 - a.0) * t0,
                                    y1: a.1 + (b.1 - a.1) * t0,
                                    x2: a.0 + (b.0 - a.0) * t1,
                                    y2: a.1 + (b.1 - a.1) * t1,
                                    color: s.color,
                                });
                            }
                        } else {
                            ctx.draw(&CLine {
                                x1: a.0,
                                y1: a.1,
                                x2: b.0,
                                y2: b.1,
                                color: s.color,
                            });
                        }
                    }
                }
            })
            .render(plot, buf);
        // y labels: top, middle, bottom.
        let rows = plot.height.saturating_sub(1);
        for (row, y) in [(0, y1), (rows / 2, f64::midpoint(y0, y1)), (rows, y0)] {
            buf.set_stringn(
                area.x,
                plot.y + row,
                format!("{:>6}", (self.y_fmt)(y)),
                Y_LABEL_W as usize - 1,
                Style::new().gray(),
            );
        }
        // x ticks under the plot, skipping ones that would overlap.
        let y = plot.bottom();
        let mut next_free = plot.x;
        for (x, label) in &self.x_ticks {
            if *x < x0 || *x > x1 {
                continue;
            }
            let col = plot.x
                + (((x - x0) / (x1 - x0)) * f64::from(plot.width.saturating_sub(1))).round() as u16;
            let start = col.saturating_sub(label.len() as u16 / 2).max(plot.x);
            if start < next_free || start + label.len() as u16 > plot.right() {
                continue;
            }
            buf.set_string(start, y, label, Style::new().gray());
            next_free = start + label.len() as u16 + 1;
        }
        true
    }
}

/// Formats a number compactly for axis labels (`1.2k`, `35`, `0.42`, `3e-4`).
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0e}")
    }
}

/// Formats a log10 value as the number it stands for.
pub fn from_log10(v: f64) -> String {
    compact(10f64.powf(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(12_345.0), "12k");
        assert_eq!(compact(123.4), "123");
        assert_eq!(compact(2.71), "2.7");
        assert_eq!(compact(0.423), "0.42");
        assert_eq!(compact(0.0003), "3e-4");
        assert_eq!(from_log10(2.0), "100");
    }

    #[test]
    fn a_plot_draws_its_series_legend_and_ticks() {
        let p = LinePlot {
            x_bounds: (0.0, 4.0),
            y_bounds: None,
            x_ticks: vec![(0.0, "1".into()), (4.0, "16".into())],
            y_fmt: compact,
            y_unit: "nll".into(),
            series: vec![
                Series {
                    label: "measured".into(),
                    color: Color::Cyan,
                    points: vec![(0.0, 1.0), (4.0, 2.0)],
                    dashed: false,
                },
                Series {
                    label: "prior".into(),
                    color: Color::Gray,
                    points: vec![(0.0, 2.0), (4.0, 1.0)],
                    dashed: true,
                },
            ],
            vlines: vec![VLine {
                x: 2.0,
                color: Color::White,
            }],
        };
        let area = Rect::new(0, 0, 60, 12);
        let mut buf = Buffer::empty(area);
        assert!(p.render(area, &mut buf));
        let text: String = (0..12)
            .map(|y| (0..60).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n")
            .collect();
        assert!(
            text.contains("measured") && text.contains("prior"),
            "{text}"
        );
        assert!(text.contains("16") && text.contains("nll"), "{text}");
        let cyan = (0..60)
            .flat_map(|x| (1..11).map(move |y| (x, y)))
            .any(|(x, y)| buf[(x, y)].fg == Color::Cyan && buf[(x, y)].symbol() != " ");
        assert!(cyan, "no measured line drawn:\n{text}");
    }
}
