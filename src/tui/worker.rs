//! The worker thread: owns the models, runs sweeps, attention captures and statistics, streams
//! results (the jobs and messages are in `messages.rs`).
//!
//! Jobs carry a generation number. A newer job of the same kind supersedes queued ones (gitui's
//! `AsyncSingleJob`). Jobs are served by [`priority`]: the attention map first, then the
//! statistics at the cursor, the curves, and the rest. Long forwards never hold the user up:
//! sweeps and refinements run a window in steps (a layer of a chunk of positions, see
//! `model/prefill.rs`) and the attention map a layer at a time with every layer's input kept, so
//! between two steps a more urgent job goes first and the long one resumes where it stopped; the
//! other forwards (statistics, sensitivity runs, short windows) stop between two layers when a more
//! urgent job arrives ([`JobSender`] raises the flag) and run again afterwards.

pub use super::messages::{
    AttentionMap, Job, Progress, SensitivityJob, StatsResult, Task, WorkerMsg, priority, supersedes,
};
use crate::eval::Control;
use crate::model::LoadedModel;
use crate::model::prefill::{LayerInputs, Prefill, token_flops};
use crate::model::transformer::{ForwardOptions, LayerCache, is_interrupted, slopes_tensor};
use crate::text::Stream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SendError, Sender, TryRecvError};
use std::time::{Duration, Instant};

mod score;
mod variant;

pub use super::curve::refine_plan;

/// Attention statistics at one length run over at most this many tokens (whole windows, at least
/// one): enough queries for stable means, a few seconds on a CPU for the default model.
pub const STATS_TOKENS: usize = 8192;
/// ... and over at most about this much compute (FLOPs), so a big model's statistics at the
/// cursor take one window rather than minutes.
pub const STATS_FLOPS: f64 = 1e12;

/// The sensitivity view scores at most this many tokens per run (a run per head and variant).
pub const SENSITIVITY_TOKENS: usize = 4096;

/// Progress messages go out at most this often.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// A job reports progress only once it has run this long (small models never do).
pub const PROGRESS_AFTER: Duration = Duration::from_millis(300);

/// Where the worker delivers its messages (the main loop's event channel implements it in
/// `event.rs`, so the worker does not depend on the event type).
pub trait Outbox: Send + 'static {
    /// Delivers `msg`; `false` when nobody listens any more.
    fn deliver(&self, msg: WorkerMsg) -> bool;
}

/// A model and the text tokenized with its tokenizer.
pub struct ModelSlot {
    /// The model.
    pub loaded: LoadedModel,
    /// The text as its tokens.
    pub stream: Stream,
}

/// What the worker and the senders share: the rank of the running job and the flag that stops
/// its forward between two layers.
struct Shared {
    interrupt: Arc<AtomicBool>,
    running: AtomicU8,
}

/// No job runs.
const IDLE: u8 = u8::MAX;

/// Sends jobs to the worker; a job more urgent than the one running ([`priority`]) also raises
/// the flag that stops the running forward between two layers.
#[derive(Clone)]
pub struct JobSender {
    tx: Sender<Job>,
    shared: Arc<Shared>,
}

