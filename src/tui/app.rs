//! The application state and its update functions. No I/O here: `update` and `on_worker` change
//! the state and return [`Effect`]s (jobs for the worker, files to read or write) that the main
//! loop carries out, so the same code runs under tests.

pub use super::curve::{
    Curve, MIN_LENGTH, NO_DIVERGENCE, RecipeCurve, chart_x_bounds, length_grid, variant_lengths,
};
use super::keymap::TourMove;
use super::keymap::{Action, Focus, STEPS_PER_OCTAVE};
use super::views::{AttnView, SensitivityState, Stat, StatsCache};
pub use super::views::{Metric, Rule};
use super::worker::{AttentionMap, Job, Progress};
use crate::alibi::{self, Preset, SlopeSpec};
use crate::eval::Point;
use crate::model::Position;
use crate::text::Stream;
use std::path::PathBuf;

mod export;
mod family;
mod receive;
mod slopes;
mod stats;
mod tour;
mod variants;

pub use super::export::{EXPORT_MAX_TOKENS, Export, ExportFigure};
pub use super::views::FamilyState;
/// Attention maps are computed for at most this many tokens (memory and draw time stay bounded).
pub const MAX_ATTENTION_LEN: usize = 2048;
/// The deepest heatmap zoom (1 = whole map).
pub const MAX_ZOOM: usize = 256;

/// What the user sees about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Display name.
    pub name: String,
    /// Architecture name.
    pub arch: String,
    /// Position scheme.
    pub position: Position,
    /// Training length.
    pub train_len: usize,
    /// Layers.
    pub n_layers: usize,
    /// Heads.
    pub n_heads: usize,
    /// Device name.
    pub device: String,
    /// Why that device.
    pub device_note: String,
    /// dtype name.
    pub dtype: String,
    /// The model's own slopes (ALiBi only).
    pub slopes: Option<Vec<f64>>,
}

/// Side effects the main loop carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a job to the worker.
    Job(Job),
    /// Write the slopes to a JSON file.
    SaveSlopes(PathBuf, Vec<f64>),
    /// Read slopes from a JSON file and call [`App::slopes_loaded`].
    LoadSlopes(PathBuf),
    /// Turn mouse capture on or off.
    SetMouse(bool),
    /// Write the focused panel as SVG, PNG and JSON; the result comes back through
    /// [`App::exported`].
    Export(Export),
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct App {
    /// The main model.
    pub info: ModelInfo,
    /// Decoded text of every token of the main stream (axis labels).
    pub token_text: Vec<String>,
    /// Lengths on the chart's x axis, ascending.
    pub grid: Vec<usize>,
    /// Index of the cursor in `grid`.
    pub cursor: usize,
    /// The longest length (sweep window).
    pub lmax: usize,
    /// Curve 0 is the main model with the current slopes; then one per `--compare` model.
    pub curves: Vec<Curve>,
    /// The curve of the previous slopes, faded (A/B).
    pub previous: Option<Curve>,
    /// Long-context recipes on the main model, as extra curves (`c`, `--recipe`).
    pub recipes: Vec<RecipeCurve>,
    /// Generation of the main model's and the recipes' variant results (new slopes or a new set
    /// of recipes make the older ones stale).
    pub variant_gen: u64,
    /// Current slopes (ALiBi models).
    pub slopes: Vec<f64>,
    /// Slopes before the last change.
    pub prev_slopes: Option<Vec<f64>>,
    /// A name for the current slopes (preset, "model", "custom", a file).
    pub slopes_label: String,
    /// The preset last chosen with `p`.
    pub preset: Option<Preset>,
    /// Selected head.
    pub head: usize,
    /// Selected layer.
    pub layer: usize,
    /// Generation of the current sweep.
    pub sweep_gen: u64,
    /// Generation of the current attention request.
    pub attn_gen: u64,
    /// The latest attention map of the current generation.
    pub attention: Option<AttentionMap>,
    /// How far the attention map being computed is (big models), until it arrives.
    pub attention_progress: Option<Progress>,
    /// Heatmap zoom (1 = whole map).
    pub zoom: usize,
    /// First key column shown when zoomed.
    pub pan: usize,
    /// Query row for the top-attended list.
    pub query: usize,
    /// Downsampling rule.
    pub rule: Rule,
    /// The chart's metric.
    pub metric: Metric,
    /// What the attention panel shows.
    pub view: AttnView,
    /// The statistic of the head grid and the length plot.
    pub stat: Stat,
    /// Show the statistic minus the ALiBi prior's (diverging colours) instead of the statistic.
    pub stat_minus_prior: bool,
    /// Attention statistics of the current slopes, by length.
    pub stats: StatsCache,
    /// The sensitivity view's results.
    pub sensitivity: SensitivityState,
    /// The position-encoding family view's scheme and parameters.
    pub family: FamilyState,
    /// Focused panel.
    pub focus: Focus,
    /// Help overlay open.
    pub help: bool,
    /// First line of the help overlay shown (it scrolls when the terminal is short).
    pub help_scroll: usize,
    /// Mouse capture on.
    pub mouse: bool,
    /// Selected head's bias enlarged.
    pub enlarged: bool,
    /// Last informational message.
    pub message: String,
    /// Last error.
    pub error: Option<String>,
    /// Whether to use 24-bit colour.
    pub truecolor: bool,
    /// Where `S`/`L` save and load slopes.
    pub slopes_file: PathBuf,
    /// The files the TUI reads (model folders, the text): its writers never replace one.
    pub inputs: Vec<(String, PathBuf)>,
    /// Set by Quit.
    pub quit: bool,
    /// Chart plot area columns (set by the view for mouse mapping): (x, width).
    pub chart_columns: Option<(u16, u16)>,
    /// The guided tour, once opened (`g`, or `alibi-explorer tour`).
    pub tour: Option<super::tour::TourState>,
}

