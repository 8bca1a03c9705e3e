//! The perplexity-vs-length figure for slides and papers (plotters; SVG or PNG by extension):
//! log-scale length axis, training length marked, the extrapolation region shaded and labelled.

pub mod copy_curve;
pub mod loss_log;

use super::Point;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Environment variable naming a TrueType font for the figure's labels.
pub const FONT_ENV: &str = "ALIBI_EXPLORER_FONT";
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];
pub(crate) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

/// One curve of the figure.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Its points.
    pub points: Vec<Point>,
}

/// Registers a TrueType font for plotters' "sans-serif" once ([`FONT_ENV`], then common paths).
pub fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let from_env = std::env::var(FONT_ENV).ok();
        let candidates = from_env.iter().map(String::as_str).chain(FONT_CANDIDATES.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font found for the plot's labels (hint: set {FONT_ENV}=/path/to/font.ttf, or install fonts-dejavu-core)"
        ))
    })
    .clone()
}

/// Draws the figure to `path` (`.svg` or `.png`).
pub fn draw(path: &Path, title: &str, train_len: usize, series: &[Series]) -> Result<(), String> {
    let ext = check_extension(path)?;
    register_font()?;
    let size = (960, 600);
    let bytes = drawn(
        path,
        draw_in_memory(
            ext,
            size,
            |a| render(a, title, train_len, series),
            |a| render(a, title, train_len, series),
        ),
    )?;
    crate::files::write_bytes(path, &bytes)
}

/// A figure of `size` drawn in memory as `ext` (`svg`: SVG text; else PNG bytes) by one of two
/// renderers, the same drawing on each backend.
pub(crate) fn draw_in_memory(
    ext: &str,
    size: (u32, u32),
    svg: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
    png: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    if ext == "svg" {
        let mut text = String::new();
        svg(&SVGBackend::with_string(&mut text, size).into_drawing_area())?;
        Ok(text.into_bytes())
    } else {
        let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
        png(&BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
        encode_png(&rgb, size)
    }
}

/// The figure drawn in memory (SVG text or PNG bytes); a drawing error names the figure's path.
pub(crate) fn drawn(path: &Path, bytes: Result<Vec<u8>, String>) -> Result<Vec<u8>, String> {
    bytes.map_err(|e| {
        format!(
            "cannot draw '{}': {}",
            path.display(),
            crate::model::error::one_line(e)
        )
    })
}

/// Encodes an RGB buffer (`width x height x 3` bytes, as plotters' bitmap backend draws it) as
/// PNG.
pub fn encode_png(rgb: &[u8], (width, height): (u32, u32)) -> Result<Vec<u8>, String> {
    use image::ImageEncoder;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, width, height, image::ColorType::Rgb8)
        .map_err(|e| format!("cannot encode the PNG: {e}"))?;
    Ok(png)
}

/// Checks that `path` ends in `.svg` or `.png` and returns the extension.
pub fn check_extension(path: &Path) -> Result<&'static str, String> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok("svg"),
        Some("png") => Ok("png"),
        _ => Err(format!(
            "--plot '{}': the file name must end in .svg or .png",
            path.display()
        )),
    }
}

/// Shades the region past `train_len` (to `xmax`, from `ymin` to `ymax`), draws the training
/// length's vertical line and writes `label` beside it at height `label_y`: the mark every
/// figure against length or distance shares.
pub(crate) fn mark_train_len<DB: DrawingBackend, CT>(
    chart: &mut ChartContext<'_, DB, CT>,
    train_len: usize,
    (xmax, ymin, ymax): (f64, f64, f64),
    label: &str,
    label_y: f64,
) -> Result<(), String>
where
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot: {e}");
    let tl = train_len as f64;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(tl, ymin), (xmax, ymax)],
            RGBColor(250, 235, 215).mix(0.6).filled(),
        )))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            vec![(tl, ymin), (tl, ymax)],
            BLACK.mix(0.7).stroke_width(2),
        ))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(Text::new(
            label.to_string(),
            (tl * 1.05, label_y),
            ("sans-serif", 16),
        )))
        .map_err(|e| err(&e))?;
    Ok(())
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    train_len: usize,
    series: &[Series],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the plot: {e}");
    let all: Vec<&Point> = series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| p.ppl.is_finite())
        .collect();
    if all.is_empty() {
        return Err("nothing to plot".to_string());
    }
    let xmin = all
        .iter()
        .map(|p| p.length)
        .min()
        .unwrap_or(1)
        .min(train_len) as f64
        / 1.2;
    let xmax = all
        .iter()
        .map(|p| p.length)
        .max()
        .unwrap_or(1)
        .max(train_len) as f64
        * 1.2;
    let ymin = all.iter().map(|p| p.ppl).fold(f64::INFINITY, f64::min) / 1.15;
    let ymax = all.iter().map(|p| p.ppl).fold(0.0, f64::max) * 1.15;
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("input length (tokens, log scale)")
        .y_desc("token perplexity (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(&e))?;
    mark_train_len(
        &mut chart,
        train_len,
        (xmax, ymin, ymax),
        &format!("train_len = {train_len}  →  extrapolation"),
        ymax / 1.08,
    )?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.ppl.is_finite())
            .map(|p| (p.length as f64, p.ppl.clamp(ymin, ymax)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
