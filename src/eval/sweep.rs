//! The one-pass sweep's accumulator: windows of the largest length (and the TUI's shorter
//! refinement windows, and long windows arriving in pieces) turned into a point for every length.

use super::point::{Point, Stats};
use crate::text::Stream;

/// Accumulates whole windows of `lmax` tokens and derives every length `<= lmax` from them:
/// the engine behind `sweep` and the TUI's live curve.
///
/// It also takes shorter windows (the TUI's refinement passes of `lmax/2`, `lmax/4`, ...): windows
/// of each length form a level, and the point for length `len` comes from one level, the one with
/// the most windows among those at least `len` long, using the first `len` positions of each of its
/// windows. So no token is counted twice, every estimate is a set of non-overlapping `len`-token
/// windows, and a level that covers the whole text makes its length exactly `nonoverlap`.
#[derive(Debug, Clone)]
pub struct SweepAccumulator {
    lmax: usize,
    /// Levels by window length, longest first; the first is always `lmax`.
    levels: Vec<Level>,
}

/// The windows of one length.
#[derive(Debug, Clone)]
struct Level {
    len: usize,
    /// Per-position running stats.
    positions: Vec<Stats>,
    windows: usize,
    /// A window arriving in pieces ([`SweepAccumulator::add_part`]): its start, its first positions'
    /// losses and byte counts. It counts for the lengths it covers until it is complete.
    partial: Option<(usize, Vec<Scored>)>,
}

/// One position's loss and the bytes of its target.
type Scored = (f32, Option<u32>);

impl Level {
    fn new(len: usize) -> Self {
        Self {
            len,
            positions: vec![Stats::default(); len],
            windows: 0,
            partial: None,
        }
    }

    /// Windows that cover length `len`: the complete ones, and the partial one when it reaches it.
    fn windows_covering(&self, len: usize) -> usize {
        self.windows
            + usize::from(
                self.partial
                    .as_ref()
                    .is_some_and(|(_, v)| v.len() >= len.min(self.len)),
            )
    }

    /// `[k]` = the stats of the first `k` positions of every window, for `k` in `0..=len`.
    fn prefix_sums(&self) -> Vec<Stats> {
        let mut total = Stats::default();
        std::iter::once(total)
            .chain(self.positions.iter().map(|s| {
                total.merge(s);
                total
            }))
            .collect()
    }
}

impl SweepAccumulator {
    /// Empty, for windows of `lmax`.
    pub fn new(lmax: usize) -> Self {
        Self {
            lmax,
            levels: vec![Level::new(lmax)],
        }
    }

    /// Adds one window's losses (starting at stream index `start`); its length is `nll.len()`
    /// (capped at `lmax`).
    pub fn add(&mut self, stream: &Stream, start: usize, nll: &[f32]) {
        let len = nll.len().min(self.lmax);
        if len == 0 {
            return;
        }
        let i = self.level_index(len);
        let level = &mut self.levels[i];
        for (p, &x) in nll[..len].iter().enumerate() {
            level.positions[p].add(x, stream.bytes_of(start + p + 1));
        }
        level.windows += 1;
    }

    /// The level of windows of `len` tokens, made when missing (levels stay longest first).
    fn level_index(&mut self, len: usize) -> usize {
        match self.levels.iter().position(|l| l.len <= len) {
            Some(i) if self.levels[i].len == len => i,
            Some(i) => {
                self.levels.insert(i, Level::new(len));
                i
            }
            None => {
                self.levels.push(Level::new(len));
                self.levels.len() - 1
            }
        }
    }

