//! What goes to the worker ([`Job`]) and what comes back ([`WorkerMsg`]), and which queued job a
//! newer one supersedes (gitui's `AsyncSingleJob`): the contract between the app and the worker.

use crate::model::attention_stats::HeadMeans;

/// Work for the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// Score windows of `lmax` over the stream of model `curve` (0 = the main model).
    Sweep {
        /// Generation.
        generation: u64,
        /// Which curve/model.
        curve: usize,
        /// Slopes for the main model (None = its own).
        slopes: Option<Vec<f64>>,
        /// Window length.
        lmax: usize,
    },
    /// After a sweep: score the text again in windows of `lmax/2`, `lmax/4`, ... down to `min_len`,
    /// so short lengths rest on the whole text rather than on the start of each `lmax` window.
    /// Runs after every pending sweep and gives way to new ones, resuming at `done`.
    Refine {
        /// Generation (that of the sweep it refines).
        generation: u64,
        /// Which curve/model.
        curve: usize,
        /// Slopes for the main model (None = its own).
        slopes: Option<Vec<f64>>,
        /// The sweep's window length.
        lmax: usize,
        /// The shortest refinement window.
        min_len: usize,
        /// Refinement windows already scored.
        done: usize,
    },
    /// Attention probabilities of one head over the first `len` tokens (main model).
    Attention {
        /// Generation.
        generation: u64,
        /// Input length.
        len: usize,
        /// Layer.
        layer: usize,
        /// Head.
        head: usize,
        /// Slopes (None = the model's own).
        slopes: Option<Vec<f64>>,
    },
    /// Per-head slope sensitivity (the sensitivity view).
    Sensitivity(Box<SensitivityJob>),
    /// A curve scored length by length: a recipe on the main model (perplexity and KL), or the
    /// KL divergence alone of the main model's edited slopes or of a compare model (see
    /// [`VariantJob`]).
    Variant(Box<VariantJob>),
    /// Attention statistics of every (layer, head) of the main model at one length.
    Stats {
        /// Generation (that of the slopes: new slopes make older statistics stale).
        generation: u64,
        /// Input length.
        len: usize,
        /// Slopes (None = the model's own).
        slopes: Option<Vec<f64>>,
        /// The cursor's length (served before the other lengths).
        cursor: bool,
    },
}

/// Per-head slope sensitivity of the main model: for every head and slope variant (0, half,
/// double), the change in perplexity at each length against the current slopes, on the first
/// tokens of the text. Streams one [`WorkerMsg::Sensitivity`] per (head, variant).
#[derive(Debug, Clone, PartialEq)]
pub struct SensitivityJob {
    /// Generation (a newer sensitivity job supersedes this one).
    pub generation: u64,
    /// The current slopes.
    pub slopes: Vec<f64>,
    /// Input lengths (the training length and the cursor's).
    pub lengths: Vec<usize>,
    /// (head, variant) runs done, to resume after giving way to other jobs.
    pub done: usize,
    /// Baseline per-token losses at each length, once computed.
    pub baseline: Option<Vec<Vec<f32>>>,
}

/// What a [`VariantJob`] scores against the original (the main model with its own slopes).
#[derive(Debug, Clone, PartialEq)]
pub enum VariantTarget {
    /// The main model with the current (edited) slopes: KL only (its perplexity is curve 0).
    Main,
    /// Compare model `curve` (same tokens as the main model): KL only.
    Compare(usize),
    /// Recipe curve `index` on the main model with the current slopes: perplexity and KL.
    Recipe {
        /// Index among the app's recipe curves.
        index: usize,
        /// The recipe.
        recipe: crate::alibi::recipe::Recipe,
    },
}

