//! ALiBi arithmetic: slopes, presets, bias rows and per-head reach.
//!
//! Follows Press, Smith & Lewis, "Train Short, Test Long" (ICLR 2022) and the reference code
//! `get_slopes` in `ofirpress/attention_with_linear_biases`; BLOOM's `build_alibi_tensor` and MPT's
//! `gen_slopes` are reproduced as separate functions so the tests can check them against each other.
//! Pure functions of numbers: no candle, no terminal. [`prior`] holds the statistics of the bias
//! alone (the attention a head would pay with no content), which attention statistics compare to;
//! [`check`] names the formula a slope list follows, or the known fault it shows; [`family`] holds
//! the schemes ALiBi is compared with (KERPLE, T5 buckets, NoPE, rotary's decay) as numbers.

pub mod prior;

pub use prior::{
    PriorMeans, PriorQuery, log_bin, log_bin_range, log_bins, prior_means, prior_profile,
    prior_query,
};

pub mod check;
pub mod family;
pub mod file;
pub mod recipe;

use std::fmt;
use std::str::FromStr;

/// The maximum bias the paper uses: the geometric sequence starts at `2^(-8/n)`.
pub const PAPER_MAX_BIAS: f64 = 8.0;

/// Attention weight factor that defines a head's reach: the bias alone divides weight by 100.
pub const REACH_FACTOR: f64 = 100.0;

/// The most heads a slope list may have. Real ALiBi models have at most a few hundred (BLOOM-176B
/// has 112); the limit keeps a mistyped head count from asking for gigabytes.
pub const MAX_HEADS: usize = 1 << 20;

/// The largest slope attention can use: biases are computed in f32 whatever the model's dtype.
pub const MAX_SLOPE: f64 = f32::MAX as f64;

/// Errors from slope arithmetic.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SlopeError {
    /// A head count of zero.
    #[error("--heads must be at least 1 (got 0)")]
    ZeroHeads,
    /// A non-finite or non-positive maximum bias.
    #[error("--max-bias must be a positive finite number (got {0})")]
    BadMaxBias(f64),
    /// A non-finite or negative scale.
    #[error("--scale must be a finite number >= 0 (got {0})")]
    BadScale(f64),
    /// More heads than [`MAX_HEADS`].
    #[error("{0} heads is more than alibi-explorer handles (at most {max}; real models have at most a few hundred)", max = MAX_HEADS)]
    TooManyHeads(usize),
    /// A slope list whose length is not the head count.
    #[error(
        "{got} slope{} for {heads} head{} (hint: give one slope per head)",
        if *got == 1 { "" } else { "s" },
        if *heads == 1 { "" } else { "s" }
    )]
    Count {
        /// Slopes given.
        got: usize,
        /// Heads of the model.
        heads: usize,
    },
    /// A slope that is NaN, infinite, or too large for f32.
    #[error(
        "slope of head {head} is {}: slopes must be finite in f32, where attention biases are computed (at most {max:.3e})",
        fmt_slope(*value), max = MAX_SLOPE
    )]
    NotFinite {
        /// Head index.
        head: usize,
        /// The slope.
        value: f64,
    },
    /// A negative slope.
    #[error(
        "slope of head {head} is {}: a negative slope makes attention grow with distance (the flipped-sign bug), which is not ALiBi (hint: use 0 for a head without position bias)",
        fmt_slope(*value)
    )]
    Negative {
        /// Head index.
        head: usize,
        /// The slope.
        value: f64,
    },
    /// An unknown preset name.
    #[error(
        "unknown slope preset '{0}' (expected one of: geometric, equal, linear, reversed, zero)"
    )]
    UnknownPreset(String),
}

/// Slopes exactly as the paper's reference code computes them for `n` heads.
///
/// For `n` a power of two: the geometric sequence starting at `2^(-8/n)` with that same ratio.
/// Otherwise: the slopes of the closest lower power of two, followed by every other slope of twice
/// that power, until there are `n`.
pub fn paper_slopes(n: usize) -> Vec<f64> {
    geometric_slopes(n, PAPER_MAX_BIAS)
}

