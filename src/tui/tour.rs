//! The guided tour: a Markdown file of steps, each a narrative card shown beside the live panels.
//! A step sets the state it talks about (panel, view, length, layer, head, slopes), highlights its
//! panel, may ask the learner to do one thing and notices when it is done, and fills live numbers
//! into its text (`{slope 0}`, `{ppl}`) from the running model. After poloclub's Transformer
//! Explainer (step cards that light up the live model) and Bycroft's LLM visualisation (chapters
//! beside the model).
//!
//! - [`parse`]: the tour file format, parsed strictly (one-line errors naming the line).
//! - [`live`]: the placeholders' values from the app, and the tasks' predicates.
//! - [`formulas`]: the formulas the shipped tour states, with the arithmetic they claim (tested
//!   against `alibi`).
//! - [`card`]: the card widget and where it goes on the screen.
//! - [`lecture`]: `tour --export DIR`, every step as a slide.
//!
//! The file format is in docs/tour.md; the shipped tour is `assets/tour.md`.

pub mod card;
pub mod command;
pub mod formulas;
pub mod lecture;
pub mod live;
pub mod parse;

use super::keymap::Focus;
pub use super::keymap::TourMove;
use super::views::AttnView;
use crate::alibi::Preset;
use std::path::PathBuf;

/// The shipped tour (also in the binary, so `g` works away from the repository).
pub const BUILTIN: &str = include_str!("../../assets/tour.md");
/// The name the shipped tour's messages use.
pub const BUILTIN_NAME: &str = "assets/tour.md";
/// The largest tour file read.
pub const MAX_TOUR_BYTES: u64 = 1 << 20;

/// A parsed tour.
#[derive(Debug, Clone, PartialEq)]
pub struct Tour {
    /// The `# Title`.
    pub title: String,
    /// Text between the title and the first step (the lecture's index page shows it).
    pub intro: Vec<Template>,
    /// `model:` in the tour's header: the main model (line, path as written).
    pub model: Option<(usize, PathBuf)>,
    /// `compare:` in the tour's header: the models to compare against (line, path as written).
    pub compare: Vec<(usize, PathBuf)>,
    /// `text:` in the tour's header (line, path as written).
    pub text: Option<(usize, PathBuf)>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step: a card.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Line of its `## ` heading (1-based).
    pub line: usize,
    /// Its heading.
    pub title: Template,
    /// The state it sets.
    pub state: StepState,
    /// What the learner is asked to do, and how the app notices it is done.
    pub task: Option<Task>,
    /// Its text, one template per line.
    pub body: Vec<Template>,
}

/// The state a step sets; `None` leaves that part as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepState {
    /// The focused (and highlighted) panel.
    pub focus: Option<Focus>,
    /// The attention panel's view.
    pub view: Option<AttnView>,
    /// The length cursor.
    pub cursor: Option<Length>,
    /// The selected layer.
    pub layer: Option<Index>,
    /// The selected head.
    pub head: Option<Index>,
    /// The slopes.
    pub slopes: Option<SlopeChoice>,
}

/// A length, as a tour names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    /// `train_len`.
    Train,
    /// `4x`: a multiple of the training length.
    Times(f64),
    /// `512`: tokens.
    Tokens(usize),
    /// `min`: the shortest length on the chart.
    Min,
    /// `max`: the longest.
    Max,
}

impl Length {
    /// The length in tokens for a model trained on `train_len` with the chart's range `min..=max`
    /// (not clamped: the app moves to the nearest length on its grid).
    pub fn tokens(self, train_len: usize, min: usize, max: usize) -> f64 {
        match self {
            Length::Train => train_len as f64,
            Length::Times(f) => f * train_len as f64,
            Length::Tokens(n) => n as f64,
            Length::Min => min as f64,
            Length::Max => max as f64,
        }
    }
}

/// A layer or head, as a tour names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// A number (0-based).
    At(usize),
    /// `last`.
    Last,
}

impl Index {
    /// The index among `n`.
    pub fn of(self, n: usize) -> usize {
        match self {
            Index::At(i) => i,
            Index::Last => n.saturating_sub(1),
        }
    }
}

/// The head a placeholder names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRef {
    /// A fixed head (or `last`).
    Fixed(Index),
    /// The selected head (the placeholder without a number).
    Selected,
}

/// Slopes a step sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlopeChoice {
    /// The model's own.
    Model,
    /// A preset (paper's max bias, scale 1).
    Preset(Preset),
}

/// Something the learner is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// What to do, in words.
    pub text: Template,
    /// When it counts as done.
    pub done: Check,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `a op b`.
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// A predicate on the app's state: when a task is done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// `cursor OP LENGTH`.
    Cursor(Op, Length),
    /// `head OP INDEX`.
    Head(Op, Index),
    /// `layer OP INDEX`.
    Layer(Op, Index),
    /// `view = NAME` or `view != NAME`.
    View(Op, AttnView),
    /// `focus = PANEL` or `focus != PANEL`.
    Focus(Op, Focus),
    /// `slopes = model|PRESET` or `!=`.
    Slopes(Op, SlopeChoice),
    /// `recipes OP N`: the number of recipe curves on the chart.
    Recipes(Op, usize),
}

/// Text with live numbers in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template(pub Vec<Piece>);

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A live value.
    Live(Placeholder),
}