/// Scores a [`VariantTarget`] at `lengths`, one length at a time (recipes whose slopes depend on
/// the length cannot share a sweep). At length `len` it uses the windows the main curve's point
/// rests on once its refinement is done: `len`-token windows starting at the multiples of the
/// shortest sweep or refinement window length `>= len` (see [`variant_starts`]), so the recipe's
/// point and the main curve's differ only by the recipe. Perplexity uses all of them; the KL
/// divergence at most [`KL_TOKENS`] tokens of them. Lengths where a recipe changes nothing are
/// skipped: the app takes the main curve's point there.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantJob {
    /// Generation (the app's `variant_gen` for the main model and recipes).
    pub generation: u64,
    /// What is scored.
    pub target: VariantTarget,
    /// The current slopes of the main model (None: its own, or not ALiBi).
    pub slopes: Option<Vec<f64>>,
    /// Lengths to score, ascending.
    pub lengths: Vec<usize>,
    /// The sweep's window length.
    pub lmax: usize,
    /// The shortest refinement window.
    pub min_len: usize,
    /// Lengths done, to resume after giving way.
    pub done: usize,
}

/// The KL divergence of a variant curve rests on at most this many tokens per length (the
/// comparison is paired, so a few thousand tokens give a small standard error).
pub const KL_TOKENS: usize = 4096;

/// The starts of the windows the main curve's point at `len` rests on once the sweep (windows of
/// `lmax`) and its refinement (`lmax/2`, `lmax/4`, ... down to `min_len`) are done: multiples of
/// the level length that has the most windows among those `>= len` (the longest on a tie), as
/// [`crate::eval::SweepAccumulator`] picks it. `n` is the stream's length in tokens.
pub fn variant_starts(n: usize, len: usize, lmax: usize, min_len: usize) -> Vec<usize> {
    let windows = |l: usize| n.saturating_sub(1) / l.max(1);
    let mut best = lmax;
    let mut level = lmax / 2;
    while level >= min_len.max(1) && level >= len {
        if windows(level) > windows(best) {
            best = level;
        }
        level /= 2;
    }
    (0..windows(best)).map(|w| w * best).collect()
}

/// The statistics of every head at one length, as means over the queries of its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsResult {
    /// Input length.
    pub len: usize,
    /// Windows run.
    pub windows: usize,
    /// `[layer * n_heads + head]`.
    pub heads: Vec<HeadMeans>,
    /// Heads per layer.
    pub n_heads: usize,
}

impl StatsResult {
    /// One head's means.
    pub fn head(&self, layer: usize, head: usize) -> Option<&HeadMeans> {
        self.heads.get(layer * self.n_heads + head)
    }
}

/// One head's attention over `len` tokens, row-major `len x len` (rows = queries).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMap {
    /// Input length.
    pub len: usize,
    /// Layer.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// Probabilities.
    pub probs: Vec<f32>,
}

/// What the worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMsg {
    /// One more window of a sweep.
    Window {
        /// Generation.
        generation: u64,
        /// Which curve.
        curve: usize,
        /// Stream index where the window starts.
        start: usize,
        /// Per-position NLL.
        nll: Vec<f32>,
        /// Windows done so far.
        done: usize,
        /// Windows in the sweep.
        total: usize,
        /// Whether it is a refinement window ([`Job::Refine`]).
        refine: bool,
    },
    /// A piece of a long window of a sweep or refinement, scored in chunks: the losses of window
    /// positions `offset..offset + nll.len()`. The window is complete when they reach `len`.
    WindowPart {
        /// Generation.
        generation: u64,
        /// Which curve.
        curve: usize,
        /// Stream index where the window starts.
        start: usize,
        /// The window's length.
        len: usize,
        /// First window position of `nll`.
        offset: usize,
        /// Per-position NLL.
        nll: Vec<f32>,
        /// Windows complete so far (this one included once it is complete).
        done: usize,
        /// Windows in the sweep (or refinement).
        total: usize,
        /// Whether it is a refinement window.
        refine: bool,
    },
    /// Where a long job stands (sent a few times a second while it runs).
    Progress {
        /// Generation of the job.
        generation: u64,
        /// The progress.
        progress: Progress,
    },
    /// A sweep (or its refinement) finished.
    SweepDone {
        /// Generation.
        generation: u64,
        /// Which curve.
        curve: usize,
        /// Seconds it took.
        secs: f64,
        /// Whether the refinement finished (else the sweep).
        refine: bool,
    },
    /// An attention map.
    Attention {
        /// Generation.
        generation: u64,
        /// The map.
        map: AttentionMap,
    },
    /// Attention statistics at one length.
    Stats {
        /// Generation.
        generation: u64,
        /// The statistics.
        stats: StatsResult,
    },
    /// The baseline of a sensitivity job (`head == None`) or one (head, variant) run: the change
    /// in perplexity at each of the job's lengths.
    Sensitivity {
        /// Generation of the job.
        generation: u64,
        /// The head (None = the baseline, whose deltas are 0).
        head: Option<usize>,
        /// Index into [`crate::eval::ablate::Variant::SLOPES`].
        variant: usize,
        /// One result per length.
        deltas: Vec<crate::eval::ablate::Delta>,
        /// Runs done and planned (the baseline not counted).
        progress: (usize, usize),
    },
    /// One length of a [`VariantJob`].
    Variant {
        /// Generation of the job.
        generation: u64,
        /// What was scored.
        target: VariantTarget,
        /// Input length.
        len: usize,
        /// The recipe's perplexity point (None for KL-only targets).
        point: Option<crate::eval::Point>,
        /// The KL divergence from the original.
        kl: crate::eval::KlStats,
        /// Lengths done and planned.
        progress: (usize, usize),
    },
    /// A failed job.
    Error {
        /// Generation.
        generation: u64,
        /// One-line message.
        msg: String,
    },
}

