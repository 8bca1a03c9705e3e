//! The worker thread: owns the models, runs sweeps and attention captures, streams results.
//!
//! Jobs carry a generation number. A newer job of the same kind supersedes queued ones (gitui's
//! `AsyncSingleJob`); a running sweep checks for newer jobs between windows and gives way, and an
//! attention request is served between two sweep windows so the heatmap never waits for a sweep.

use super::event::Event;
use crate::eval::{Control, Stream, window_losses};
use crate::model::LoadedModel;
use crate::model::transformer::{ForwardOptions, slopes_tensor};
use candle_core::Tensor;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
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
    },
    /// A sweep finished.
    SweepDone {
        /// Generation.
        generation: u64,
        /// Which curve.
        curve: usize,
        /// Seconds it took.
        secs: f64,
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
pub fn spawn(slots: Vec<ModelSlot>, events: Sender<Event>) -> Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("alibi-worker".to_string())
        .spawn(move || {
            Worker {
                slots,
                rx,
                events,
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
    events: Sender<Event>,
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
        self.events.send(Event::Worker(msg)).is_ok()
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
            // Attention first: it is quick and the user is looking at it.
            let next = match self
                .pending
                .iter()
                .position(|j| matches!(j, Job::Attention { .. }))
            {
                Some(i) => self.pending.remove(i),
                None => self.pending.remove(0),
            };
            let ok = match next {
                Job::Attention { .. } => self.attention(&next),
                Job::Sweep { .. } => self.sweep(&next),
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
                msg: format!("attention: {}", crate::model::load::one_line(e)),
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
            if let Some(i) = self
                .pending
                .iter()
                .position(|j| matches!(j, Job::Attention { .. }))
            {
                let a = self.pending.remove(i);
                if !self.attention(&a) {
                    return false;
                }
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
                    msg: format!("sweep: {}", crate::model::load::one_line(e)),
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
            }) {
                return false;
            }
        }
        self.send(WorkerMsg::SweepDone {
            generation: *generation,
            curve: *curve,
            secs: started.elapsed().as_secs_f64(),
        })
    }
}

/// Whether `new` makes `old` pointless: a newer sweep of the same curve, or any newer attention.
pub fn supersedes(new: &Job, old: &Job) -> bool {
    match (new, old) {
        (
            Job::Sweep {
                generation: g1,
                curve: c1,
                ..
            },
            Job::Sweep {
                generation: g0,
                curve: c0,
                ..
            },
        ) => c1 == c0 && g1 > g0,
        (Job::Attention { generation: g1, .. }, Job::Attention { generation: g0, .. }) => g1 > g0,
        _ => false,
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
    }
}
