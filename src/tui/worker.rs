//! The worker thread: owns the models, runs sweeps, attention captures and statistics, streams
//! results (the jobs and messages are in `messages.rs`).
//!
//! Jobs carry a generation number. A newer job of the same kind supersedes queued ones (gitui's
//! `AsyncSingleJob`); a running sweep checks for newer jobs between windows and gives way, and an
//! attention request is served between two sweep windows so the heatmap never waits for a sweep.

pub use super::messages::{AttentionMap, Job, SensitivityJob, StatsResult, WorkerMsg, supersedes};
use crate::eval::{Control, window_losses};
use crate::model::LoadedModel;
use crate::model::transformer::{ForwardOptions, slopes_tensor};
use crate::text::Stream;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

/// Attention statistics at one length run over at most this many tokens (whole windows, at least
/// one): enough queries for stable means, a few seconds on a CPU for the default model.
pub const STATS_TOKENS: usize = 8192;

/// The sensitivity view scores at most this many tokens per run (a run per head and variant).
pub const SENSITIVITY_TOKENS: usize = 4096;

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

/// Starts the worker; jobs go in through the returned sender, results come out as events.
pub fn spawn(slots: Vec<ModelSlot>, events: impl Outbox) -> Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("alibi-worker".to_string())
        .spawn(move || {
            Worker {
                slots,
                rx,
                events: Box::new(events),
                pending: Vec::new(),
            }
            .run();
        })
        .map_err(|e| eprintln!("cannot start the worker thread: {e}"))
        .ok();
    tx
}

struct Worker {
    slots: Vec<ModelSlot>,
    rx: Receiver<Job>,
    events: Box<dyn Outbox>,
    pending: Vec<Job>,
}

enum Flow {
    Continue,
    Disconnected,
}