/// The paper's construction with another maximum bias `b`: for a power of two `n`, slopes
/// `2^(-b*(i+1)/n)`; other counts interleave as in [`paper_slopes`]. `b = 8` is the paper.
pub fn geometric_slopes(n: usize, max_bias: f64) -> Vec<f64> {
    fn power_of_two(n: usize, max_bias: f64) -> Vec<f64> {
        let start = 2f64.powf(-max_bias / n as f64);
        (1..=n).map(|i| start.powi(i as i32)).collect()
    }
    if n == 0 {
        return Vec::new();
    }
    if n.is_power_of_two() {
        return power_of_two(n, max_bias);
    }
    let closest = 1usize << n.ilog2();
    let mut slopes = power_of_two(closest, max_bias);
    slopes.extend(
        power_of_two(2 * closest, max_bias)
            .into_iter()
            .step_by(2)
            .take(n - closest),
    );
    slopes
}

/// Slopes in the order BLOOM's `build_alibi_tensor` produces them (base `2^(-8/p)` raised to
/// 1..p, then the extra base `2^(-8/2p)` raised to odd powers). Equal to [`paper_slopes`].
pub fn bloom_slopes(n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let closest = 1usize << n.ilog2();
    let base = 2f64.powf(-(2f64.powf(-((closest as f64).log2() - 3.0))));
    let mut slopes: Vec<f64> = (1..=closest).map(|p| base.powi(p as i32)).collect();
    if closest != n {
        let extra_base = 2f64.powf(-(2f64.powf(-((2.0 * closest as f64).log2() - 3.0))));
        let remaining = (n - closest).min(closest);
        slopes.extend((0..remaining).map(|k| extra_base.powi(2 * k as i32 + 1)));
    }
    slopes
}

/// Slopes in the order MPT's `gen_slopes(n_heads, alibi_bias_max)` produces them: `1/2^m` for
/// `m = (1..=p) * max_bias / p` with `p` the next power of two, then for non-power-of-two counts
/// the odd-indexed slopes followed by the even-indexed ones, truncated to `n`.
pub fn mpt_slopes(n: usize, alibi_bias_max: f64) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let p = n.next_power_of_two();
    let all: Vec<f64> = (1..=p)
        .map(|i| 1.0 / 2f64.powf(i as f64 * alibi_bias_max / p as f64))
        .collect();
    if p == n {
        return all;
    }
    all.iter()
        .skip(1)
        .step_by(2)
        .chain(all.iter().step_by(2))
        .copied()
        .take(n)
        .collect()
}

/// A named way of choosing slopes, for experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// The paper's geometric sequence (with `max_bias`, 8 by default).
    #[default]
    Geometric,
    /// Every head gets the geometric mean of the geometric slopes.
    Equal,
    /// Linearly spaced between the largest and smallest geometric slope.
    Linear,
    /// The geometric slopes in reverse head order.
    Reversed,
    /// All zero: no position information at all.
    Zero,
}

impl Preset {
    /// Every preset, in the order the UI cycles through them.
    pub const ALL: [Preset; 5] = [
        Preset::Geometric,
        Preset::Equal,
        Preset::Linear,
        Preset::Reversed,
        Preset::Zero,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Geometric => "geometric",
            Preset::Equal => "equal",
            Preset::Linear => "linear",
            Preset::Reversed => "reversed",
            Preset::Zero => "zero",
        }
    }

    /// The next preset in [`Preset::ALL`], wrapping around.
    #[must_use]
    pub fn next(self) -> Preset {
        let i = Preset::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Preset::ALL[(i + 1) % Preset::ALL.len()]
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = SlopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "geometric" | "paper" | "alibi" => Ok(Preset::Geometric),
            "equal" | "all-equal" => Ok(Preset::Equal),
            "linear" => Ok(Preset::Linear),
            "reversed" | "reverse" => Ok(Preset::Reversed),
            "zero" | "none" => Ok(Preset::Zero),
            _ => Err(SlopeError::UnknownPreset(s.to_string())),
        }
    }
}

/// A full slope choice: preset, maximum bias and a global scale factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlopeSpec {
    /// Which preset.
    pub preset: Preset,
    /// Maximum bias of the geometric sequence (8 in the paper).
    pub max_bias: f64,
    /// Every slope is multiplied by this.
    pub scale: f64,
}

impl Default for SlopeSpec {
    fn default() -> Self {
        Self {
            preset: Preset::Geometric,
            max_bias: PAPER_MAX_BIAS,
            scale: 1.0,
        }
    }
}