/// The live values a card can show. The names, with their arguments, are [`PLACEHOLDERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{model}`: the main model's name.
    Model,
    /// `{position}`: its position scheme.
    Position,
    /// `{heads}`: heads per layer.
    Heads,
    /// `{layers}`: layers.
    Layers,
    /// `{train_len}`: the training length.
    TrainLen,
    /// `{cursor}`: the cursor's length.
    Cursor,
    /// `{ratio}`: the cursor's length over the training length.
    Ratio,
    /// `{lmax}`: the longest length on the chart.
    Lmax,
    /// `{head}`: the selected head.
    Head,
    /// `{layer}`: the selected layer.
    Layer,
    /// `{slopes}`: the name of the current slopes.
    Slopes,
    /// `{slope H}`: head H's slope (no H: the selected head).
    Slope(HeadRef),
    /// `{reach H}`: head H's reach, `ln(100)/m` tokens.
    Reach(HeadRef),
    /// `{bias H D}`: head H's bias for a key D tokens back, `−m·D`.
    Bias(HeadRef, usize),
    /// `{ppl N}`: curve N's perplexity at the cursor (no N: the main model, curve 0).
    Ppl(usize),
    /// `{ppl_train N}`: curve N's perplexity at the training length.
    PplTrain(usize),
    /// `{name N}`: curve N's label.
    Name(usize),
    /// `{mean_distance H}`: head H's (selected layer) measured mean attention distance at the
    /// cursor's length.
    MeanDistance(HeadRef),
    /// `{prior_distance H}`: the same statistic of head H's ALiBi prior (the bias alone).
    PriorDistance(HeadRef),
    /// `{zeroed H}`: the change in perplexity at the cursor's length when head H's slope is set to
    /// 0 (the sensitivity view).
    Zeroed(HeadRef),
}

/// Every placeholder with its arguments, for docs and error hints.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("{model}", "the main model's name"),
    ("{position}", "its position scheme"),
    ("{heads}", "heads per layer"),
    ("{layers}", "layers"),
    ("{train_len}", "the training length, tokens"),
    ("{cursor}", "the cursor's length, tokens"),
    ("{ratio}", "the cursor's length over train_len"),
    ("{lmax}", "the longest length on the chart"),
    ("{head}", "the selected head"),
    ("{layer}", "the selected layer"),
    (
        "{slopes}",
        "the name of the current slopes (model, preset zero, ...)",
    ),
    (
        "{slope H}",
        "head H's slope m (H: a number, `last`, or none for the selected head)",
    ),
    ("{reach H}", "head H's reach ln(100)/m, tokens"),
    ("{bias H D}", "head H's bias −m·D for a key D tokens back"),
    (
        "{ppl N}",
        "curve N's perplexity at the cursor (N: 0 = the main model, the default; 1.. = the --compare models)",
    ),
    ("{ppl_train N}", "curve N's perplexity at train_len"),
    ("{name N}", "curve N's label"),
    (
        "{mean_distance H}",
        "head H's measured mean attention distance at the cursor (selected layer)",
    ),
    (
        "{prior_distance H}",
        "the mean distance of head H's ALiBi prior (the bias alone) at the cursor",
    ),
    (
        "{zeroed H}",
        "the change in perplexity at the cursor when head H's slope is set to 0 (sensitivity view)",
    ),
];

/// Where a tour comes from: the file's name for messages, and the folder its `model:`,
/// `compare:` and `text:` paths are relative to.
#[derive(Debug, Clone)]
pub struct TourSource {
    /// Name in messages (`tour.md`).
    pub name: String,
    /// Base folder for relative paths.
    pub base: PathBuf,
    /// Whether it is the shipped tour (its models may be missing away from the repository).
    pub builtin: bool,
}

impl Tour {
    /// Checks the steps against a model: every fixed layer and head exists. The error names the
    /// tour file and the step's line.
    pub fn check_model(&self, name: &str, n_layers: usize, n_heads: usize) -> Result<(), String> {
        for step in &self.steps {
            let mut refs: Vec<(&str, Index, usize)> = Vec::new();
            if let Some(h) = step.state.head {
                refs.push(("head", h, n_heads));
            }
            if let Some(l) = step.state.layer {
                refs.push(("layer", l, n_layers));
            }
            if let Some(Task {
                done: Check::Head(_, h),
                ..
            }) = step.task
            {
                refs.push(("head", h, n_heads));
            }
            if let Some(Task {
                done: Check::Layer(_, l),
                ..
            }) = step.task
            {
                refs.push(("layer", l, n_layers));
            }
            for (what, idx, n) in refs {
                if let Index::At(i) = idx
                    && i >= n
                {
                    return Err(format!(
                        "{name}:{}: {what} {i}, but the model has {n} {what}s (numbered from 0) (hint: use {what} 0..{} or `last`)",
                        step.line,
                        n.saturating_sub(1)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A tour running in the app: the steps, where the learner is, and which tasks are done.
#[derive(Debug, Clone, PartialEq)]
pub struct TourState {
    /// The tour.
    pub tour: Tour,
    /// The current step (index into `tour.steps`).
    pub step: usize,
    /// Whether the card is shown (the learner may leave the tour and come back with `g`).
    pub visible: bool,
    /// Per step: whether its task was done.
    pub done: Vec<bool>,
}

impl TourState {
    /// A tour at its first step, shown.
    pub fn new(tour: Tour) -> Self {
        let n = tour.steps.len();
        Self {
            tour,
            step: 0,
            visible: true,
            done: vec![false; n],
        }
    }

    /// The current step.
    pub fn current(&self) -> &Step {
        &self.tour.steps[self.step.min(self.tour.steps.len() - 1)]
    }
}
