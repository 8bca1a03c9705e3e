//! The perplexity curves of the chart and their x axis: the length grid (log-spaced, with the
//! training length) and its bounds.

use super::keymap::STEPS_PER_OCTAVE;
use super::messages::Progress;
use crate::alibi::recipe::Recipe;
use crate::eval::{KlStats, Point, SweepAccumulator};
use crate::text::Stream;
use std::collections::BTreeMap;

/// The smallest length on the chart.
pub const MIN_LENGTH: usize = 8;

/// One perplexity curve being filled by a sweep.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Accumulated windows.
    pub acc: SweepAccumulator,
    /// Windows the sweep will produce.
    pub total: usize,
    /// Whether the sweep finished.
    pub done: bool,
    /// Seconds the sweep took.
    pub secs: Option<f64>,
    /// Refinement windows scored and planned (shorter windows after the sweep).
    pub refine: (usize, usize),
    /// Seconds the refinement took, once it finished.
    pub refined: Option<f64>,
    /// The stream the windows index into (for byte counts).
    pub stream: Stream,
    /// Where the long window under way stands (big models), until the sweep or refinement ends.
    pub live: Option<Progress>,
    /// KL divergence from the original by length (the main curve with edited slopes; a compare
    /// model reading the same tokens).
    pub kl: BTreeMap<usize, KlStats>,
}

/// A long-context recipe applied to the main model with the current slopes, scored length by
/// length (see `app/variants.rs`).
#[derive(Debug, Clone)]
pub struct RecipeCurve {
    /// The recipe.
    pub recipe: Recipe,
    /// Its points at the lengths where it changes something.
    pub points: BTreeMap<usize, Point>,
    /// Its KL divergence from the original there.
    pub kl: BTreeMap<usize, KlStats>,
    /// Lengths to score (where it changes something).
    pub needed: usize,
}

impl RecipeCurve {
    /// An empty curve.
    pub fn new(recipe: Recipe) -> Self {
        Self {
            recipe,
            points: BTreeMap::new(),
            kl: BTreeMap::new(),
            needed: 0,
        }
    }

    /// Legend label: the recipe, with its progress until every length is in.
    pub fn label(&self) -> String {
        if self.kl.len() < self.needed {
            format!("{} {}/{}", self.recipe, self.kl.len(), self.needed)
        } else {
            self.recipe.to_string()
        }
    }
}

impl Curve {
    /// An empty curve for windows of `lmax` over `stream`.
    pub fn new(label: String, lmax: usize, stream: Stream) -> Self {
        Self {
            label,
            acc: SweepAccumulator::new(lmax),
            total: stream.windows(lmax),
            done: false,
            secs: None,
            refine: (0, 0),
            refined: None,
            stream,
            live: None,
            kl: BTreeMap::new(),
        }
    }

    /// Forgets every window (new slopes).
    pub fn reset(&mut self) {
        self.acc = SweepAccumulator::new(self.acc.lmax());
        self.done = false;
        self.secs = None;
        self.refine = (0, 0);
        self.refined = None;
        self.live = None;
        self.kl.clear();
    }

    /// Takes a window message's counts: windows done and planned by the refinement, or the
    /// sweep's total.
    pub fn count(&mut self, refine: bool, done: usize, total: usize) {
        if refine {
            self.refine = (done, total);
        } else {
            self.total = total;
        }
    }

    /// Points at the given lengths (None before the first window or piece of one arrives; a
    /// length no window covers yet has `tokens == 0`).
    pub fn points(&self, lengths: &[usize]) -> Option<Vec<Point>> {
        self.acc.has_data().then(|| self.acc.points(lengths))
    }

    /// The point at one length, if a window covers it.
    pub fn point_at(&self, len: usize) -> Option<Point> {
        self.points(&[len]).map(|p| p[0]).filter(|p| p.tokens > 0)
    }