impl SlopeSpec {
    /// Checks the numbers and computes the slopes for `heads` heads.
    pub fn slopes(&self, heads: usize) -> Result<Vec<f64>, SlopeError> {
        check_heads(heads)?;
        if !self.max_bias.is_finite() || self.max_bias <= 0.0 {
            return Err(SlopeError::BadMaxBias(self.max_bias));
        }
        if !self.scale.is_finite() || self.scale < 0.0 {
            return Err(SlopeError::BadScale(self.scale));
        }
        let geometric = geometric_slopes(heads, self.max_bias);
        let base = match self.preset {
            Preset::Geometric => geometric,
            Preset::Equal => {
                let log_mean =
                    geometric.iter().map(|m| m.ln()).sum::<f64>() / geometric.len() as f64;
                vec![log_mean.exp(); heads]
            }
            Preset::Linear => {
                let hi = geometric.iter().copied().fold(f64::MIN, f64::max);
                let lo = geometric.iter().copied().fold(f64::MAX, f64::min);
                if heads == 1 {
                    vec![hi]
                } else {
                    (0..heads)
                        .map(|i| hi + (lo - hi) * i as f64 / (heads - 1) as f64)
                        .collect()
                }
            }
            Preset::Reversed => geometric.into_iter().rev().collect(),
            Preset::Zero => vec![0.0; heads],
        };
        let slopes: Vec<f64> = base.into_iter().map(|m| m * self.scale).collect();
        check_slopes(&slopes, heads)?;
        Ok(slopes)
    }
}

/// A slope for messages: plain when moderate, in scientific notation when huge or tiny.
pub fn fmt_slope(m: f64) -> String {
    if m != 0.0 && m.is_finite() && !(1e-4..1e6).contains(&m.abs()) {
        format!("{m:e}")
    } else {
        format!("{m}")
    }
}

/// A number in at most `width` columns, for table cells: `decimals` fixed decimals when that fits
/// (fewer when the number is large), scientific notation when even no decimals are too wide or
/// the number would round to zero (`2.90e37`, `1.0e-9`).
pub fn fmt_fixed(v: f64, decimals: usize, width: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let rounds_to_zero = v != 0.0 && v.abs() < 0.5 * 10f64.powi(-(decimals as i32));
    if !rounds_to_zero {
        for d in (0..=decimals).rev() {
            let s = format!("{v:.d$}");
            if s.chars().count() <= width {
                return s;
            }
        }
    }
    (0..=3)
        .rev()
        .map(|d| format!("{v:.d$e}"))
        .find(|s| s.chars().count() <= width)
        .unwrap_or_else(|| format!("{v:.0e}"))
}

/// Checks a head count: at least 1, at most [`MAX_HEADS`].
pub fn check_heads(heads: usize) -> Result<(), SlopeError> {
    match heads {
        0 => Err(SlopeError::ZeroHeads),
        n if n > MAX_HEADS => Err(SlopeError::TooManyHeads(n)),
        _ => Ok(()),
    }
}

/// Checks slopes wherever they enter (files, presets x scale, TUI edits, a model's config): one
/// per head, finite in f32 (at most [`MAX_SLOPE`]), and not negative. Zero is allowed (no
/// position bias for that head).
pub fn check_slopes(slopes: &[f64], heads: usize) -> Result<(), SlopeError> {
    if slopes.len() != heads {
        return Err(SlopeError::Count {
            got: slopes.len(),
            heads,
        });
    }
    for (head, &value) in slopes.iter().enumerate() {
        if !value.is_finite() || value.abs() > MAX_SLOPE {
            return Err(SlopeError::NotFinite { head, value });
        }
        if value < 0.0 {
            return Err(SlopeError::Negative { head, value });
        }
    }
    Ok(())
}

/// The distance at which the bias alone divides attention weight by [`REACH_FACTOR`]:
/// `ln(100) / m`. Infinite for a zero slope (the head sees everything equally).
pub fn reach(slope: f64) -> f64 {
    if slope <= 0.0 {
        f64::INFINITY
    } else {
        REACH_FACTOR.ln() / slope
    }
}

/// The bias a query at position `i` adds to the key at position `j`: `-m * (i - j)` for
/// `j <= i`, and `-inf` (masked) for keys in the future.
pub fn bias(slope: f64, i: usize, j: usize) -> f64 {
    if j > i {
        f64::NEG_INFINITY
    } else {
        -slope * (i - j) as f64
    }
}

/// The causal bias matrix of one head for `len` positions, row `i` = query, column `j` = key.
pub fn bias_matrix(slope: f64, len: usize) -> Vec<Vec<f64>> {
    (0..len)
        .map(|i| (0..len).map(|j| bias(slope, i, j)).collect())
        .collect()
}

