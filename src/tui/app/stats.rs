//! What the attention panel's computed views ask the worker for: attention statistics (distance,
//! head grid) and the per-head slope sensitivity.

use super::{App, Effect};
use crate::tui::messages::{Job, SensitivityJob};
use crate::tui::views::series_lengths;
use crate::tui::views::{AttnView, SensitivityState};
use crate::tui::worker::SENSITIVITY_TOKENS;

impl App {
    /// Requests the statistics a statistics view needs and the cache lacks: the cursor's length
    /// first, then the lengths of the statistic-vs-length plot.
    pub fn stats_jobs(&mut self) -> Vec<Effect> {
        if self.view == AttnView::Sensitivity {
            return self.sensitivity_job().into_iter().collect();
        }
        if !self.view.needs_stats() {
            return Vec::new();
        }
        if self.stats.generation != self.sweep_gen {
            self.stats.reset(self.sweep_gen);
        }
        let cursor = self.length();
        let mut lengths = vec![cursor];
        lengths.extend(series_lengths(
            self.grid.first().copied().unwrap_or(cursor),
            self.lmax,
            self.info.train_len,
        ));
        let mut fx = Vec::new();
        for len in lengths {
            if self.stats.has(len) {
                continue;
            }
            self.stats.pending.push(len);
            fx.push(Effect::Job(Job::Stats {
                generation: self.sweep_gen,
                len,
                slopes: self.alibi_slopes(),
                cursor: len == cursor,
            }));
        }
        fx
    }

    /// The lengths of the sensitivity view: the training length and the cursor's, each at most
    /// [`SENSITIVITY_TOKENS`] (the tokens every run scores).
    pub fn sensitivity_lengths(&self) -> Vec<usize> {
        let mut v: Vec<usize> = [self.info.train_len, self.length()]
            .iter()
            .map(|&l| l.min(SENSITIVITY_TOKENS).min(self.lmax))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// A new sensitivity request when the slopes or the lengths changed (it supersedes the old).
    fn sensitivity_job(&mut self) -> Option<Effect> {
        if !self.is_alibi() {
            return None;
        }
        let lengths = self.sensitivity_lengths();
        let s = &self.sensitivity;
        if s.generation > 0 && s.slopes == self.slopes && s.lengths == lengths {
            return None;
        }
        let generation = s.generation + 1;
        self.sensitivity = SensitivityState {
            generation,
            slopes: self.slopes.clone(),
            lengths: lengths.clone(),
            ..SensitivityState::default()
        };
        Some(Effect::Job(Job::Sensitivity(Box::new(SensitivityJob {
            generation,
            slopes: self.slopes.clone(),
            lengths,
            done: 0,
            baseline: None,
        }))))
    }
}