impl App {
    /// A fresh app. `lmax` is the sweep window; `streams[i]` is the text as model i's tokens.
    pub fn new(
        info: ModelInfo,
        compare: Vec<String>,
        streams: Vec<Stream>,
        token_text: Vec<String>,
        lmax: usize,
        slopes_file: PathBuf,
    ) -> Self {
        let grid = length_grid(lmax, info.train_len);
        let cursor = grid.iter().position(|&l| l >= info.train_len).unwrap_or(0);
        let labels = std::iter::once(format!("{} (current slopes)", info.name)).chain(compare);
        let curves = labels
            .zip(streams)
            .map(|(label, s)| Curve::new(label, lmax, s))
            .collect();
        let slopes = info.slopes.clone().unwrap_or_default();
        let query = grid[cursor].min(MAX_ATTENTION_LEN) - 1;
        Self {
            token_text,
            grid,
            cursor,
            lmax,
            curves,
            previous: None,
            recipes: Vec::new(),
            variant_gen: 0,
            slopes,
            prev_slopes: None,
            slopes_label: "model".to_string(),
            preset: None,
            head: 0,
            layer: 0,
            sweep_gen: 0,
            attn_gen: 0,
            attention: None,
            attention_progress: None,
            zoom: 1,
            pan: 0,
            query,
            rule: Rule::Max,
            metric: Metric::TokenPpl,
            view: AttnView::Heatmap,
            stat: Stat::MeanDistance,
            stat_minus_prior: false,
            stats: StatsCache::default(),
            sensitivity: SensitivityState::default(),
            family: FamilyState::default(),
            focus: Focus::Chart,
            help: false,
            help_scroll: 0,
            mouse: true,
            enlarged: false,
            message: String::new(),
            error: None,
            truecolor: super::palette::detect_truecolor(),
            slopes_file,
            inputs: Vec::new(),
            quit: false,
            chart_columns: None,
            tour: None,
            info,
        }
    }

    /// The jobs to start with: every curve's sweep, the first attention map, then every curve's
    /// refinement (the worker runs sweeps before refinements).
    pub fn start(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        for curve in 0..self.curves.len() {
            fx.push(self.sweep_job(curve));
        }
        fx.push(self.attention_job());
        for curve in 0..self.curves.len() {
            fx.push(self.refine_job(curve));
        }
        fx.extend(self.compare_kl_jobs());
        if !self.recipes.is_empty() {
            fx.extend(self.variant_jobs());
        }
        fx
    }

    fn curve_slopes(&self, curve: usize) -> Option<Vec<f64>> {
        if curve == 0 {
            self.alibi_slopes()
        } else {
            None
        }
    }

    fn sweep_job(&self, curve: usize) -> Effect {
        Effect::Job(Job::Sweep {
            generation: self.sweep_gen,
            curve,
            slopes: self.curve_slopes(curve),
            lmax: self.lmax,
        })
    }