impl JobSender {
    /// Queues `job`; fails when the worker has stopped.
    pub fn send(&self, job: Job) -> Result<(), SendError<Job>> {
        let rank = priority(&job);
        // Sent first, flagged second: the worker clears the flag before it looks at the queue, so
        // a job is either seen there or raises the flag afterwards.
        self.tx.send(job)?;
        if rank < self.shared.running.load(Ordering::SeqCst) {
            self.shared.interrupt.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// How the worker splits long forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Tokens per chunk of a long window; a window longer than this runs in chunks (default:
    /// [`crate::model::prefill::chunk_tokens`] of each model, so only big models chunk).
    pub chunk_tokens: Option<usize>,
}

/// Starts the worker; jobs go in through the returned sender, results come out as events.
pub fn spawn(slots: Vec<ModelSlot>, events: impl Outbox) -> JobSender {
    spawn_with(slots, events, WorkerOptions::default())
}

/// [`spawn`] with options.
pub fn spawn_with(slots: Vec<ModelSlot>, events: impl Outbox, options: WorkerOptions) -> JobSender {
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared {
        interrupt: Arc::new(AtomicBool::new(false)),
        running: AtomicU8::new(IDLE),
    });
    let worker_shared = shared.clone();
    std::thread::Builder::new()
        .name("alibi-worker".to_string())
        .spawn(move || {
            Worker {
                slots,
                rx,
                events: Box::new(events),
                pending: Vec::new(),
                shared: worker_shared,
                options,
                paused: Vec::new(),
                spare: Vec::new(),
                layer_inputs: None,
                last_progress: None,
            }
            .run();
        })
        .map_err(|e| eprintln!("cannot start the worker thread: {e}"))
        .ok();
    JobSender { tx, shared }
}

/// A sweep or refinement that gave way to a more urgent job.
struct Paused {
    pub(super) refine: bool,
    curve: usize,
    generation: u64,
    /// Windows of the plan done.
    done: usize,
    /// Seconds of compute so far.
    secs: f64,
    /// The long window under way: its start, its forward, seconds spent on it.
    window: Option<(usize, Prefill, f64)>,
}

impl Paused {
    /// Whether `job` is the sweep or refinement this paused state belongs to.
    fn resumes(&self, job: &Job) -> bool {
        match job {
            Job::Sweep {
                generation, curve, ..
            } => !self.refine && *curve == self.curve && *generation == self.generation,
            Job::Refine {
                generation, curve, ..
            } => self.refine && *curve == self.curve && *generation == self.generation,
            _ => false,
        }
    }
}

struct Worker {
    slots: Vec<ModelSlot>,
    rx: Receiver<Job>,
    events: Box<dyn Outbox>,
    pending: Vec<Job>,
    shared: Arc<Shared>,
    options: WorkerOptions,
    /// Sweeps and refinements that gave way, with their progress (see `score.rs`).
    paused: Vec<Paused>,
    /// Key/value caches of finished or dropped long windows, for the next one to reuse (freed
    /// when the worker goes idle).
    spare: Vec<LayerCache>,
    /// Every layer's input for the last attention map's length and slopes.
    layer_inputs: Option<(usize, Option<Vec<f64>>, LayerInputs)>,
    last_progress: Option<Instant>,
}

enum Flow {
    Continue,
    Disconnected,
}

/// How a job ended.
enum Outcome {
    /// Finished, failed (reported) or superseded.
    Done,
    /// Gave way to a more urgent job; queue it again (it resumes where it stopped).
    Yield(Job),
    /// Nobody listens any more.
    Disconnected,
}

/// What a running job should do before its next step.
enum Next {
    Go,
    /// A newer job makes it pointless.
    Drop,
    /// A more urgent job waits.
    Yield,
    Disconnected,
}

impl Worker {
    /// Adds a job, replacing any queued job it supersedes.
    fn queue(&mut self, job: Job) {
        self.pending.retain(|j| !supersedes(&job, j));
        self.pending.push(job);
        // A paused sweep or refinement whose job was superseded will not resume: free its keys
        // and values now.
        let pending = &self.pending;
        let (keep, gone): (Vec<Paused>, Vec<Paused>) = std::mem::take(&mut self.paused)
            .into_iter()
            .partition(|p| pending.iter().any(|j| p.resumes(j)));
        self.paused = keep;
        for p in gone {
            self.recycle(p);
        }
    }

    /// Keeps the key/value caches of a sweep or refinement that will not resume.
    fn recycle(&mut self, paused: Paused) {
        if let Some((_, prefill, _)) = paused.window {
            self.spare.extend(prefill.into_caches());
        }
    }

    fn drain(&mut self) -> Flow {
        loop {
            match self.rx.try_recv() {
                Ok(job) => self.queue(job),
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Disconnected,
            }
        }
    }

    fn send(&self, msg: WorkerMsg) -> bool {
        self.events.deliver(msg)
    }

    /// Before each step of `me`: clears the interrupt flag, takes in new jobs, and says whether to
    /// go on.
    fn next(&mut self, me: &Job) -> Next {
        self.shared.interrupt.store(false, Ordering::SeqCst);
        if let Flow::Disconnected = self.drain() {
            return Next::Disconnected;
        }
        if self.pending.iter().any(|j| supersedes(j, me)) {
            return Next::Drop;
        }
        let rank = priority(me);
        if self.pending.iter().any(|j| priority(j) < rank) {
            return Next::Yield;
        }
        Next::Go
    }