impl Worker {
    /// Adds a job, replacing any queued job it supersedes.
    fn queue(&mut self, job: Job) {
        self.pending.retain(|j| !supersedes(&job, j));
        self.pending.push(job);
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

    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.queue(job),
                    Err(_) => return,
                }
            }
            if let Flow::Disconnected = self.drain() {
                return;
            }
            // Attention first (quick, and the user is looking at it), then sweeps, then the
            // statistics at the cursor's length, the other lengths' statistics, refinements.
            let rank = |j: &Job| match j {
                Job::Attention { .. } => 0,
                Job::Sweep { .. } => 1,
                Job::Stats { cursor: true, .. } => 2,
                Job::Stats { .. } => 3,
                Job::Sensitivity(_) => 4,
                Job::Refine { .. } => 5,
            };
            let i = (0..self.pending.len())
                .min_by_key(|&i| rank(&self.pending[i]))
                .unwrap_or(0);
            let next = self.pending.remove(i);
            let ok = match next {
                Job::Attention { .. } => self.attention(&next),
                Job::Sweep { .. } => self.sweep(&next),
                Job::Refine { .. } => self.refine(next),
                Job::Stats { .. } => self.stats(&next),
                Job::Sensitivity(job) => self.sensitivity(*job),
            };
            if !ok {
                return;
            }
        }
    }

    fn attention(&self, job: &Job) -> bool {
        let Job::Attention {
            generation,
            len,
            layer,
            head,
            slopes,
        } = job
        else {
            return true;
        };
        let slot = &self.slots[0];
        let n = (*len).min(slot.stream.ids.len());
        let result = crate::eval::stats::attention_map(
            &slot.loaded.model,
            &slot.stream.ids[..n],
            *layer,
            *head,
            slopes.as_deref(),
        )
        .map(|probs| AttentionMap {
            len: n,
            layer: *layer,
            head: *head,
            probs,
        });
        match result {
            Ok(map) => self.send(WorkerMsg::Attention {
                generation: *generation,
                map,
            }),
            Err(e) => self.send(WorkerMsg::Error {
                generation: *generation,
                msg: format!("attention: {}", crate::model::error::one_line(e)),
            }),
        }
    }

    fn sweep(&mut self, job: &Job) -> bool {
        let Job::Sweep {
            generation,
            curve,
            slopes,
            lmax,
        } = job
        else {
            return true;
        };
        let started = Instant::now();
        let total = self
            .slots
            .get(*curve)
            .map_or(0, |s| s.stream.windows(*lmax));
        let mut done = 0;
        while done < total {
            if let Flow::Disconnected = self.drain() {
                return false;
            }
            if self.pending.iter().any(|j| supersedes(j, job)) {
                return true;
            }
            if !self.serve_attention() {
                return false;
            }
            let slot = &self.slots[*curve];
            let model = &slot.loaded.model;
            let start = done * lmax;
            let slope_t = match slopes
                .as_ref()
                .map(|s| slopes_tensor(s, model.device()))
                .transpose()
            {
                Ok(t) => t,
                Err(e) => {
                    return self.send(WorkerMsg::Error {
                        generation: *generation,
                        msg: e.to_string(),
                    });
                }
            };
            let mut nll = Vec::new();
            let r = window_losses(
                model,
                &slot.stream,
                &[start],
                *lmax,
                slope_t.as_ref(),
                &Control {
                    batch: Some(1),
                    ..Default::default()
                },
                |_, row| nll = row,
            );
            if let Err(e) = r {
                return self.send(WorkerMsg::Error {
                    generation: *generation,
                    msg: format!("sweep: {}", crate::model::error::one_line(e)),
                });
            }
            done += 1;
            if !self.send(WorkerMsg::Window {
                generation: *generation,
                curve: *curve,
                start,
                nll,
                done,
                total,
                refine: false,
            }) {
                return false;
            }
        }
        self.send(WorkerMsg::SweepDone {
            generation: *generation,
            curve: *curve,
            secs: started.elapsed().as_secs_f64(),
            refine: false,
        })
    }

    fn stats(&self, job: &Job) -> bool {
        let Job::Stats {
            generation,
            len,
            slopes,
            ..
        } = job
        else {
            return true;
        };
        let slot = &self.slots[0];
        let model = &slot.loaded.model;
        let windows = (STATS_TOKENS / (*len).max(1)).max(1);
        let result = crate::eval::stats::length_stats(
            model,
            &slot.stream,
            *len,
            slopes.as_deref(),
            Some(windows),
            &Control::default(),
        );
        match result {
            Ok(run) => {
                let cfg = model.config();
                let heads = (0..cfg.n_layers)
                    .flat_map(|l| (0..cfg.n_heads).map(move |h| (l, h)))
                    .map(|(l, h)| run.attention.head(l, h).means())
                    .collect();
                self.send(WorkerMsg::Stats {
                    generation: *generation,
                    stats: StatsResult {
                        len: run.length,
                        windows: run.windows,
                        heads,
                        n_heads: cfg.n_heads,
                    },
                })
            }
            Err(e) => self.send(WorkerMsg::Error {
                generation: *generation,
                msg: format!("statistics: {}", crate::model::error::one_line(e)),
            }),
        }
    }

    /// Runs the sensitivity job one (head, variant) at a time, giving way to any other job between
    /// runs (it is put back with its progress and resumes after them).
    fn sensitivity(&mut self, mut job: SensitivityJob) -> bool {
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
        let losses = |this: &Self, slopes: &[f64]| -> candle_core::Result<Vec<Vec<f32>>> {
            let model = &this.slots[0].loaded.model;
            let opts = ForwardOptions {
                slopes: Some(slopes_tensor(slopes, model.device())?),
                ..Default::default()
            };
            lengths
                .iter()
                .map(|&len| token_losses(model, &stream, len, batch, &opts, &Control::default()))
                .collect()
        };
        let fail = |e: candle_core::Error| WorkerMsg::Error {
            generation: job.generation,
            msg: format!("sensitivity: {}", crate::model::error::one_line(e)),
        };
        let heads = job.slopes.len();
        let total = heads * Variant::SLOPES.len();
        if job.baseline.is_none() {
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
                        return false;
                    }
                    job.baseline = Some(b);
                }
                Err(e) => return self.send(fail(e)),
            }
        }
        let Some(base) = job.baseline.clone() else {
            return true;
        };
        while job.done < total {
            if let Flow::Disconnected = self.drain() {
                return false;
            }
            let me = Job::Sensitivity(Box::new(job.clone()));
            if self.pending.iter().any(|j| supersedes(j, &me)) {
                return true;
            }
            if self.pending.iter().any(|j| {
                matches!(
                    j,
                    Job::Attention { .. } | Job::Sweep { .. } | Job::Stats { .. }
                )
            }) {
                // A job of higher priority is waiting: it goes first, this one resumes afterwards.
                self.pending.push(me);
                return true;
            }
            let (head, variant) = (
                job.done / Variant::SLOPES.len(),
                job.done % Variant::SLOPES.len(),
            );
            let mut slopes = job.slopes.clone();
            slopes[head] = Variant::SLOPES[variant].apply(slopes[head]);
            let run = match losses(self, &slopes) {
                Ok(r) => r,
                Err(e) => return self.send(fail(e)),
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
                return false;
            }
        }
        true
    }

    /// Serves a pending attention request, if any (between two windows of a long job).
    fn serve_attention(&mut self) -> bool {
        match self
            .pending
            .iter()
            .position(|j| matches!(j, Job::Attention { .. }))
        {
            Some(i) => {
                let a = self.pending.remove(i);
                self.attention(&a)
            }
            None => true,
        }
    }

    fn refine(&mut self, job: Job) -> bool {
        let Job::Refine {
            generation,
            curve,
            slopes,
            lmax,
            min_len,
            done,
        } = job
        else {
            return true;
        };
        let Some(slot) = self.slots.get(curve) else {
            return true;
        };
        let plan = refine_plan(slot.stream.ids.len(), lmax, min_len);
        let total = plan.len();
        let started = Instant::now();
        let mut done = done.min(total);
        while done < total {
            if let Flow::Disconnected = self.drain() {
                return false;
            }
            let me = Job::Refine {
                generation,
                curve,
                slopes: slopes.clone(),
                lmax,
                min_len,
                done,
            };
            if self.pending.iter().any(|j| supersedes(j, &me)) {
                return true;
            }
            if self.pending.iter().any(|j| {
                matches!(
                    j,
                    Job::Sweep { .. } | Job::Stats { .. } | Job::Sensitivity(_)
                )
            }) {
                // A sweep, statistics or the sensitivity are waiting: let them go first and resume
                // afterwards.
                self.pending.push(me);
                return true;
            }
            if !self.serve_attention() {
                return false;
            }
            // One step: windows of one length, about one lmax window's worth of tokens.
            let len = plan[done].0;
            let step = (lmax / len).max(1);
            let starts: Vec<usize> = plan[done..]
                .iter()
                .take(step)
                .take_while(|(l, _)| *l == len)
                .map(|&(_, s)| s)
                .collect();
            let slot = &self.slots[curve];
            let model = &slot.loaded.model;
            let mut rows = Vec::with_capacity(starts.len());
            let r = slopes
                .as_ref()
                .map(|s| slopes_tensor(s, model.device()))
                .transpose()
                .and_then(|slope_t| {
                    window_losses(
                        model,
                        &slot.stream,
                        &starts,
                        len,
                        slope_t.as_ref(),
                        &Control::default(),
                        |start, row| rows.push((start, row)),
                    )
                });
            if let Err(e) = r {
                return self.send(WorkerMsg::Error {
                    generation,
                    msg: format!("refine: {}", crate::model::error::one_line(e)),
                });
            }
            for (start, nll) in rows {
                done += 1;
                if !self.send(WorkerMsg::Window {
                    generation,
                    curve,
                    start,
                    nll,
                    done,
                    total,
                    refine: true,
                }) {
                    return false;
                }
            }
        }
        self.send(WorkerMsg::SweepDone {
            generation,
            curve,
            secs: started.elapsed().as_secs_f64(),
            refine: true,
        })
    }
}