    fn refine_job(&self, curve: usize) -> Effect {
        Effect::Job(Job::Refine {
            generation: self.sweep_gen,
            curve,
            slopes: self.curve_slopes(curve),
            lmax: self.lmax,
            min_len: MIN_LENGTH,
            done: 0,
        })
    }

    /// Whether the main model has slopes to edit.
    pub fn is_alibi(&self) -> bool {
        self.info.position == Position::Alibi
    }

    fn alibi_slopes(&self) -> Option<Vec<f64>> {
        self.is_alibi().then(|| self.slopes.clone())
    }

    /// The length under the cursor.
    pub fn length(&self) -> usize {
        self.grid[self.cursor.min(self.grid.len() - 1)]
    }

    /// The attention length: the cursor length, capped.
    pub fn attention_len(&self) -> usize {
        self.length().min(MAX_ATTENTION_LEN)
    }

    /// Whether some curve's model tokenizes the text differently from the main model (its token
    /// stream differs): then token perplexities are not comparable between the curves.
    pub fn tokenizers_differ(&self) -> bool {
        let main = &self.curves[0].stream.ids;
        self.curves[1..].iter().any(|c| c.stream.ids != *main)
    }

    /// The main curve's point at the cursor, if computed (a window covers it).
    pub fn point_at_cursor(&self) -> Option<Point> {
        self.curves[0].point_at(self.length())
    }

    /// The compared models' points at the cursor, with their names (`--compare`) and whether each
    /// point is final (see [`App::cursor_final`]), in curve order; `None` where a curve has nothing
    /// at the cursor yet.
    pub fn compared_at_cursor(&self) -> Vec<(&str, Option<Point>, bool)> {
        let len = self.length();
        self.curves[1..]
            .iter()
            .map(|c| {
                let name = c.label.split(" (").next().unwrap_or(&c.label);
                (name, c.point_at(len), c.is_final(len, MIN_LENGTH))
            })
            .collect()
    }

    /// Whether the main curve's point at the cursor is final (no later window will change it).
    pub fn cursor_final(&self) -> bool {
        self.curves[0].is_final(self.length(), MIN_LENGTH)
    }

    fn attention_job(&mut self) -> Effect {
        self.attn_gen += 1;
        self.attention_progress = None;
        Effect::Job(Job::Attention {
            generation: self.attn_gen,
            len: self.attention_len(),
            layer: self.layer,
            head: self.head,
            slopes: self.alibi_slopes(),
        })
    }

    /// New slopes: keep the old curve as "previous", restart the sweep and the attention map.
    fn set_slopes(&mut self, slopes: Vec<f64>, label: String) -> Vec<Effect> {
        if !self.is_alibi() {
            self.error = Some(format!(
                "{} uses {} positions: there are no ALiBi slopes to edit",
                self.info.name, self.info.position
            ));
            return Vec::new();
        }
        if let Err(e) = alibi::check_slopes(&slopes, self.info.n_heads) {
            self.error = Some(format!("slopes unchanged: {e}"));
            return Vec::new();
        }
        let old = std::mem::replace(&mut self.slopes, slopes);
        let old_label = std::mem::replace(&mut self.slopes_label, label);
        self.prev_slopes = Some(old);
        let mut prev = self.curves[0].clone();
        prev.label = format!("previous: {old_label}");
        self.previous = Some(prev);
        self.curves[0].reset();
        self.curves[0].label = format!("{} ({})", self.info.name, self.slopes_label);
        self.sweep_gen += 1;
        self.error = None;
        let mut fx = vec![self.sweep_job(0), self.attention_job(), self.refine_job(0)];
        fx.extend(self.variant_jobs());
        fx
    }

