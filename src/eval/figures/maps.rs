//! Colour-mapped figures: one head's attention (queries x keys, log colour scale, the masked future
//! left white) and a statistic for every (layer, head) with its value printed in each cell. Both
//! carry a colour bar.

use super::{Figure, LABEL_PX, diverging, draw_err, fmt_num, text_on, viridis};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// At most this many cells per side: longer maps are averaged over square blocks of positions
/// (a 2,048-token map as 128 x 128 blocks of 16 x 16), which keeps SVGs small.
pub const MAX_CELLS: usize = 128;
/// The colour scale spans this many decades below the largest value.
pub const LOG_DECADES: f64 = 5.0;
/// Pixels of the colour bar's area at the right.
const BAR_AREA_PX: u32 = 130;

/// One head's attention at one length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionHeatmap {
    /// Title (model, layer, head, length).
    pub title: String,
    /// Input length `L`.
    pub length: usize,
    /// `L` rows of `L` probabilities, rows = queries, columns = keys; entries above the diagonal
    /// are the masked future (drawn white whatever their value).
    pub map: Vec<Vec<f32>>,
}

impl AttentionHeatmap {
    /// From a row-major `length x length` probability buffer.
    pub fn from_flat(title: String, length: usize, probs: &[f32]) -> Self {
        Self {
            title,
            length,
            map: probs.chunks(length.max(1)).map(<[f32]>::to_vec).collect(),
        }
    }

    /// Positions per cell side and the cells: `cells[r][c]` = mean attention of the causal
    /// (query >= key) entries of block (r, c), `None` where the block is all future.
    pub fn cells(&self) -> (usize, Vec<Vec<Option<f64>>>) {
        let len = self.length;
        let block = len.div_ceil(MAX_CELLS).max(1);
        let n = len.div_ceil(block);
        let mut cells = vec![vec![None; n]; n];
        for (r, row_cells) in cells.iter_mut().enumerate() {
            for (c, cell) in row_cells.iter_mut().enumerate() {
                let (mut sum, mut count) = (0.0, 0usize);
                for q in r * block..((r + 1) * block).min(len) {
                    let row = &self.map[q];
                    for k in c * block..((c + 1) * block).min(q + 1) {
                        sum += f64::from(row.get(k).copied().unwrap_or(0.0));
                        count += 1;
                    }
                }
                if count > 0 {
                    *cell = Some(sum / count as f64);
                }
            }
        }
        (block, cells)
    }
}

/// Draws a vertical colour bar for values `lo..hi` (log scale when `log`) with `color(t)`,
/// `t` in `[0, 1]` from bottom to top.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
    log: bool,
    label: &str,
    color: &dyn Fn(f64) -> RGBColor,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    const STEPS: usize = 100;
    let err = |e: &dyn std::fmt::Display| draw_err(e);
    let hi = if hi > lo { hi } else { lo + 1e-12 };
    macro_rules! bar {
        ($y:expr, $at:expr) => {{
            let mut chart = ChartBuilder::on(area)
                .margin_top(50)
                .margin_bottom(56)
                .margin_right(8)
                .y_label_area_size(74)
                .build_cartesian_2d(0f64..1f64, $y)
                .map_err(|e| err(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .disable_y_mesh()
                .disable_x_axis()
                .y_desc(label)
                .y_label_formatter(&|y| fmt_num(*y))
                .label_style(("sans-serif", LABEL_PX - 3))
                .axis_desc_style(("sans-serif", LABEL_PX - 2))
                .draw()
                .map_err(|e| err(&e))?;
            chart
                .draw_series((0..STEPS).map(|s| {
                    let (t0, t1) = (s as f64 / STEPS as f64, (s + 1) as f64 / STEPS as f64);
                    Rectangle::new(
                        [(0.0, $at(t0)), (1.0, $at(t1))],
                        color((t0 + t1) / 2.0).filled(),
                    )
                }))
                .map_err(|e| err(&e))?;
        }};
    }
    if log {
        let at = |t: f64| lo * (hi / lo).powf(t);
        bar!((lo..hi).log_scale(), at);
    } else {
        let at = |t: f64| lo + (hi - lo) * t;
        bar!(lo..hi, at);
    }
    Ok(())
}

impl Figure for AttentionHeatmap {
    fn title(&self) -> &str {
        &self.title
    }

    fn size(&self) -> (u32, u32) {
        (880, 760)
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: &dyn std::fmt::Display| draw_err(e);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (block, cells) = self.cells();
        let hi = cells
            .iter()
            .flatten()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let lo = hi / 10f64.powf(LOG_DECADES);
        let t_of = |v: f64| ((v.max(lo) / lo).log10() / LOG_DECADES).clamp(0.0, 1.0);
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(BAR_AREA_PX));
        let len = self.length as f64;
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..len, len..0f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("key position j (tokens)")
            .y_desc("query position i (tokens)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", LABEL_PX - 2))
            .axis_desc_style(("sans-serif", LABEL_PX))
            .draw()
            .map_err(|e| err(&e))?;
        let b = block as f64;
        chart
            .draw_series(cells.iter().enumerate().flat_map(|(r, row)| {
                row.iter().enumerate().filter_map(move |(c, v)| {
                    let v = (*v)?;
                    let (x0, y0) = (c as f64 * b, r as f64 * b);
                    Some(Rectangle::new(
                        [(x0, y0), ((x0 + b).min(len), (y0 + b).min(len))],
                        viridis(t_of(v)).filled(),
                    ))
                })
            }))
            .map_err(|e| err(&e))?;
        let label = if block > 1 {
            format!("attention (log; {block}×{block} means)")
        } else {
            "attention probability (log)".to_string()
        };
        colour_bar(&bar, lo, hi, true, &label, &viridis)?;
        root.present().map_err(|e| err(&e))
    }
}

