//! Figures for slides (plotters; SVG or PNG by the file's extension), each written from plain data
//! that also serialises to JSON, so a figure can be redrawn elsewhere from what it showed.
//!
//! - [`LineFigure`]: curves on a log x axis (attention by distance, loss by position, a statistic
//!   vs input length), dashed curves for the ALiBi prior, the training length marked.
//! - [`PanelFigure`]: several line figures in a grid under one title (the `stats --plot` figure).
//! - [`maps::AttentionHeatmap`], [`maps::HeadGrid`]: the attention of one head (queries x keys,
//!   log colour scale) and a statistic for every (layer, head).
//! - [`report`]: builders turning a `stats` report into these figures.
//!
//! Write any of them with [`write`] (the figure) or [`write_with_data`] (the figure and a `.json`
//! of its data beside it). Files appear whole or not at all.

pub mod maps;
pub mod report;

use super::plot::{encode_png, register_font};
use crate::files::OutputFile;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Curve colours (matplotlib's tab10), by [`Curve::color`].
pub const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Viridis control points (matplotlib's `viridis`, 9 even steps).
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// A diverging map, blue (negative) through near-white to red (positive) (ColorBrewer `RdBu`,
/// reversed).
const DIVERGING: [(u8, u8, u8); 9] = [
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
];

/// Base font size of labels, pixels.
const LABEL_PX: u32 = 16;

fn lerp_stops(stops: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let lerp = |p: u8, q: u8| (f64::from(p) + (f64::from(q) - f64::from(p)) * f).round() as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Viridis at `t` in `[0, 1]` (clamped; NaN is the low end).
pub fn viridis(t: f64) -> RGBColor {
    lerp_stops(&VIRIDIS, t)
}

/// The diverging map at `t` in `[-1, 1]` (clamped): blue below 0, white at 0, red above.
pub fn diverging(t: f64) -> RGBColor {
    lerp_stops(&DIVERGING, f64::midpoint(t, 1.0))
}

/// Black or white, whichever reads better on `bg`.
pub fn text_on(bg: RGBColor) -> RGBColor {
    let luma = 0.299 * f64::from(bg.0) + 0.587 * f64::from(bg.1) + 0.114 * f64::from(bg.2);
    if luma > 140.0 { BLACK } else { WHITE }
}

/// A figure: data that draws itself onto a plotters area.
pub trait Figure: Serialize {
    /// The title drawn on top.
    fn title(&self) -> &str;
    /// Pixel size (width, height).
    fn size(&self) -> (u32, u32) {
        (960, 600)
    }
    /// Draws onto `root`.
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static;
}

/// The extension of a figure path, `svg` or `png`; `flag` names the option in the message.
pub fn figure_extension(path: &Path, flag: &str) -> Result<&'static str, String> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok("svg"),
        Some("png") => Ok("png"),
        _ => Err(format!(
            "{flag} '{}': the file name must end in .svg or .png",
            path.display()
        )),
    }
}

/// Draws `fig` to `path` (`.svg` or `.png`), through a temporary file renamed into place.
pub fn write(path: &Path, fig: &impl Figure) -> Result<(), String> {
    let ext = figure_extension(path, "figure")?;
    register_font()?;
    let size = fig.size();
    let bytes = (|| {
        if ext == "svg" {
            let mut svg = String::new();
            fig.render(&SVGBackend::with_string(&mut svg, size).into_drawing_area())?;
            Ok(svg.into_bytes())
        } else {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            fig.render(&BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
            encode_png(&rgb, size)
        }
    })()
    .map_err(|e: String| {
        format!(
            "cannot draw '{}': {}",
            path.display(),
            crate::model::error::one_line(e)
        )
    })?;
    crate::files::write_bytes(path, &bytes)
}

/// Writes `data` as pretty JSON to `path`, atomically.
pub fn write_data(path: &Path, data: &impl Serialize) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    serde_json::to_writer_pretty(f.writer(), data).map_err(|e| e.to_string())?;
    writeln!(f.writer()).map_err(|e| e.to_string())?;
    f.commit()
}

/// Draws `fig` to `path` and writes its data to the same path with the extension `.json`;
/// returns the JSON's path.
pub fn write_with_data(path: &Path, fig: &impl Figure) -> Result<PathBuf, String> {
    let json = path.with_extension("json");
    write(path, fig)?;
    write_data(&json, fig)?;
    Ok(json)
}

/// A number for axis labels and cells: short, with enough digits for its size.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".to_string()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else if a >= 0.01 {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.0e}")
    }
}

