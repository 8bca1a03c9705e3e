//! Variant curves, a length at a time: a long-context recipe on the main model (perplexity and
//! KL divergence), and the KL divergence of the edited slopes or of a compare model, each against
//! the original (the main model with its own slopes). See [`VariantJob`] for the windows used.

use super::super::messages::{KL_TOKENS, VariantJob, VariantTarget, variant_starts};
use super::{Job, Next, Outcome, Worker, WorkerMsg};
use crate::eval::kl::{KlAccumulator, kl_windows};
use crate::eval::recipe::Modification;
use crate::eval::{Control, Stats, window_losses_with};
use crate::model::Position;
use crate::model::transformer::{ForwardOptions, is_interrupted, slopes_tensor};

impl Worker {
    /// Runs a [`VariantJob`], giving way between two lengths (and inside one, which then runs
    /// again) to any more urgent job.
    pub(super) fn variant(&mut self, mut job: VariantJob) -> Outcome {
        let total = job.lengths.len();
        while job.done < total {
            let me = Job::Variant(Box::new(job.clone()));
            match self.next(&me) {
                Next::Go => {}
                Next::Drop => return Outcome::Done,
                Next::Yield => return Outcome::Yield(me),
                Next::Disconnected => return Outcome::Disconnected,
            }
            let len = job.lengths[job.done];
            match self.variant_length(&job, len) {
                Ok(Some(mut msg)) => {
                    if let WorkerMsg::Variant { progress, .. } = &mut msg {
                        *progress = (job.done + 1, total);
                    }
                    if !self.send(msg) {
                        return Outcome::Disconnected;
                    }
                }
                Ok(None) => {}
                Err(e) if is_interrupted(&e) => return Outcome::Yield(me),
                Err(e) => {
                    let what = match &job.target {
                        VariantTarget::Recipe { recipe, .. } => format!("recipe {recipe}"),
                        _ => "KL divergence".to_string(),
                    };
                    return self.error(job.generation, &what, e);
                }
            }
            job.done += 1;
        }
        Outcome::Done
    }

    /// Scores one length; `None` where a recipe changes nothing (the app shows the main curve's
    /// point there) or the text has no window of `len`.
    fn variant_length(
        &self,
        job: &VariantJob,
        len: usize,
    ) -> candle_core::Result<Option<WorkerMsg>> {
        let main = &self.slots[0];
        let model = &main.loaded.model;
        let cfg = model.config();
        let alibi = cfg.position == Position::Alibi;
        let own: Vec<f64> = if alibi {
            model
                .slopes()
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?
        } else {
            Vec::new()
        };
        let current = job.slopes.clone().unwrap_or_else(|| own.clone());
        let slopes_opts = |s: &[f64]| -> candle_core::Result<ForwardOptions> {
            Ok(ForwardOptions {
                slopes: alibi
                    .then(|| slopes_tensor(s, model.device()))
                    .transpose()?,
                ..Default::default()
            })
        };
        let (q_slot, q_opts, ppl) = match &job.target {
            VariantTarget::Main => (0, slopes_opts(&current)?, false),
            VariantTarget::Compare(c) => (*c, ForwardOptions::default(), false),
            VariantTarget::Recipe { recipe, .. } => {
                if recipe.is_identity_at(&current, len, cfg.train_len) {
                    return Ok(None);
                }
                let m = Modification {
                    slopes: alibi.then(|| current.clone()),
                    recipe: Some(*recipe),
                };
                (0, m.options_at(model, len)?, true)
            }
        };
        let Some(q) = self.slots.get(q_slot) else {
            return Ok(None);
        };
        let stream = &main.stream;
        let starts = variant_starts(stream.ids.len(), len, job.lmax, job.min_len);
        if starts.is_empty() {
            return Ok(None);
        }
        let ctl = Control {
            interrupt: Some(self.interrupt()),
            ..Default::default()
        };
        let point = if ppl {
            let mut st = Stats::default();
            window_losses_with(model, stream, &starts, len, &q_opts, &ctl, |start, row| {
                for (p, &x) in row.iter().enumerate() {
                    st.add(x, stream.bytes_of(start + p + 1));
                }
            })?;
            Some(st.point(len))
        } else {
            None
        };
        let kl_starts = &starts[..(KL_TOKENS / len.max(1)).clamp(1, starts.len())];
        let mut acc = KlAccumulator::default();
        kl_windows(
            (model, &ForwardOptions::default()),
            (&q.loaded.model, &q_opts),
            stream,
            kl_starts,
            len,
            &ctl,
            &mut acc,
        )?;
        Ok(Some(WorkerMsg::Variant {
            generation: job.generation,
            target: job.target.clone(),
            len,
            point,
            kl: acc.stats(),
            progress: (0, 0),
        }))
    }
}