    /// Applies one user action.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let mut fx = self.apply_action(action);
        fx.extend(self.stats_jobs());
        self.tour_notice();
        fx
    }

    fn apply_action(&mut self, action: Action) -> Vec<Effect> {
        if let Some(fx) = self.family_action(action) {
            return fx;
        }
        let heads = self.info.n_heads.max(1);
        match action {
            Action::Back if self.help => self.help = false,
            Action::Back if self.enlarged => self.enlarged = false,
            Action::Back if self.tour_visible() => return self.tour_move(TourMove::Toggle),
            Action::Tour(m) => return self.tour_move(m),
            Action::Quit | Action::Back => self.quit = true,
            Action::ToggleHelp => {
                self.help = !self.help;
                self.help_scroll = 0;
            }
            // The overlay clamps it to what is left to show.
            Action::ScrollHelp(d) => {
                self.help_scroll = self.help_scroll.saturating_add_signed(d as isize).min(1000);
            }
            Action::Focus(fwd) => self.focus = self.focus.step(fwd),
            Action::MoveLength(d) if d.abs() >= STEPS_PER_OCTAVE => {
                // Coarse moves multiply the length (rounding in the grid makes index steps uneven).
                let target =
                    self.length() as f64 * 2f64.powf(f64::from(d) / f64::from(STEPS_PER_OCTAVE));
                return self.move_cursor(self.nearest(target) as i64);
            }
            Action::MoveLength(d) => return self.move_cursor(self.cursor as i64 + i64::from(d)),
            Action::LengthEnd(end) => return self.move_cursor(if end { i64::MAX } else { 0 }),
            Action::LengthTrain => {
                let i = self
                    .grid
                    .iter()
                    .position(|&l| l >= self.info.train_len)
                    .unwrap_or(0);
                return self.move_cursor(i as i64);
            }
            Action::LengthAtColumn(col) => {
                if let Some((x, w)) = self.chart_columns
                    && w > 1
                    && col >= x
                    && col < x + w
                {
                    let t = f64::from(col - x) / f64::from(w - 1);
                    let (lo, hi) = chart_x_bounds(&self.grid);
                    let target = 2f64.powf(lo + t * (hi - lo));
                    return self.move_cursor(self.nearest(target) as i64);
                }
            }
            Action::Head(d) => {
                self.head = (self.head as i64 + i64::from(d)).rem_euclid(heads as i64) as usize;
                return vec![self.attention_job()];
            }
            Action::Layer(d) => {
                let n = self.info.n_layers.max(1) as i64;
                self.layer = (self.layer as i64 + i64::from(d)).rem_euclid(n) as usize;
                return vec![self.attention_job()];
            }
            Action::NextPreset => {
                let preset = self.preset.map_or(Preset::Geometric, Preset::next);
                self.preset = Some(preset);
                let spec = SlopeSpec {
                    preset,
                    ..SlopeSpec::default()
                };
                return match spec.slopes(heads) {
                    Ok(s) => self.set_slopes(s, format!("preset {preset}")),
                    Err(e) => {
                        self.error = Some(e.to_string());
                        Vec::new()
                    }
                };
            }
            Action::ScaleAll(f) => {
                let s: Vec<f64> = self.slopes.iter().map(|m| m * f).collect();
                let label = scaled_label(&self.slopes_label, f);
                return self.set_slopes(s, label);
            }
            Action::ScaleHead(f) => {
                let mut s = self.slopes.clone();
                if let Some(m) = s.get_mut(self.head) {
                    *m *= f;
                }
                return self.set_slopes(s, "custom".to_string());
            }
            Action::ResetSlopes => {
                let s = self.info.slopes.clone().unwrap_or_default();
                self.preset = None;
                return self.set_slopes(s, "model".to_string());
            }
            Action::SwapAB => {
                return match self.prev_slopes.clone() {
                    Some(prev) => self.set_slopes(prev, "swapped A/B".to_string()),
                    None => {
                        self.message = "no previous slopes to swap with yet".to_string();
                        Vec::new()
                    }
                };
            }
            Action::SaveSlopes => {
                if self.is_alibi() {
                    return vec![Effect::SaveSlopes(
                        self.slopes_file.clone(),
                        self.slopes.clone(),
                    )];
                }
                self.error = Some("this model has no ALiBi slopes to save".to_string());
            }
            Action::LoadSlopes => return vec![Effect::LoadSlopes(self.slopes_file.clone())],
            Action::Enlarge => self.enlarged = !self.enlarged,
            Action::Zoom(inward) => {
                self.zoom = if inward {
                    (self.zoom * 2).min(MAX_ZOOM)
                } else {
                    (self.zoom / 2).max(1)
                };
                self.clamp_view();
                self.follow_query();
            }
            Action::Pan(d) => {
                let step = (self.attention_len() / self.zoom / 4).max(1) as i64;
                self.pan = (self.pan as i64 + i64::from(d) * step).max(0) as usize;
                self.clamp_view();
            }
            Action::Query(d) => {
                let n = self.attention_len() as i64;
                let step = (self.attention_len() / 64).max(1) as i64;
                self.query = (self.query as i64 + i64::from(d) * step).clamp(0, n - 1) as usize;
                self.follow_query();
            }
            Action::ToggleRule => {
                self.rule = if self.rule == Rule::Max {
                    Rule::Mean
                } else {
                    Rule::Max
                }
            }
            Action::ToggleMetric => self.metric = self.metric.toggled(),
            Action::NextRecipe => return self.next_recipe(),
            Action::ClearRecipes => return self.clear_recipes(),
            Action::NextView => self.view = self.view.next(),
            Action::Export => {
                return match self.export() {
                    Ok(fx) => vec![fx],
                    Err(e) => {
                        self.error = Some(format!("export: {e}"));
                        Vec::new()
                    }
                };
            }
            Action::NextStat => self.stat = self.stat.next(),
            Action::TogglePriorDiff => self.stat_minus_prior = !self.stat_minus_prior,
            Action::ToggleMouse => {
                self.mouse = !self.mouse;
                return vec![Effect::SetMouse(self.mouse)];
            }
        }
        Vec::new()
    }

    /// Index of the grid length closest to `target` on a log scale.
    fn nearest(&self, target: f64) -> usize {
        let t = target.max(1.0).ln();
        self.grid
            .iter()
            .enumerate()
            .min_by(|a, b| {
                ((*a.1 as f64).ln() - t)
                    .abs()
                    .total_cmp(&((*b.1 as f64).ln() - t).abs())
            })
            .map_or(0, |(i, _)| i)
    }

    fn move_cursor(&mut self, to: i64) -> Vec<Effect> {
        let i = to.clamp(0, self.grid.len() as i64 - 1) as usize;
        if i == self.cursor {
            return Vec::new();
        }
        // A query on the last row stays on the last row: the newest token sees the whole context.
        let on_last = self.query + 1 >= self.attention_len();
        self.cursor = i;
        self.query = if on_last {
            self.attention_len() - 1
        } else {
            self.query.min(self.attention_len() - 1)
        };
        self.clamp_view();
        vec![self.attention_job()]
    }

    /// The visible key range of the heatmap: (first, count).
    pub fn view(&self) -> (usize, usize) {
        let n = self.attention_len();
        let count = n.div_ceil(self.zoom).max(1);
        (self.pan.min(n - count), count)
    }

    fn clamp_view(&mut self) {
        let (first, _) = self.view();
        self.pan = first;
    }

    fn follow_query(&mut self) {
        let (first, count) = self.view();
        if self.zoom > 1 && (self.query < first || self.query >= first + count) {
            self.pan = self.query.saturating_sub(count / 2);
            self.clamp_view();
        }
    }

    /// Progress of the main sweep: (windows done, total).
    pub fn progress(&self) -> (usize, usize) {
        (
            self.curves[0].acc.windows_of(self.lmax),
            self.curves[0].total,
        )
    }

    /// The most attended keys for the query row: (key index, probability), best first.
    pub fn top_attended(&self, k: usize) -> Vec<(usize, f32)> {
        let Some(map) = &self.attention else {
            return Vec::new();
        };
        let q = self.query.min(map.len.saturating_sub(1));
        let row = &map.probs[q * map.len..q * map.len + map.len];
        let mut idx: Vec<(usize, f32)> = row.iter().copied().enumerate().take(q + 1).collect();
        idx.sort_by(|a, b| b.1.total_cmp(&a.1));
        idx.truncate(k);
        idx
    }
}

/// The slopes label after scaling every slope by `f`: one factor, the product of every scaling
/// since the label's origin (`model x1.25`, then `model x1.563`, not `model x1.25 x1.25`).
pub fn scaled_label(label: &str, f: f64) -> String {
    let (base, factor) = match label.rsplit_once(" x") {
        Some((base, old)) => match old.parse::<f64>() {
            Ok(old) if old.is_finite() => (base, old * f),
            _ => (label, f),
        },
        None => (label, f),
    };
    let text = if (1e-3..1e6).contains(&factor.abs()) {
        format!("{factor:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{factor:.3e}")
    };
    format!("{base} x{text}")
}