/// A label for a log axis: only at 1, 2 and 5 times a power of ten (the other ticks stay
/// unlabelled, so labels never run into each other).
pub fn log_label(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        fmt_num(v)
    } else {
        String::new()
    }
}

pub(crate) fn draw_err(e: &dyn std::fmt::Display) -> String {
    format!("cannot draw the figure: {e}")
}

/// One curve of a [`LineFigure`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// Legend label; empty = no legend entry (e.g. the prior under a labelled curve).
    pub label: String,
    /// `(x, y)` points; non-finite or (on log axes) non-positive ones are skipped.
    pub points: Vec<[f64; 2]>,
    /// Dashed (the ALiBi prior) rather than solid.
    pub dashed: bool,
    /// Index into [`COLORS`] (wraps).
    pub color: usize,
    /// Tokens (or queries) behind each point, when known.
    pub counts: Option<Vec<u64>>,
}

/// Curves over a log x axis, linear or log y, with the training length marked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineFigure {
    /// Title.
    pub title: String,
    /// x axis label, with units.
    pub x_label: String,
    /// y axis label, with units.
    pub y_label: String,
    /// Log y axis (the x axis is always log).
    pub log_y: bool,
    /// A vertical line at this x, labelled `train_len`.
    pub train_len: Option<usize>,
    /// The curves, drawn in order.
    pub curves: Vec<Curve>,
}

impl LineFigure {
    fn usable(&self, p: [f64; 2]) -> bool {
        p[0].is_finite() && p[1].is_finite() && p[0] > 0.0 && (!self.log_y || p[1] > 0.0)
    }

