//! Sweeps and refinements: the windows of a curve, scored in steps that give way to more urgent
//! jobs and resume where they stopped.
//!
//! A window no longer than the model's chunk ([`chunk_tokens`]: whole windows for our small
//! models) runs as one forward, interruptible between layers (it then runs again). A longer window
//! (a big model's sweep) runs as a [`Prefill`], one layer of one chunk of positions per step, and
//! streams each chunk's losses as a [`WorkerMsg::WindowPart`], so the curve grows from the short
//! lengths to the long ones while the window is still running, with its progress (layer, tokens,
//! tokens/s, ETA) a few times a second.

use super::super::curve::refine_plan;
use super::{Job, Next, Outcome, Paused, Progress, Task, Worker, WorkerMsg};
use crate::eval::{Control, window_losses_with};
use crate::model::memory::available_bytes;
use crate::model::prefill::{Prefill, Step, cache_bytes, chunk_tokens};
use crate::model::transformer::{ForwardOptions, is_interrupted, slopes_tensor};
use std::time::Instant;

impl Worker {
    /// Runs a [`Job::Sweep`] or [`Job::Refine`].
    pub(super) fn score(&mut self, job: Job) -> Outcome {
        let (generation, curve, slopes, lmax, refine, min_len, from) = match &job {
            Job::Sweep {
                generation,
                curve,
                slopes,
                lmax,
            } => (*generation, *curve, slopes.clone(), *lmax, false, 0, 0),
            Job::Refine {
                generation,
                curve,
                slopes,
                lmax,
                min_len,
                done,
            } => (
                *generation,
                *curve,
                slopes.clone(),
                *lmax,
                true,
                *min_len,
                *done,
            ),
            _ => return Outcome::Done,
        };
        let Some(slot) = self.slots.get(curve) else {
            return Outcome::Done;
        };
        let n = slot.stream.ids.len();
        let plan: Vec<(usize, usize)> = if refine {
            refine_plan(n, lmax, min_len)
        } else {
            (0..slot.stream.windows(lmax))
                .map(|w| (lmax, w * lmax))
                .collect()
        };
        let total = plan.len();
        let model = &slot.loaded.model;
        let what = if refine { "refine" } else { "sweep" };
        let opts = match slopes
            .as_ref()
            .map(|s| slopes_tensor(s, model.device()))
            .transpose()
        {
            Ok(slopes) => ForwardOptions {
                slopes,
                ..Default::default()
            },
            Err(e) => return self.error(generation, what, e),
        };
        let chunk = self
            .options
            .chunk_tokens
            .unwrap_or_else(|| chunk_tokens(model.config()))
            .max(1);
        let resumed = self
            .paused
            .iter()
            .position(|p| p.refine == refine && p.curve == curve)
            .map(|i| self.paused.swap_remove(i));
        let mut st = match resumed {
            Some(p) if p.generation == generation => p,
            stale => {
                if let Some(p) = stale {
                    self.recycle(p);
                }
                Paused {
                    refine,
                    curve,
                    generation,
                    done: from.min(total),
                    secs: 0.0,
                    window: None,
                }
            }
        };
        while st.done < total {
            match self.next(&job) {
                Next::Go => {}
                Next::Drop => {
                    self.recycle(st);
                    return Outcome::Done;
                }
                Next::Yield => {
                    self.paused.push(st);
                    return Outcome::Yield(job);
                }
                Next::Disconnected => return Outcome::Disconnected,
            }
            let t0 = Instant::now();
            let (len, _) = plan[st.done];
            let r = if len > chunk {
                self.long_step(&mut st, &plan, &opts, chunk, total)
            } else {
                self.short_step(&mut st, &plan, &opts, lmax.min(chunk), total)
            };
            st.secs += t0.elapsed().as_secs_f64();
            match r {
                Ok(true) => {}
                Ok(false) => return Outcome::Disconnected,
                Err(e) if is_interrupted(&e) => {}
                Err(e) => return self.error(generation, what, e),
            }
        }
        if self.send(WorkerMsg::SweepDone {
            generation,
            curve,
            secs: st.secs,
            refine,
        }) {
            Outcome::Done
        } else {
            Outcome::Disconnected
        }
    }