/// Progress inside one long forward (a chunked sweep window, or the layers of an attention map).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// What runs: [`Task::Sweep`] and [`Task::Refine`] for curve `curve`, or the attention map.
    pub task: Task,
    /// The curve (sweeps and refinements; 0 otherwise).
    pub curve: usize,
    /// The layer running and the layers to run.
    pub layer: (usize, usize),
    /// Positions of the window scored and its length (attention: the input length twice).
    pub tokens: (usize, usize),
    /// Tokens per second of compute, from the work done so far.
    pub tokens_per_s: f64,
    /// Seconds left for this window (or map), estimated from the work done so far.
    pub eta_s: f64,
}

/// What a [`Progress`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// A sweep window.
    Sweep,
    /// A refinement window.
    Refine,
    /// The attention map.
    Attention,
}

/// The order the worker serves jobs in (lower first): what the user is looking at now (the
/// attention map, then the statistics at the cursor), then the curves, the other statistics, the
/// sensitivity view, and the refinements. A job running a long forward gives way, between two of
/// its steps, to any job of a lower rank.
pub fn priority(job: &Job) -> u8 {
    match job {
        Job::Attention { .. } => 0,
        Job::Stats { cursor: true, .. } => 1,
        Job::Sweep { .. } => 2,
        Job::Stats { .. } => 3,
        Job::Sensitivity(_) => 4,
        Job::Refine { .. } => 5,
        Job::Variant(_) => 6,
    }
}

/// Whether `new` makes `old` pointless: a newer sweep or refinement of the same curve (the slopes
/// changed), or any newer attention.
pub fn supersedes(new: &Job, old: &Job) -> bool {
    let curve_job = |j: &Job| match j {
        Job::Sweep {
            generation, curve, ..
        }
        | Job::Refine {
            generation, curve, ..
        } => Some((*generation, *curve)),
        Job::Attention { .. } | Job::Stats { .. } | Job::Sensitivity(_) | Job::Variant(_) => None,
    };
    match (new, old) {
        (Job::Attention { generation: g1, .. }, Job::Attention { generation: g0, .. }) => g1 > g0,
        (Job::Sensitivity(a), Job::Sensitivity(b)) => a.generation > b.generation,
        // New slopes or a new set of recipes make every older main or recipe variant stale (a
        // compare model's KL never is).
        (Job::Variant(a), Job::Variant(b)) => {
            let fixed = |t: &VariantTarget| matches!(t, VariantTarget::Compare(_));
            a.generation > b.generation && !fixed(&a.target) && !fixed(&b.target)
        }
        // Statistics of older slopes are stale; a repeated length replaces the queued one.
        (
            Job::Stats {
                generation: g1,
                len: l1,
                ..
            },
            Job::Stats {
                generation: g0,
                len: l0,
                ..
            },
        ) => g1 > g0 || (g1 == g0 && l1 == l0),
        _ => match (curve_job(new), curve_job(old)) {
            (Some((g1, c1)), Some((g0, c0))) => c1 == c0 && g1 > g0,
            _ => false,
        },
    }
}