    /// The data range `(xmin, xmax, ymin, ymax)` with margins; `None` when nothing can be drawn.
    fn ranges(&self) -> Option<(f64, f64, f64, f64)> {
        let pts: Vec<[f64; 2]> = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().copied())
            .filter(|&p| self.usable(p))
            .collect();
        if pts.is_empty() {
            return None;
        }
        let fold =
            |i: usize, f: fn(f64, f64) -> f64, start: f64| pts.iter().map(|p| p[i]).fold(start, f);
        let (mut xmin, mut xmax) = (fold(0, f64::min, f64::INFINITY), fold(0, f64::max, 0.0));
        if let Some(t) = self.train_len {
            xmin = xmin.min(t as f64);
            xmax = xmax.max(t as f64);
        }
        let (ymin, ymax) = (
            fold(1, f64::min, f64::INFINITY),
            fold(1, f64::max, f64::NEG_INFINITY),
        );
        let (ymin, ymax) = if self.log_y {
            (ymin / 1.5, ymax * 1.5)
        } else {
            let pad = ((ymax - ymin) * 0.08).max(ymax.abs() * 0.02).max(1e-9);
            (ymin - pad, ymax + pad)
        };
        Some((xmin / 1.3, xmax * 1.3, ymin, ymax))
    }

    /// Draws onto `area` with the title as the caption at `caption_px`.
    pub fn draw_on<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption_px: u32,
    ) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: &dyn std::fmt::Display| draw_err(e);
        let Some((xmin, xmax, ymin, ymax)) = self.ranges() else {
            return Err(format!("nothing to draw in '{}'", self.title));
        };
        macro_rules! body {
            ($y:expr) => {{
                let mut chart = ChartBuilder::on(area)
                    .caption(&self.title, ("sans-serif", caption_px))
                    .margin(12)
                    .x_label_area_size(44)
                    .y_label_area_size(64)
                    .build_cartesian_2d((xmin..xmax).log_scale(), $y)
                    .map_err(|e| err(&e))?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_label.as_str())
                    .y_desc(self.y_label.as_str())
                    .x_label_formatter(&|x| log_label(*x))
                    .y_label_formatter(&|y| {
                        if self.log_y {
                            log_label(*y)
                        } else {
                            fmt_num(*y)
                        }
                    })
                    .label_style(("sans-serif", LABEL_PX - 2))
                    .axis_desc_style(("sans-serif", LABEL_PX))
                    .light_line_style(BLACK.mix(0.05))
                    .draw()
                    .map_err(|e| err(&e))?;
                if let Some(t) = self.train_len {
                    let t = t as f64;
                    chart
                        .draw_series(DashedLineSeries::new(
                            vec![(t, ymin), (t, ymax)],
                            6,
                            4,
                            BLACK.mix(0.6).stroke_width(2),
                        ))
                        .map_err(|e| err(&e))?;
                    let at = if self.log_y {
                        ymax / (ymax / ymin).powf(0.04)
                    } else {
                        ymax - (ymax - ymin) * 0.04
                    };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("train_len {}", t as usize),
                            (t * 1.06, at),
                            ("sans-serif", LABEL_PX - 2),
                        )))
                        .map_err(|e| err(&e))?;
                }
                let mut labelled = false;
                for c in &self.curves {
                    let color = COLORS[c.color % COLORS.len()];
                    let pts: Vec<(f64, f64)> = c
                        .points
                        .iter()
                        .copied()
                        .filter(|&p| self.usable(p))
                        .map(|p| (p[0], p[1]))
                        .collect();
                    if c.dashed {
                        chart
                            .draw_series(DashedLineSeries::new(
                                pts,
                                8,
                                5,
                                color.mix(0.8).stroke_width(2),
                            ))
                            .map_err(|e| err(&e))?;
                        continue;
                    }
                    let ann = chart
                        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                        .map_err(|e| err(&e))?;
                    if !c.label.is_empty() {
                        labelled = true;
                        ann.label(c.label.clone()).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                        });
                    }
                    chart
                        .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| err(&e))?;
                }
                if labelled {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .label_font(("sans-serif", LABEL_PX - 2))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK.mix(0.4))
                        .draw()
                        .map_err(|e| err(&e))?;
                }
            }};
        }
        if self.log_y {
            body!((ymin..ymax).log_scale());
        } else {
            body!(ymin..ymax);
        }
        Ok(())
    }
}

impl Figure for LineFigure {
    fn title(&self) -> &str {
        &self.title
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        self.draw_on(root, 22)?;
        root.present().map_err(|e| draw_err(&e))
    }
}

/// Several [`LineFigure`]s in a grid of `cols` columns under one title.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PanelFigure {
    /// Title over all panels.
    pub title: String,
    /// A note under the title (e.g. what dashed lines are).
    pub note: String,
    /// Panels per row.
    pub cols: usize,
    /// The panels, row-major.
    pub panels: Vec<LineFigure>,
}

impl PanelFigure {
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.cols.max(1)).max(1)
    }
}

/// Pixels of the title band of a [`PanelFigure`].
const PANEL_TITLE_PX: u32 = 64;

impl Figure for PanelFigure {
    fn title(&self) -> &str {
        &self.title
    }

    fn size(&self) -> (u32, u32) {
        let cols = self.cols.clamp(1, self.panels.len().max(1)) as u32;
        (cols * 460, self.rows() as u32 * 360 + PANEL_TITLE_PX)
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(|e| draw_err(&e))?;
        let (top, body) = root.split_vertically(PANEL_TITLE_PX);
        let style = ("sans-serif", 24).into_font();
        top.draw(&Text::new(self.title.clone(), (14, 8), style))
            .map_err(|e| draw_err(&e))?;
        top.draw(&Text::new(
            self.note.clone(),
            (14, 38),
            ("sans-serif", LABEL_PX).into_font(),
        ))
        .map_err(|e| draw_err(&e))?;
        let cols = self.cols.clamp(1, self.panels.len().max(1));
        let areas = body.split_evenly((self.rows(), cols));
        for (panel, area) in self.panels.iter().zip(&areas) {
            panel.draw_on(area, LABEL_PX + 2)?;
        }
        root.present().map_err(|e| draw_err(&e))
    }
}
