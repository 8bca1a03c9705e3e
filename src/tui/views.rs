//! Display choices: the heatmap's downsampling rule, the chart's metric, and what the attention
//! panel shows, and the attention statistics it shows them from: the view
//! switcher (heatmap, attention by distance, head statistics, loss by position, slope sensitivity,
//! the position-encoding family), the statistic the
//! head grid colours by, and the per-length cache of statistics for the current slopes.

use super::worker::StatsResult;
use crate::alibi::family::{Family, Scheme};
use crate::alibi::prior::{PriorMeans, prior_means, prior_profile};
use crate::eval::ablate::Delta;
use crate::model::attention_stats::HeadMeans;
use std::collections::BTreeMap;

/// Heatmap downsampling: each cell shows the max or the mean of its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// Maximum per block (keeps sharp peaks visible).
    #[default]
    Max,
    /// Mean per block.
    Mean,
}

/// What the chart's y axis (and the status bar's number) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// Token perplexity: comparable only between models with the same tokenizer.
    #[default]
    TokenPpl,
    /// Bits per UTF-8 byte of the text: comparable across tokenizers.
    BitsPerByte,
    /// Mean KL divergence (nats per token) of each curve that differs from the original (the
    /// main model with its own slopes): edited slopes, recipes, compare models reading the same
    /// tokens.
    Kl,
}

impl Metric {
    /// The next metric in the order `y` cycles them.
    #[must_use]
    pub fn toggled(self) -> Metric {
        match self {
            Metric::TokenPpl => Metric::BitsPerByte,
            Metric::BitsPerByte => Metric::Kl,
            Metric::Kl => Metric::TokenPpl,
        }
    }
}

/// The views of the attention panel, in the order `v` cycles them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttnView {
    /// One head's attention map over the tokens.
    #[default]
    Heatmap,
    /// Mean attention by distance for the selected head, over its ALiBi prior.
    Distance,
    /// A layers x heads grid of one statistic at the cursor's length, and the selected head's
    /// statistic vs input length.
    Heads,
    /// Mean loss at each position of the window, for every curve.
    PositionLoss,
    /// Per-head slope sensitivity: the change in perplexity when one head's slope is set to 0,
    /// halved or doubled, at the training length and the cursor's.
    Sensitivity,
    /// ALiBi beside KERPLE, T5's buckets, NoPE and rotary's decay: each scheme's bias matrix and
    /// prior by distance (no model needed; parameters edited in the view).
    Family,
}

impl AttnView {
    /// Every view, in cycling order.
    pub const ALL: [AttnView; 6] = [
        AttnView::Heatmap,
        AttnView::Distance,
        AttnView::Heads,
        AttnView::PositionLoss,
        AttnView::Sensitivity,
        AttnView::Family,
    ];

    /// The view's short name (panel title, export file names).
    pub fn name(self) -> &'static str {
        match self {
            AttnView::Heatmap => "heatmap",
            AttnView::Distance => "distance",
            AttnView::Heads => "heads",
            AttnView::PositionLoss => "loss-by-position",
            AttnView::Sensitivity => "sensitivity",
            AttnView::Family => "family",
        }
    }

    /// The next view.
    pub fn next(self) -> AttnView {
        let i = Self::ALL.iter().position(|&v| v == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Whether the view needs attention statistics.
    pub fn needs_stats(self) -> bool {
        matches!(self, AttnView::Distance | AttnView::Heads)
    }
}

/// The statistic the head grid and the length plot show, in the order `s` cycles them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stat {
    /// Mean attention distance, tokens.
    #[default]
    MeanDistance,
    /// Distance holding 90 % of the attention, tokens.
    Mass90,
    /// Entropy over its maximum `ln(i + 1)` (0 = one key, 1 = uniform).
    EntropyNorm,
    /// Attention on the first four tokens of the window (queries `i >= 16`).
    SinkMass,
}