    /// The interrupt flag, for forwards that cannot pause themselves.
    fn interrupt(&self) -> Arc<AtomicBool> {
        self.shared.interrupt.clone()
    }

    /// Sends `progress` unless one went out less than [`PROGRESS_INTERVAL`] ago or the job has run
    /// less than [`PROGRESS_AFTER`] (`started`).
    fn progress(&mut self, generation: u64, started: Instant, progress: Progress) -> bool {
        let now = Instant::now();
        if now.duration_since(started) < PROGRESS_AFTER
            || self
                .last_progress
                .is_some_and(|t| now.duration_since(t) < PROGRESS_INTERVAL)
        {
            return true;
        }
        self.last_progress = Some(now);
        self.send(WorkerMsg::Progress {
            generation,
            progress,
        })
    }

    fn error(&self, generation: u64, what: &str, e: candle_core::Error) -> Outcome {
        if self.send(WorkerMsg::Error {
            generation,
            msg: format!("{what}: {}", crate::model::error::one_line(e)),
        }) {
            Outcome::Done
        } else {
            Outcome::Disconnected
        }
    }

    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                // Idle: nothing will reuse the caches soon; give their memory back.
                self.spare.clear();
                match self.rx.recv() {
                    Ok(job) => self.queue(job),
                    Err(_) => return,
                }
            }
            if let Flow::Disconnected = self.drain() {
                return;
            }
            let i = (0..self.pending.len())
                .min_by_key(|&i| priority(&self.pending[i]))
                .unwrap_or(0);
            let next = self.pending.remove(i);
            self.shared.running.store(priority(&next), Ordering::SeqCst);
            let outcome = match next {
                Job::Attention { .. } => self.attention(next),
                Job::Sweep { .. } | Job::Refine { .. } => self.score(next),
                Job::Stats { .. } => self.stats(next),
                Job::Sensitivity(job) => self.sensitivity(*job),
                Job::Variant(job) => self.variant(*job),
            };
            self.shared.running.store(IDLE, Ordering::SeqCst);
            match outcome {
                Outcome::Done => {}
                // Ahead of jobs of its own rank: it was started first.
                Outcome::Yield(job) => self.pending.insert(0, job),
                Outcome::Disconnected => return,
            }
        }
    }

    /// One head's attention map, a layer at a time: the input of every layer is kept for the
    /// length and slopes, so another head or a lower layer costs one layer, and a newer request
    /// takes over between two layers without losing the layers done.
    fn attention(&mut self, job: Job) -> Outcome {
        let Job::Attention {
            generation,
            len,
            layer,
            head,
            ref slopes,
        } = job
        else {
            return Outcome::Done;
        };
        let n_layers = self.slots[0].loaded.model.config().n_layers;
        if layer >= n_layers {
            return self.error(
                generation,
                "attention",
                candle_core::Error::Msg(format!(
                    "layer {layer} does not exist (the model has {n_layers} layers)"
                )),
            );
        }
        let n = len.min(self.slots[0].stream.ids.len());
        let started = Instant::now();
        let mut inputs = match self.layer_inputs.take() {
            Some((l, s, inputs)) if l == n && s == *slopes => inputs,
            _ => {
                let model = &self.slots[0].loaded.model;
                let opts = match slopes
                    .as_deref()
                    .map(|s| slopes_tensor(s, model.device()))
                    .transpose()
                {
                    Ok(slopes) => ForwardOptions {
                        slopes,
                        ..Default::default()
                    },
                    Err(e) => return self.error(generation, "attention", e),
                };
                match LayerInputs::new(model, &self.slots[0].stream.ids[..n], &opts) {
                    Ok(i) => i,
                    Err(e) => return self.error(generation, "attention", e),
                }
            }
        };
        let first_known = inputs.known();
        while inputs.known() <= layer {
            match self.next(&job) {
                Next::Go => {}
                other => {
                    self.layer_inputs = Some((n, slopes.clone(), inputs));
                    return match other {
                        Next::Drop => Outcome::Done,
                        Next::Yield => Outcome::Yield(job.clone()),
                        _ => Outcome::Disconnected,
                    };
                }
            }
            if let Err(e) = inputs.advance(&self.slots[0].loaded.model) {
                return self.error(generation, "attention", e);
            }
            // Rates in whole-model tokens per second, as the sweep reports them.
            let done = (inputs.known() - first_known) as f64;
            let left = (layer + 1).saturating_sub(inputs.known()) as f64 + 1.0;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let progress = Progress {
                task: Task::Attention,
                curve: 0,
                layer: (inputs.known() - 1, layer + 1),
                tokens: (n, n),
                tokens_per_s: n as f64 * done / n_layers as f64 / secs,
                eta_s: secs / done * left,
            };
            if !self.progress(generation, started, progress) {
                return Outcome::Disconnected;
            }
        }
        let result = inputs.attention(&self.slots[0].loaded.model, layer, head);
        self.layer_inputs = Some((n, slopes.clone(), inputs));
        match result {
            Ok(probs) => {
                if self.send(WorkerMsg::Attention {
                    generation,
                    map: AttentionMap {
                        len: n,
                        layer,
                        head,
                        probs,
                    },
                }) {
                    Outcome::Done
                } else {
                    Outcome::Disconnected
                }
            }
            Err(e) => self.error(generation, "attention", e),
        }
    }

    fn stats(&mut self, job: Job) -> Outcome {
        let Job::Stats {
            generation,
            len,
            ref slopes,
            ..
        } = job
        else {
            return Outcome::Done;
        };
        match self.next(&job) {
            Next::Go => {}
            Next::Drop => return Outcome::Done,
            Next::Yield => return Outcome::Yield(job),
            Next::Disconnected => return Outcome::Disconnected,
        }
        let slot = &self.slots[0];
        let model = &slot.loaded.model;
        let cfg = model.config();
        let budget = (STATS_FLOPS / token_flops(cfg, len / 2).max(1.0)) as usize;
        let windows = (STATS_TOKENS.min(budget) / len.max(1)).max(1);
        let result = crate::eval::stats::length_stats(
            model,
            &slot.stream,
            len,
            slopes.as_deref(),
            Some(windows),
            &Control {
                interrupt: Some(self.interrupt()),
                ..Default::default()
            },
        );
        match result {
            Ok(run) => {
                let heads = (0..cfg.n_layers)
                    .flat_map(|l| (0..cfg.n_heads).map(move |h| (l, h)))
                    .map(|(l, h)| run.attention.head(l, h).means())
                    .collect();
                let msg = WorkerMsg::Stats {
                    generation,
                    stats: StatsResult {
                        len: run.length,
                        windows: run.windows,
                        heads,
                        n_heads: cfg.n_heads,
                    },
                };
                if self.send(msg) {
                    Outcome::Done
                } else {
                    Outcome::Disconnected
                }
            }
            Err(e) if is_interrupted(&e) => Outcome::Yield(job),
            Err(e) => self.error(generation, "statistics", e),
        }
    }

    /// Runs the sensitivity job one (head, variant) at a time, giving way to any other job between
    /// runs (it is put back with its progress and resumes after them) and within a run (which then
    /// starts again).
    fn sensitivity(&mut self, mut job: SensitivityJob) -> Outcome {
        use crate::eval::ablate::{Variant, delta, token_losses};
        // The runs score the first tokens only: copy just those.
        let full = &self.slots[0].stream;
        let n = full.ids.len().min(SENSITIVITY_TOKENS + 1);
        let stream = Stream {
            ids: full.ids[..n].to_vec(),
            bytes: full.bytes.as_ref().map(|b| b[..n].to_vec()),
        };
        let lmax = job.lengths.iter().copied().max().unwrap_or(1);
        let batch = (crate::eval::BATCH_TOKENS / lmax.max(1)).max(1);
        let lengths = job.lengths.clone();
        let interrupt = Some(self.interrupt());
        let losses = |this: &Self, slopes: &[f64]| -> candle_core::Result<Vec<Vec<f32>>> {
            let model = &this.slots[0].loaded.model;
            let opts = ForwardOptions {
                slopes: Some(slopes_tensor(slopes, model.device())?),
                interrupt: interrupt.clone(),
                ..Default::default()
            };
            lengths
                .iter()
                .map(|&len| token_losses(model, &stream, len, batch, &opts, &Control::default()))
                .collect()
        };
        let heads = job.slopes.len();
        let total = heads * Variant::SLOPES.len();
        loop {
            let me = Job::Sensitivity(Box::new(job.clone()));
            if job.baseline.is_some() && job.done >= total {
                return Outcome::Done;
            }
            match self.next(&me) {
                Next::Go => {}
                Next::Drop => return Outcome::Done,
                Next::Yield => return Outcome::Yield(me),
                Next::Disconnected => return Outcome::Disconnected,
            }
            // Anything more urgent waiting goes first (by rank: the refinements and variant
            // curves wait for the sensitivity; yielding to them would livelock).
            if self.pending.iter().any(|j| priority(j) <= priority(&me)) {
                return Outcome::Yield(me);
            }
            let Some(base) = job.baseline.clone() else {
                match losses(self, &job.slopes) {
                    Ok(b) => {
                        let deltas = job
                            .lengths
                            .iter()
                            .zip(&b)
                            .map(|(&len, l)| delta(len, l, l))
                            .collect();
                        if !self.send(WorkerMsg::Sensitivity {
                            generation: job.generation,
                            head: None,
                            variant: 0,
                            deltas,
                            progress: (0, total),
                        }) {
                            return Outcome::Disconnected;
                        }
                        job.baseline = Some(b);
                    }
                    Err(e) if is_interrupted(&e) => {}
                    Err(e) => return self.error(job.generation, "sensitivity", e),
                }
                continue;
            };
            let (head, variant) = (
                job.done / Variant::SLOPES.len(),
                job.done % Variant::SLOPES.len(),
            );
            let mut slopes = job.slopes.clone();
            slopes[head] = Variant::SLOPES[variant].apply(slopes[head]);
            let run = match losses(self, &slopes) {
                Ok(r) => r,
                Err(e) if is_interrupted(&e) => continue,
                Err(e) => return self.error(job.generation, "sensitivity", e),
            };
            job.done += 1;
            let deltas = job
                .lengths
                .iter()
                .zip(base.iter().zip(&run))
                .map(|(&len, (b, r))| delta(len, b, r))
                .collect();
            if !self.send(WorkerMsg::Sensitivity {
                generation: job.generation,
                head: Some(head),
                variant,
                deltas,
                progress: (job.done, total),
            }) {
                return Outcome::Disconnected;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_jobs_supersede_older_ones_of_the_same_kind() {
        let sweep = |generation, curve| Job::Sweep {
            generation,
            curve,
            slopes: None,
            lmax: 8,
        };
        let attn = |generation| Job::Attention {
            generation,
            len: 8,
            layer: 0,
            head: 0,
            slopes: None,
        };
        assert!(supersedes(&sweep(2, 0), &sweep(1, 0)));
        assert!(!supersedes(&sweep(2, 1), &sweep(1, 0)));
        assert!(!supersedes(&sweep(1, 0), &sweep(2, 0)));
        assert!(supersedes(&attn(5), &attn(4)));
        assert!(!supersedes(&attn(5), &sweep(1, 0)));
        let refine = |generation, curve| Job::Refine {
            generation,
            curve,
            slopes: None,
            lmax: 8,
            min_len: 2,
            done: 0,
        };
        // New slopes (a newer sweep) make the old refinement pointless, and the other way round.
        assert!(supersedes(&sweep(2, 0), &refine(1, 0)));
        assert!(supersedes(&refine(2, 0), &sweep(1, 0)));
        // A sweep does not cancel its own refinement, nor another curve's.
        assert!(!supersedes(&sweep(1, 0), &refine(1, 0)));
        assert!(!supersedes(&sweep(2, 1), &refine(1, 0)));
        assert!(!supersedes(&attn(9), &refine(1, 0)));
        // The user's view first, then the curves, the rest, the refinements last.
        let stats = |cursor| Job::Stats {
            generation: 1,
            len: 8,
            slopes: None,
            cursor,
        };
        let order = [
            attn(1),
            stats(true),
            sweep(1, 0),
            stats(false),
            refine(1, 0),
        ];
        assert!(order.windows(2).all(|w| priority(&w[0]) < priority(&w[1])));
    }
}