/// A statistic for every (layer, head).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadGrid {
    /// Title.
    pub title: String,
    /// What the colour shows, with units (the colour bar's label).
    pub statistic: String,
    /// `values[layer][head]`; `None` cells are left white.
    pub values: Vec<Vec<Option<f64>>>,
    /// A diverging map centred on 0 (for a statistic minus its prior); else viridis.
    pub diverging: bool,
}

impl Figure for HeadGrid {
    fn title(&self) -> &str {
        &self.title
    }

    fn size(&self) -> (u32, u32) {
        let heads = self.values.iter().map(Vec::len).max().unwrap_or(1) as u32;
        let layers = self.values.len() as u32;
        (
            (heads * 86 + 120 + BAR_AREA_PX).max(640),
            (layers * 64 + 160).max(420),
        )
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: &dyn std::fmt::Display| draw_err(e);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let heads = self.values.iter().map(Vec::len).max().unwrap_or(0);
        let layers = self.values.len();
        let all: Vec<f64> = self
            .values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if all.is_empty() {
            return Err(format!("nothing to draw in '{}'", self.title));
        }
        let (lo, hi) = if self.diverging {
            let m = all.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
            (-m, m)
        } else {
            let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, if hi > lo { hi } else { lo + 1e-12 })
        };
        let color = |v: f64| {
            if self.diverging {
                diverging(v / hi)
            } else {
                viridis((v - lo) / (hi - lo))
            }
        };
        let (w, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(w.saturating_sub(BAR_AREA_PX));
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..heads as f64 - 0.5, layers as f64 - 0.5..-0.5f64)
            .map_err(|e| err(&e))?;
        let whole = |v: &f64| {
            if (v - v.round()).abs() < 1e-6 && *v >= -1e-6 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(heads + 1)
            .y_labels(layers + 1)
            .x_desc("head")
            .y_desc("layer")
            .x_label_formatter(&whole)
            .y_label_formatter(&whole)
            .label_style(("sans-serif", LABEL_PX - 1))
            .axis_desc_style(("sans-serif", LABEL_PX))
            .draw()
            .map_err(|e| err(&e))?;
        for (l, row) in self.values.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else {
                    continue;
                };
                let (x, y) = (h as f64, l as f64);
                let bg = color(v);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                        bg.filled(),
                    )))
                    .map_err(|e| err(&e))?;
                let style = ("sans-serif", LABEL_PX - 2)
                    .into_font()
                    .color(&text_on(bg))
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(fmt_num(v), (x, y), style)))
                    .map_err(|e| err(&e))?;
            }
        }
        if self.diverging {
            colour_bar(&bar, lo, hi, false, &self.statistic, &|t| {
                diverging(t * 2.0 - 1.0)
            })?;
        } else {
            colour_bar(&bar, lo, hi, false, &self.statistic, &viridis)?;
        }
        root.present().map_err(|e| err(&e))
    }
}
