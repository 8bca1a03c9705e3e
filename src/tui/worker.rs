//! The worker thread: owns the models, runs sweeps and attention captures, streams results.
//!
//! Jobs carry a generation number. A newer job of the same kind supersedes queued ones (gitui's
//! `AsyncSingleJob`); a running sweep checks for newer jobs between windows and gives way, and an
//! attention request is served between two sweep windows so the heatmap never waits for a sweep.

use crate::eval::{Control, window_losses};
use crate::model::LoadedModel;
use crate::model::transformer::{ForwardOptions, slopes_tensor};
use crate::text::Stream;
use candle_core::Tensor;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

/// Where the worker delivers its messages (the main loop's event channel implements it in
/// `event.rs`, so the worker does not depend on the event type).
pub trait Outbox: Send + 'static {
    /// Delivers `msg`; `false` when nobody listens any more.
    fn deliver(&self, msg: WorkerMsg) -> bool;
}
use std::time::Instant;

/// A model and the text tokenized with its tokenizer.
pub struct ModelSlot {
    /// The model.
    pub loaded: LoadedModel,
    /// The text as its tokens.
    pub stream: Stream,
}

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
    /// A failed job.
    Error {
        /// Generation.
        generation: u64,
        /// One-line message.
        msg: String,
    },
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
            // Attention first (quick, and the user is looking at it), then sweeps, then refinements.
            let rank = |j: &Job| match j {
                Job::Attention { .. } => 0,
                Job::Sweep { .. } => 1,
                Job::Refine { .. } => 2,
            };
            let i = (0..self.pending.len())
                .min_by_key(|&i| rank(&self.pending[i]))
                .unwrap_or(0);
            let next = self.pending.remove(i);
            let ok = match next {
                Job::Attention { .. } => self.attention(&next),
                Job::Sweep { .. } => self.sweep(&next),
                Job::Refine { .. } => self.refine(next),
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
        let result = (|| -> candle_core::Result<AttentionMap> {
            let model = &slot.loaded.model;
            let n = (*len).min(slot.stream.ids.len());
            let x = Tensor::from_vec(slot.stream.ids[..n].to_vec(), (1, n), model.device())?;
            let opts = ForwardOptions {
                slopes: slopes
                    .as_ref()
                    .map(|s| slopes_tensor(s, model.device()))
                    .transpose()?,
                capture: vec![(*layer, *head)],
                ..Default::default()
            };
            let out = model.forward_hidden(&x, &opts)?;
            let probs = out
                .captured
                .first()
                .ok_or_else(|| candle_core::Error::Msg("no attention captured".into()))?
                .probs
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ok(AttentionMap {
                len: n,
                layer: *layer,
                head: *head,
                probs,
            })
        })();
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
            if self.pending.iter().any(|j| matches!(j, Job::Sweep { .. })) {
                // A sweep is waiting: let it go first and resume afterwards.
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
        Job::Attention { .. } => None,
    };
    match (new, old) {
        (Job::Attention { generation: g1, .. }, Job::Attention { generation: g0, .. }) => g1 > g0,
        _ => match (curve_job(new), curve_job(old)) {
            (Some((g1, c1)), Some((g0, c0))) => c1 == c0 && g1 > g0,
            _ => false,
        },
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