/// The refinement windows for a stream of `n` tokens: `(length, start)` for lengths `lmax/2`,
/// `lmax/4`, ... (halving, longest first) down to `min_len`, each length tiling the whole stream.
pub fn refine_plan(n: usize, lmax: usize, min_len: usize) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut len = lmax / 2;
    while len >= min_len.max(1) {
        let windows = n.saturating_sub(1) / len;
        plan.extend((0..windows).map(|w| (len, w * len)));
        len /= 2;
    }
    plan
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
    }

    #[test]
    fn the_refinement_plan_tiles_the_stream_at_each_halved_length() {
        // 41 tokens: 40 predictions. lmax 16 -> lengths 8, 4 (min 4).
        let plan = refine_plan(41, 16, 4);
        let eights: Vec<usize> = plan.iter().filter(|p| p.0 == 8).map(|p| p.1).collect();
        let fours: Vec<usize> = plan.iter().filter(|p| p.0 == 4).map(|p| p.1).collect();
        assert_eq!(eights, vec![0, 8, 16, 24, 32]);
        assert_eq!(fours, (0..10).map(|w| w * 4).collect::<Vec<_>>());
        assert_eq!(plan.len(), 15);
        assert!(plan.windows(2).all(|w| w[0].0 >= w[1].0), "longest first");
        // Nothing below lmax/2 >= min_len: nothing to refine.
        assert!(refine_plan(41, 16, 9).is_empty());
        // Lengths that are not powers of two halve with integer division.
        let lens: Vec<usize> = refine_plan(1000, 24, 3).iter().map(|p| p.0).collect();
        assert_eq!(lens.first(), Some(&12));
        assert_eq!(lens.last(), Some(&3));
    }
}
