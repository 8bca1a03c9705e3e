//! The perplexity curves of the chart and their x axis: the length grid (log-spaced, with the
//! training length) and its bounds.

use super::keymap::STEPS_PER_OCTAVE;
use crate::eval::{Point, SweepAccumulator};
use crate::text::Stream;

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
        }
    }

    /// Forgets every window (new slopes).
    pub fn reset(&mut self) {
        self.acc = SweepAccumulator::new(self.acc.lmax());
        self.done = false;
        self.secs = None;
        self.refine = (0, 0);
        self.refined = None;
    }

    /// Points at the given lengths (None before the first window arrives).
    pub fn points(&self, lengths: &[usize]) -> Option<Vec<Point>> {
        (self.acc.windows() > 0).then(|| self.acc.points(lengths))
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

/// The chart's x range in log2(length): whole octaves around the grid.
pub fn chart_x_bounds(grid: &[usize]) -> (f64, f64) {
    let lo = (grid.first().copied().unwrap_or(1) as f64).log2().floor();
    let hi = (grid.last().copied().unwrap_or(2) as f64)
        .log2()
        .ceil()
        .max(lo + 1.0);
    (lo, hi)
}