impl Stat {
    /// Every statistic, in cycling order.
    pub const ALL: [Stat; 4] = [
        Stat::MeanDistance,
        Stat::Mass90,
        Stat::EntropyNorm,
        Stat::SinkMass,
    ];

    /// Name with its unit, for titles and legends.
    pub fn label(self) -> &'static str {
        match self {
            Stat::MeanDistance => "mean distance (tokens)",
            Stat::Mass90 => "90% mass distance (tokens)",
            Stat::EntropyNorm => "entropy / ln(i+1)",
            Stat::SinkMass => "sink mass (first 4 tokens)",
        }
    }

    /// Short name for narrow places.
    pub fn short(self) -> &'static str {
        match self {
            Stat::MeanDistance => "mean dist",
            Stat::Mass90 => "mass90",
            Stat::EntropyNorm => "entropy",
            Stat::SinkMass => "sink",
        }
    }

    /// The next statistic.
    pub fn next(self) -> Stat {
        let i = Self::ALL.iter().position(|&v| v == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Whether the statistic is a distance (plotted on a log scale).
    pub fn is_distance(self) -> bool {
        matches!(self, Stat::MeanDistance | Stat::Mass90)
    }

    /// The statistic of a head's means.
    pub fn of(self, m: &HeadMeans) -> Option<f64> {
        match self {
            Stat::MeanDistance => Some(m.mean_distance),
            Stat::Mass90 => Some(m.mass90_distance),
            Stat::EntropyNorm => m.entropy_norm,
            Stat::SinkMass => m.sink_mass,
        }
    }

    /// The same statistic of the ALiBi prior alone.
    pub fn of_prior(self, p: &PriorMeans) -> Option<f64> {
        match self {
            Stat::MeanDistance => Some(p.mean_distance),
            Stat::Mass90 => Some(p.mass90_distance),
            Stat::EntropyNorm => p.entropy_norm,
            Stat::SinkMass => p.sink_mass,
        }
    }
}

/// The sensitivity view's results for one request (slopes, lengths).
#[derive(Debug, Clone, Default)]
pub struct SensitivityState {
    /// Generation of the request.
    pub generation: u64,
    /// The slopes it varies.
    pub slopes: Vec<f64>,
    /// Its lengths.
    pub lengths: Vec<usize>,
    /// Perplexity of the current slopes at each length (deltas of 0), once computed.
    pub baseline: Option<Vec<Delta>>,
    /// `rows[head][variant]`: the change at each length, once computed.
    pub rows: Vec<[Option<Vec<Delta>>; 3]>,
    /// Runs done and planned.
    pub progress: (usize, usize),
}

impl SensitivityState {
    /// Stores a message of generation `generation` (others are stale and dropped).
    pub fn receive(
        &mut self,
        generation: u64,
        head: Option<usize>,
        variant: usize,
        deltas: Vec<Delta>,
        progress: (usize, usize),
    ) -> bool {
        if generation != self.generation {
            return false;
        }
        self.progress = progress;
        match head {
            None => self.baseline = Some(deltas),
            Some(h) => {
                if self.rows.len() <= h {
                    self.rows.resize(h + 1, [None, None, None]);
                }
                if let Some(cell) = self.rows[h].get_mut(variant) {
                    *cell = Some(deltas);
                }
            }
        }
        true
    }
}

/// The family view's state: every scheme's parameters and the selected scheme.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FamilyState {
    /// Every scheme's parameters.
    pub params: Family,
    /// Index of the selected scheme in [`Scheme::ALL`].
    pub selected: usize,
}

impl FamilyState {
    /// The selected scheme.
    pub fn scheme(&self) -> Scheme {
        Scheme::ALL[self.selected % Scheme::ALL.len()]
    }
}

/// Statistics received for the current slopes, by length.
#[derive(Debug, Clone, Default)]
pub struct StatsCache {
    /// The slope generation they belong to.
    pub generation: u64,
    /// Results by length.
    pub by_len: BTreeMap<usize, StatsResult>,
    /// Lengths requested and not yet received.
    pub pending: Vec<usize>,
}