    /// Whether the point at `len` is final: the windows that serve it once everything is done
    /// (the sweep's for lengths above `lmax/2`, else the shortest refinement level at least
    /// `len` long, with `min_len` the refinement's shortest) are all in.
    pub fn is_final(&self, len: usize, min_len: usize) -> bool {
        let lmax = self.acc.lmax();
        if !self.done {
            return false;
        }
        if self.refined.is_some() {
            return true;
        }
        // The refinement levels of `refine_plan`, longest first: lmax/2, lmax/4, ... >= min_len.
        // Windows of every level down to (and including) the one that serves `len`, the shortest
        // at least `len` long, must be in.
        let targets = self.stream.ids.len().saturating_sub(1);
        let mut needed = 0;
        let mut level = lmax / 2;
        while level >= min_len.max(1) && level >= len {
            needed += targets / level;
            level /= 2;
        }
        needed == 0 || self.refine.0 >= needed
    }

    /// The smallest length from which every longer point on `grid` is final (None: none is).
    pub fn final_from(&self, grid: &[usize], min_len: usize) -> Option<usize> {
        let mut from = None;
        for &l in grid.iter().rev() {
            if !self.is_final(l, min_len) {
                break;
            }
            from = Some(l);
        }
        from
    }
}

/// The lengths on the x axis: `STEPS_PER_OCTAVE` per octave from [`MIN_LENGTH`] to `lmax`,
/// always including the training length and `lmax`.
pub fn length_grid(lmax: usize, train_len: usize) -> Vec<usize> {
    let lmin = MIN_LENGTH.min(lmax).max(1);
    let mut v = Vec::new();
    let mut k = 0;
    loop {
        let l =
            (lmin as f64 * 2f64.powf(f64::from(k) / f64::from(STEPS_PER_OCTAVE))).round() as usize;
        if l > lmax {
            break;
        }
        v.push(l);
        k += 1;
    }
    v.push(lmax);
    if train_len <= lmax {
        v.push(train_len);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Variant curves are scored at about this many lengths per octave (each length is its own set
/// of forwards, so far fewer than the chart's grid).
pub const VARIANT_STEPS_PER_OCTAVE: f64 = 2.0;

/// The lengths variant curves are scored at: grid lengths near `MIN_LENGTH * 2^(k/2)`, plus the
/// training length and the longest length, ascending.
pub fn variant_lengths(grid: &[usize], train_len: usize) -> Vec<usize> {
    let Some(&lmax) = grid.last() else {
        return Vec::new();
    };
    let nearest = |t: f64| {
        grid.iter()
            .copied()
            .min_by(|a, b| {
                let d = |x: usize| ((x as f64).ln() - t.ln()).abs();
                d(*a).total_cmp(&d(*b))
            })
            .unwrap_or(lmax)
    };
    let mut v = Vec::new();
    let mut k = 0.0;
    loop {
        let t = MIN_LENGTH as f64 * 2f64.powf(k / VARIANT_STEPS_PER_OCTAVE);
        if t > lmax as f64 * 1.001 {
            break;
        }
        v.push(nearest(t));
        k += 1.0;
    }
    v.push(lmax);
    if grid.contains(&train_len) {
        v.push(train_len);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The KL divergence of a model from itself.
pub const NO_DIVERGENCE: KlStats = KlStats {
    mean: 0.0,
    stderr: 0.0,
    p99: 0.0,
    top1_agreement: 1.0,
    delta_p: 0.0,
    tokens: 0,
};

/// The chart's x range in log2(length): whole octaves around the grid.
pub fn chart_x_bounds(grid: &[usize]) -> (f64, f64) {
    let lo = (grid.first().copied().unwrap_or(1) as f64).log2().floor();
    let hi = (grid.last().copied().unwrap_or(2) as f64)
        .log2()
        .ceil()
        .max(lo + 1.0);
    (lo, hi)
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
    fn variant_lengths_are_grid_lengths_two_per_octave() {
        let grid = length_grid(2048, 128);
        let v = variant_lengths(&grid, 128);
        assert!(v.iter().all(|l| grid.contains(l)));
        assert!(v.contains(&128) && v.contains(&2048) && v[0] == 8);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        // 8 octaves at two a octave, plus the ends.
        assert!((16..=18).contains(&v.len()), "{v:?}");
        // A training length off the power-of-two ladder is still scored.
        let grid = length_grid(1000, 100);
        assert!(variant_lengths(&grid, 100).contains(&100));
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