/// Numerically stable softmax of one row (`-inf` entries get weight 0).
pub fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return vec![0.0; row.len()];
    }
    let exps: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn fixed_numbers_keep_to_their_width() {
        assert_eq!(fmt_fixed(0.5, 6, 10), "0.500000");
        assert_eq!(fmt_fixed(123_456.5, 6, 10), "123456.500");
        assert_eq!(fmt_fixed(2.9e37, 6, 10), "2.900e37");
        assert_eq!(fmt_fixed(1e-9, 4, 7), "1.00e-9");
        assert_eq!(fmt_fixed(0.0, 4, 7), "0.0000");
        for v in [2.9e37, -1e300, 1e-300, 7.5e12, 0.001_234] {
            for w in [7, 10] {
                assert!(
                    fmt_fixed(v, 4, w).chars().count() <= w,
                    "{v} in {w}: {}",
                    fmt_fixed(v, 4, w)
                );
            }
        }
    }

    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{a:?} vs {b:?}");
        }
    }

    fn pow2(exps: &[f64]) -> Vec<f64> {
        exps.iter().map(|e| 2f64.powf(-e)).collect()
    }

    #[test]
    fn hand_computed_power_of_two_counts() {
        close(&paper_slopes(1), &pow2(&[8.0]));
        close(&paper_slopes(4), &pow2(&[2.0, 4.0, 6.0, 8.0]));
        close(
            &paper_slopes(8),
            &pow2(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
        );
        let e16: Vec<f64> = (1..=16).map(|i| f64::from(i) * 0.5).collect();
        close(&paper_slopes(16), &pow2(&e16));
        let e32: Vec<f64> = (1..=32).map(|i| f64::from(i) * 0.25).collect();
        close(&paper_slopes(32), &pow2(&e32));
    }

    #[test]
    fn hand_computed_other_counts() {
        // 6 heads: the 4-head slopes, then slopes 1 and 3 of the 8-head sequence.
        close(&paper_slopes(6), &pow2(&[2.0, 4.0, 6.0, 8.0, 1.0, 3.0]));
        // 12 heads: the 8-head slopes, then odd exponents of the 16-head sequence (0.5, 1.5, ...).
        close(
            &paper_slopes(12),
            &pow2(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 0.5, 1.5, 2.5, 3.5]),
        );
        // 40 heads: the 32-head slopes (exponents 0.25 steps), then 8 of the 64-head odd ones.
        let mut e40: Vec<f64> = (1..=32).map(|i| f64::from(i) * 0.25).collect();
        e40.extend((0..8).map(|k| f64::from(2 * k + 1) * 0.125));
        close(&paper_slopes(40), &pow2(&e40));
        assert_eq!(paper_slopes(40).len(), 40);
    }

    #[test]
    fn bloom_and_mpt_orderings_agree_with_the_paper() {
        for n in 1..=80 {
            close(&bloom_slopes(n), &paper_slopes(n));
            close(&mpt_slopes(n, 8.0), &paper_slopes(n));
        }
    }

    #[test]
    fn mpt_with_other_max_bias_is_the_generalised_geometric() {
        for n in [1, 3, 4, 6, 12, 16, 40] {
            for b in [4.0, 6.5, 12.0] {
                close(&mpt_slopes(n, b), &geometric_slopes(n, b));
            }
        }
        close(&mpt_slopes(4, 16.0), &pow2(&[4.0, 8.0, 12.0, 16.0]));
    }

    #[test]
    fn presets_and_scale() {
        let spec = |preset, scale| SlopeSpec {
            preset,
            max_bias: 8.0,
            scale,
        };
        let g = paper_slopes(4);
        close(&spec(Preset::Geometric, 1.0).slopes(4).unwrap(), &g);
        close(
            &spec(Preset::Geometric, 2.0).slopes(4).unwrap(),
            &pow2(&[1.0, 3.0, 5.0, 7.0]),
        );
        close(
            &spec(Preset::Reversed, 1.0).slopes(4).unwrap(),
            &pow2(&[8.0, 6.0, 4.0, 2.0]),
        );
        close(
            &spec(Preset::Equal, 1.0).slopes(4).unwrap(),
            &pow2(&[5.0; 4]),
        );
        let lin = spec(Preset::Linear, 1.0).slopes(4).unwrap();
        close(
            &lin,
            &[
                0.25,
                0.25 - (0.25 - 1.0 / 256.0) / 3.0,
                0.25 - 2.0 * (0.25 - 1.0 / 256.0) / 3.0,
                1.0 / 256.0,
            ],
        );
        close(&spec(Preset::Zero, 3.0).slopes(4).unwrap(), &[0.0; 4]);
        let custom = SlopeSpec {
            preset: Preset::Geometric,
            max_bias: 4.0,
            scale: 1.0,
        };
        close(&custom.slopes(2).unwrap(), &pow2(&[2.0, 4.0]));
    }

    #[test]
    fn bad_slope_arguments_are_errors() {
        assert_eq!(SlopeSpec::default().slopes(0), Err(SlopeError::ZeroHeads));
        let bad = SlopeSpec {
            max_bias: -1.0,
            ..SlopeSpec::default()
        };
        assert_eq!(bad.slopes(4), Err(SlopeError::BadMaxBias(-1.0)));
        let bad = SlopeSpec {
            scale: f64::NAN,
            ..SlopeSpec::default()
        };
        assert!(matches!(bad.slopes(4), Err(SlopeError::BadScale(_))));
        assert!("bogus".parse::<Preset>().is_err());
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        assert_eq!(Preset::Zero.next(), Preset::Geometric);
    }

    #[test]
    fn reach_is_ln100_over_slope() {
        assert!((reach(0.5) - 100f64.ln() * 2.0).abs() < 1e-12);
        assert!(reach(0.0).is_infinite());
        // At the reach distance the bias is exactly -ln(100): weight divided by 100.
        let m = 1.0 / 16.0;
        let d = reach(m);
        assert!(((-m * d).exp() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn bias_matrix_is_causal_and_linear() {
        let b = bias_matrix(0.5, 3);
        assert_eq!(b[0], vec![0.0, f64::NEG_INFINITY, f64::NEG_INFINITY]);
        assert_eq!(b[1], vec![-0.5, 0.0, f64::NEG_INFINITY]);
        assert_eq!(b[2], vec![-1.0, -0.5, 0.0]);
    }

    #[test]
    fn per_key_form_gives_identical_softmax_rows() {
        // BLOOM and the paper's code add m*j (not -m*(i-j)); the difference is constant per row,
        // so the softmax rows must agree.
        let len = 9;
        for slope in paper_slopes(6) {
            let scores: Vec<Vec<f64>> = (0..len)
                .map(|i| {
                    (0..len)
                        .map(|j| ((i * 7 + j * 3) % 5) as f64 * 0.3)
                        .collect()
                })
                .collect();
            for i in 0..len {
                let relative: Vec<f64> =
                    (0..len).map(|j| scores[i][j] + bias(slope, i, j)).collect();
                let per_key: Vec<f64> = (0..len)
                    .map(|j| {
                        if j > i {
                            f64::NEG_INFINITY
                        } else {
                            scores[i][j] + slope * j as f64
                        }
                    })
                    .collect();
                close(&softmax(&relative), &softmax(&per_key));
                assert!((softmax(&relative).iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn slopes_are_checked_where_they_enter() {
        assert_eq!(check_slopes(&[0.5, 0.0], 2), Ok(()));
        assert_eq!(
            check_slopes(&[0.5], 2),
            Err(SlopeError::Count { got: 1, heads: 2 })
        );
        // Finite in f64 but not in f32, where the biases are computed.
        for bad in [1e308, f64::INFINITY, f64::NAN, -f64::INFINITY, 3.5e38] {
            assert!(
                matches!(
                    check_slopes(&[0.5, bad], 2),
                    Err(SlopeError::NotFinite { head: 1, .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(check_slopes(&[0.5, 3.4e38], 2), Ok(()));
        for bad in [-1e-12, -0.5, -3e38] {
            assert!(matches!(
                check_slopes(&[bad, 0.5], 2),
                Err(SlopeError::Negative { head: 0, .. })
            ));
        }
        // Preset x scale goes through the same check.
        let huge = SlopeSpec {
            scale: 1e308,
            ..SlopeSpec::default()
        };
        assert!(matches!(huge.slopes(8), Err(SlopeError::NotFinite { .. })));
        let msg = huge.slopes(8).unwrap_err().to_string();
        assert!(msg.contains("5e307") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn head_counts_are_bounded() {
        assert_eq!(check_heads(0), Err(SlopeError::ZeroHeads));
        assert_eq!(check_heads(MAX_HEADS), Ok(()));
        for n in [MAX_HEADS + 1, 1 << 32, usize::MAX] {
            assert_eq!(
                SlopeSpec::default().slopes(n),
                Err(SlopeError::TooManyHeads(n))
            );
        }
    }
}
