//! The copy test a run measures at every validation and the copy mix of its training data: the
//! two sides of teaching a model to copy (issue: shipped models that copy). The test itself is
//! [`crate::eval::reach`]; the mix repeats a span of a training window later in it, the kind of
//! "frequent, reliable bigram repetition" Aoyama, Wilcox & Schneider (2025) find brings induction
//! heads earlier.

use super::settings::TrainSettings;
use crate::eval::reach::{CopySpec, SpanKind};
use crate::model::init::Rng;

/// Seed of the copy test's spans (fixed, so every run of a family is measured on the same spans).
pub const COPY_SEED: u64 = 20_260_107;
/// Copy-test spans by default.
pub const COPY_SAMPLES: usize = 20;

/// The copy test's default span for `train_len`: two copies fill the window but for a few
/// tokens (126 at 256, 62 at 128).
pub fn default_copy_span(train_len: usize) -> usize {
    (train_len / 2).saturating_sub(2)
}

/// The copy mix's default span range for `train_len`: 8 tokens to half the window.
pub fn default_repeat_span(train_len: usize) -> (usize, usize) {
    (8.min(train_len / 2).max(1), (train_len / 2).max(1))
}

/// The copy mix applied to window `w` of `step`: with probability `frac` a span of `min..=max`
/// tokens at a random place recurs at a random later place of the window, written over the
/// text there; with [`SpanKind::Random`] the span's first occurrence is first replaced by tokens
/// drawn at random from the window (so only copying predicts the second). A pure function of
/// the seed, the step and the window, like the data order.
pub fn apply_repeat(window: &mut [u32], seed: u64, step: usize, w: usize, mix: &RepeatMix) {
    if mix.frac <= 0.0 {
        return;
    }
    let mut rng = Rng::new(
        seed ^ (step as u64).wrapping_mul(0xA24B_AED4_963E_E407)
            ^ (w as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25)
            ^ 0x00C0_FFEE,
    );
    if rng.uniform() >= mix.frac {
        return;
    }
    let n = window.len();
    let (min, max) = (mix.span.0, mix.span.1.min(n / 2));
    if max == 0 || min > max {
        return;
    }
    let k = min + rng.below((max - min + 1) as u64) as usize;
    let a = rng.below((n - 2 * k + 1) as u64) as usize;
    let b = a + k + rng.below((n - a - 2 * k + 1) as u64) as usize;
    if mix.kind == SpanKind::Random {
        for i in a..a + k {
            window[i] = window[rng.below(n as u64) as usize];
        }
    }
    window.copy_within(a..a + k, b);
}

/// The copy mix of a run's training windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepeatMix {
    /// Fraction of windows with a repeated span.
    pub frac: f64,
    /// Shortest and longest span, tokens.
    pub span: (usize, usize),
    /// Spans of the text itself, or random tokens.
    pub kind: SpanKind,
}

impl RepeatMix {
    /// The mix `s` trains with.
    pub fn of(s: &TrainSettings) -> Self {
        Self {
            frac: s.repeat_frac,
            span: s.repeat_span,
            kind: s.repeat_kind,
        }
    }
}

/// The copy test a run measures at every validation: `copy_span`-token spans of the validation
/// data repeated right after themselves, [`COPY_SEED`].
pub fn copy_spec(s: &TrainSettings) -> CopySpec {
    CopySpec {
        span: s.copy_span,
        gap: 0,
        samples: s.copy_samples.max(1),
        seed: COPY_SEED,
        kind: SpanKind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(frac: f64, kind: SpanKind) -> RepeatMix {
        RepeatMix {
            frac,
            span: (4, 10),
            kind,
        }
    }

    /// Where `w` differs from `orig`: one run of changed tokens that copies an earlier run.
    fn copied_span(orig: &[u32], w: &[u32]) -> Option<(usize, usize)> {
        let changed: Vec<usize> = (0..w.len()).filter(|&i| w[i] != orig[i]).collect();
        Some((*changed.first()?, *changed.last()?))
    }

    #[test]
    fn the_mix_repeats_a_span_later_in_the_window() {
        let orig: Vec<u32> = (1000..1065).collect();
        let (mut with, mut without) = (0, 0);
        for step in 0..400 {
            let mut w = orig.clone();
            apply_repeat(&mut w, 7, step, 3, &mix(0.5, SpanKind::Text));
            let mut again = orig.clone();
            apply_repeat(&mut again, 7, step, 3, &mix(0.5, SpanKind::Text));
            assert_eq!(w, again, "a pure function of seed, step and window");
            match copied_span(&orig, &w) {
                None => without += 1,
                Some((lo, hi)) => {
                    with += 1;
                    // Text ids are distinct here, so the changed run is the copy: each of its
                    // tokens equals the text `d` tokens before, for one distance d.
                    let d = (w[lo] - 1000) as usize;
                    let d = lo - d;
                    assert!(d >= 4, "the copy starts after its source ends");
                    for i in lo..=hi {
                        assert_eq!(w[i], orig[i - d]);
                    }
                    assert!((4..=10).contains(&(hi - lo + 1)));
                }
            }
        }
        assert!((150..250).contains(&with), "{with} of 400 windows");
        assert_eq!(with + without, 400);
        let mut w = orig.clone();
        apply_repeat(&mut w, 7, 1, 3, &mix(0.0, SpanKind::Text));
        assert_eq!(w, orig, "no mix, no change");
    }

    #[test]
    fn a_random_span_recurs_verbatim() {
        let orig: Vec<u32> = (0..65).map(|i| i % 13).collect();
        let mut found = 0;
        for step in 0..50 {
            let mut w = orig.clone();
            apply_repeat(&mut w, 1, step, 0, &mix(1.0, SpanKind::Random));
            // Some span of 4..=10 tokens occurs twice at distance >= its length.
            let ok = (4..=10).any(|k| {
                (0..=65 - 2 * k).any(|a| {
                    (a + k..=65 - k)
                        .any(|b| w[a..a + k] == w[b..b + k] && orig[a..a + k] != w[a..a + k])
                })
            });
            found += usize::from(ok);
            assert!(
                w.iter().all(|t| *t < 13),
                "drawn from the window's own tokens"
            );
        }
        assert!(found >= 45, "{found} of 50 windows");
    }
}
