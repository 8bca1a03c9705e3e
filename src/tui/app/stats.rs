//! The statistics requests of the attention panel's statistics views.

use super::{App, Effect};
use crate::tui::messages::Job;
use crate::tui::views::series_lengths;

impl App {
    /// Requests the statistics a statistics view needs and the cache lacks: the cursor's length
    /// first, then the lengths of the statistic-vs-length plot.
    pub fn stats_jobs(&mut self) -> Vec<Effect> {
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
}
