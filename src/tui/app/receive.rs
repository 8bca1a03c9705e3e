//! What the worker's messages do to the app: windows and pieces of windows into the curves,
//! progress, attention maps, statistics, sensitivity; stale generations dropped.

use super::super::curve::Curve;
use super::super::worker::{Task, WorkerMsg};
use super::App;

impl App {
    /// The curve a sweep message is for, unless the message is stale (curve 0 restarts with
    /// every slope change; the compared models never do).
    fn live_curve(&mut self, generation: u64, curve: usize) -> Option<&mut Curve> {
        if curve == 0 && generation != self.sweep_gen {
            return None;
        }
        self.curves.get_mut(curve)
    }

    /// Applies a worker message; stale generations are dropped.
    pub fn on_worker(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Window {
                generation,
                curve,
                start,
                nll,
                done,
                total,
                refine,
            } => {
                if let Some(c) = self.live_curve(generation, curve) {
                    c.count(refine, done, total);
                    c.acc.add(&c.stream, start, &nll);
                }
            }
            WorkerMsg::WindowPart {
                generation,
                curve,
                start,
                len,
                offset,
                nll,
                done,
                total,
                refine,
            } => {
                if let Some(c) = self.live_curve(generation, curve) {
                    c.count(refine, done, total);
                    c.acc.add_part(&c.stream, start, len, offset, &nll);
                    if offset + nll.len() >= len {
                        c.live = None;
                    }
                }
            }
            WorkerMsg::Progress {
                generation,
                progress,
            } => match progress.task {
                Task::Attention => {
                    if generation == self.attn_gen {
                        self.attention_progress = Some(progress);
                    }
                }
                Task::Sweep | Task::Refine => {
                    let curve = progress.curve;
                    if let Some(c) = self.live_curve(generation, curve) {
                        c.live = Some(progress);
                    }
                }
            },
            WorkerMsg::SweepDone {
                generation,
                curve,
                secs,
                refine,
            } => {
                if let Some(c) = self.live_curve(generation, curve) {
                    c.live = None;
                    if refine {
                        c.refined = Some(secs);
                    } else {
                        c.done = true;
                        c.secs = Some(secs);
                    }
                }
            }
            WorkerMsg::Attention { generation, map } => {
                // The heatmap divides by the map's length and indexes `len * len` values.
                if map.len == 0 || map.probs.len() != map.len * map.len {
                    if generation == self.attn_gen {
                        self.error = Some(format!(
                            "attention: got a map of length {} with {} values; dropped it",
                            map.len,
                            map.probs.len()
                        ));
                    }
                    return;
                }
                if generation == self.attn_gen {
                    self.query = self.query.min(map.len.saturating_sub(1));
                    self.attention = Some(map);
                    self.attention_progress = None;
                }
            }
            // Statistics belong to the slopes they were computed with: only the current ones count.
            WorkerMsg::Stats { generation, stats } if generation == self.sweep_gen => {
                if self.stats.generation != generation {
                    self.stats.reset(generation);
                }
                self.stats.insert(generation, stats);
            }
            WorkerMsg::Stats { .. } => {}
            WorkerMsg::Sensitivity {
                generation,
                head,
                variant,
                deltas,
                progress,
            } => {
                self.sensitivity
                    .receive(generation, head, variant, deltas, progress);
            }
            WorkerMsg::Variant {
                generation,
                target,
                len,
                point,
                kl,
                ..
            } => self.variant_arrived(generation, target, len, point, kl),
            WorkerMsg::Error { msg, .. } => self.error = Some(msg),
        }
    }
}