impl StatsCache {
    /// Forgets everything (new slopes) and starts generation `generation`.
    pub fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.by_len.clear();
        self.pending.clear();
    }

    /// Stores a result of the current generation; stale ones are dropped (returns whether kept).
    pub fn insert(&mut self, generation: u64, stats: StatsResult) -> bool {
        if generation != self.generation {
            return false;
        }
        self.pending.retain(|&l| l != stats.len);
        self.by_len.insert(stats.len, stats);
        true
    }

    /// Whether `len` is computed or on its way.
    pub fn has(&self, len: usize) -> bool {
        self.by_len.contains_key(&len) || self.pending.contains(&len)
    }

    /// The result at `len`, if computed.
    pub fn at(&self, len: usize) -> Option<&StatsResult> {
        self.by_len.get(&len)
    }

    /// `(length, value)` of one head's statistic at every computed length.
    pub fn series(&self, layer: usize, head: usize, stat: Stat) -> Vec<(usize, f64)> {
        self.by_len
            .iter()
            .filter_map(|(&len, r)| Some((len, stat.of(r.head(layer, head)?)?)))
            .collect()
    }
}

/// The lengths whose statistics draw a head's statistic vs input length: every octave from the
/// chart's shortest length to `lmax`, plus the training length and `lmax`.
pub fn series_lengths(min_len: usize, lmax: usize, train_len: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut l = min_len.max(1);
    while l < lmax {
        v.push(l);
        l *= 2;
    }
    v.push(lmax);
    if train_len <= lmax {
        v.push(train_len);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The prior's statistic at `len` for a head with slope `slope` (ALiBi heads only).
pub fn prior_stat(stat: Stat, slope: f64, len: usize) -> Option<f64> {
    stat.of_prior(&prior_means(slope, len))
}

/// The prior's mean attention per distance bin at `len` (the curve under the distance view).
pub fn prior_distance_profile(slope: f64, len: usize) -> Vec<f64> {
    prior_profile(slope, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(len: usize, md: f64) -> StatsResult {
        let m = HeadMeans {
            queries: len as u64,
            mean_distance: md,
            entropy: 1.0,
            entropy_norm: Some(0.5),
            mass90_distance: 2.0 * md,
            sink_mass: None,
            profile: vec![],
        };
        StatsResult {
            len,
            windows: 1,
            heads: vec![m.clone(), m],
            n_heads: 2,
        }
    }

    #[test]
    fn views_and_statistics_cycle() {
        let mut v = AttnView::Heatmap;
        for _ in 0..AttnView::ALL.len() {
            v = v.next();
        }
        assert_eq!(v, AttnView::Heatmap);
        assert_eq!(AttnView::Sensitivity.next(), AttnView::Family);
        assert_eq!(Stat::SinkMass.next(), Stat::MeanDistance);
        assert!(AttnView::Heads.needs_stats() && !AttnView::Heatmap.needs_stats());
    }

    #[test]
    fn the_cache_drops_stale_generations_and_builds_series() {
        let mut c = StatsCache::default();
        c.reset(3);
        c.pending.push(16);
        assert!(c.has(16));
        assert!(!c.insert(2, result(16, 5.0)), "stale generation kept");
        assert!(c.at(16).is_none() && c.has(16));
        assert!(c.insert(3, result(16, 5.0)));
        assert!(c.insert(3, result(8, 2.0)));
        assert!(c.pending.is_empty());
        assert_eq!(c.series(0, 1, Stat::Mass90), vec![(8, 4.0), (16, 10.0)]);
        assert!(c.series(0, 1, Stat::SinkMass).is_empty());
        c.reset(4);
        assert!(c.at(16).is_none());
    }

    #[test]
    fn series_lengths_are_octaves_with_train_len() {
        assert_eq!(series_lengths(8, 100, 48), vec![8, 16, 32, 48, 64, 100]);
        assert_eq!(series_lengths(8, 8, 128), vec![8]);
    }
}