    /// Scores the next windows of one length together, about `budget` tokens (a sweep: one
    /// window, as it always did). `Ok(false)`: nobody listens.
    fn short_step(
        &mut self,
        st: &mut Paused,
        plan: &[(usize, usize)],
        opts: &ForwardOptions,
        budget: usize,
        total: usize,
    ) -> candle_core::Result<bool> {
        let (len, _) = plan[st.done];
        let step = if st.refine { (budget / len).max(1) } else { 1 };
        let starts: Vec<usize> = plan[st.done..]
            .iter()
            .take(step)
            .take_while(|(l, _)| *l == len)
            .map(|&(_, s)| s)
            .collect();
        let slot = &self.slots[st.curve];
        let mut rows = Vec::with_capacity(starts.len());
        let ctl = Control {
            interrupt: Some(self.interrupt()),
            ..Default::default()
        };
        window_losses_with(
            &slot.loaded.model,
            &slot.stream,
            &starts,
            len,
            opts,
            &ctl,
            |start, row| rows.push((start, row)),
        )?;
        for (start, nll) in rows {
            st.done += 1;
            if !self.send(WorkerMsg::Window {
                generation: st.generation,
                curve: st.curve,
                start,
                nll,
                done: st.done,
                total,
                refine: st.refine,
            }) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One step of the long window at `plan[st.done]`: a layer of a chunk, or a chunk's loss
    /// (sent as a [`WorkerMsg::WindowPart`]). `Ok(false)`: nobody listens.
    fn long_step(
        &mut self,
        st: &mut Paused,
        plan: &[(usize, usize)],
        opts: &ForwardOptions,
        chunk: usize,
        total: usize,
    ) -> candle_core::Result<bool> {
        let (len, start) = plan[st.done];
        let slot = &self.slots[st.curve];
        let model = &slot.loaded.model;
        let (mut prefill, mut secs) = match st.window.take() {
            Some((s, p, secs)) if s == start && p.len() == len => (p, secs),
            other => {
                if let Some((_, old, _)) = other {
                    self.spare.extend(old.into_caches());
                }
                // Chunks keep every layer's keys and values (reusing a finished window's where
                // they fit); where new ones do not fit in half the free memory, the window runs
                // whole (still a layer per step, but its losses come at the end).
                let (cfg, dtype, dev) = (model.config(), model.dtype(), model.device());
                let reusable = self
                    .spare
                    .iter()
                    .filter(|c| c.fits(cfg, 1, len, dtype, dev))
                    .count()
                    >= cfg.n_layers;
                let cache = cache_bytes(cfg, len, dtype);
                let fits = reusable || available_bytes().is_none_or(|free| cache < free / 2);
                let chunk = if fits { chunk } else { len };
                let ids = &slot.stream.ids;
                let p = Prefill::reusing(
                    model,
                    &ids[start..start + len],
                    &ids[start + 1..=start + len],
                    chunk,
                    opts,
                    &mut self.spare,
                )?;
                (p, 0.0)
            }
        };
        let t0 = Instant::now();
        let step = prefill.step(model)?;
        secs += t0.elapsed().as_secs_f64();
        let n_layers = model.config().n_layers;
        let f = prefill.fraction_done();
        let progress = Progress {
            task: if st.refine { Task::Refine } else { Task::Sweep },
            curve: st.curve,
            layer: (prefill.layer().min(n_layers), n_layers),
            tokens: (prefill.positions_done(), len),
            tokens_per_s: f * len as f64 / secs.max(1e-9),
            eta_s: if f > 0.0 { secs * (1.0 - f) / f } else { 0.0 },
        };
        let complete = prefill.is_done();
        if let Step::Scored { offset, nll } = step {
            if complete {
                st.done += 1;
            }
            if !self.send(WorkerMsg::WindowPart {
                generation: st.generation,
                curve: st.curve,
                start,
                len,
                offset,
                nll,
                done: st.done,
                total,
                refine: st.refine,
            }) {
                return Ok(false);
            }
        }
        if complete {
            self.spare.extend(prefill.into_caches());
        } else {
            st.window = Some((start, prefill, secs));
            // Progress counts from the window's first step, so a long window reports at once.
            let since = Instant::now()
                .checked_sub(std::time::Duration::from_secs_f64(secs))
                .unwrap_or_else(Instant::now);
            if !self.progress(st.generation, since, progress) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