    /// Adds a piece of a window of `len` tokens starting at stream index `start` that arrives in
    /// pieces: the losses of its positions `offset..offset + nll.len()`. Pieces come in order; a
    /// piece at offset 0 (or of another window) starts the window afresh. Until the window is
    /// complete it serves the lengths its pieces cover (exact: position `p` of a causal window
    /// does not depend on the positions after it); then it counts as one [`Self::add`]ed window.
    pub fn add_part(
        &mut self,
        stream: &Stream,
        start: usize,
        len: usize,
        offset: usize,
        nll: &[f32],
    ) {
        let len = len.min(self.lmax);
        if len == 0 || offset >= len {
            return;
        }
        let i = self.level_index(len);
        let level = &mut self.levels[i];
        let fresh = offset == 0
            || level
                .partial
                .as_ref()
                .is_none_or(|(s, v)| *s != start || v.len() != offset);
        if fresh {
            if offset != 0 {
                // A piece out of order: drop it rather than count positions twice or with gaps.
                return;
            }
            level.partial = Some((start, Vec::with_capacity(len)));
        }
        let Some((_, v)) = level.partial.as_mut() else {
            return;
        };
        let take = nll.len().min(len - offset);
        v.extend(
            nll[..take]
                .iter()
                .enumerate()
                .map(|(k, &x)| (x, stream.bytes_of(start + offset + k + 1))),
        );
        if v.len() == len {
            let Some((_, v)) = level.partial.take() else {
                return;
            };
            for (p, (x, bytes)) in v.into_iter().enumerate() {
                level.positions[p].add(x, bytes);
            }
            level.windows += 1;
        }
    }

    /// Positions of the window arriving in pieces at length `len` (0 when none).
    pub fn partial_positions(&self, len: usize) -> usize {
        self.levels
            .iter()
            .find(|l| l.len == len)
            .and_then(|l| l.partial.as_ref())
            .map_or(0, |(_, v)| v.len())
    }

    /// Whether anything arrived: a window or a piece of one.
    pub fn has_data(&self) -> bool {
        self.levels
            .iter()
            .any(|l| l.windows > 0 || l.partial.as_ref().is_some_and(|(_, v)| !v.is_empty()))
    }

    /// Windows added so far, all lengths together.
    pub fn windows(&self) -> usize {
        self.levels.iter().map(|l| l.windows).sum()
    }

    /// Windows of exactly `len` tokens added so far.
    pub fn windows_of(&self, len: usize) -> usize {
        self.levels
            .iter()
            .find(|l| l.len == len)
            .map_or(0, |l| l.windows)
    }

    /// The largest length.
    pub fn lmax(&self) -> usize {
        self.lmax
    }

    /// The level that serves length `len`: most windows among those at least `len` long (the
    /// longest on a tie).
    fn level_for(&self, len: usize) -> usize {
        let mut best = 0;
        for (i, l) in self.levels.iter().enumerate().skip(1) {
            if l.len >= len && l.windows_covering(len) > self.levels[best].windows_covering(len) {
                best = i;
            }
        }
        best
    }

    /// The point for length `len <= lmax`: the first `len` positions of every window of the
    /// level that serves it.
    pub fn point(&self, len: usize) -> Point {
        self.points(&[len])[0]
    }

    /// Points for several lengths (ascending or not).
    pub fn points(&self, lengths: &[usize]) -> Vec<Point> {
        // Prefix sums of each level that serves some length, computed once.
        let mut prefixes: Vec<Option<Vec<Stats>>> = vec![None; self.levels.len()];
        lengths
            .iter()
            .map(|&len| {
                let i = self.level_for(len);
                let level = &self.levels[i];
                let prefix = prefixes[i].get_or_insert_with(|| level.prefix_sums());
                let k = len.min(level.len);
                let mut stats = prefix[k];
                // A window arriving in pieces counts where it covers the whole length.
                if let Some((_, v)) = &level.partial
                    && v.len() >= k
                {
                    for &(x, bytes) in &v[..k] {
                        stats.add(x, bytes);
                    }
                }
                stats.point(len)
            })
            .collect()
    }

    /// Every loss scored at each window position, pooled over all levels (the `lmax` windows and
    /// every shorter pass): position `p` rests on every window longer than `p`, so short positions
    /// rest on hundreds of windows once the refinement has run.
    pub fn position_stats(&self) -> Vec<Stats> {
        let mut out = vec![Stats::default(); self.lmax];
        for level in &self.levels {
            for (o, s) in out.iter_mut().zip(&level.positions) {
                o.merge(s);
            }
        }
        out
    }

    /// Mean NLL at each position of the `lmax` windows.
    pub fn position_nll(&self) -> Vec<f64> {
        self.levels[0].positions.iter().map(Stats::mean).collect()
    }
}
