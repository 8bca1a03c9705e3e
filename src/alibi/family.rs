//! The position-encoding family ALiBi is compared with, as numbers: what each scheme adds to (or
//! tells about) the attention score of a query and a key `d = i - j` tokens back, and the
//! attention the bias alone would pay ("the prior") where there is such a thing.
//!
//! - **ALiBi** (Press, Smith & Lewis, "Train Short, Test Long", ICLR 2022): bias `-m·d`.
//! - **KERPLE** (Chi, Fan, Ramadge & Rudnicky, "KERPLE: Kernelized Relative Positional Embedding
//!   for Length Extrapolation", NeurIPS 2022), with the paper's `r1, r2` written `p, a`:
//!   logarithmic `-p·ln(1 + a·d)` (p, a > 0) and power `-a·d^p` (a > 0, 0 < p <= 2). Both are
//!   learned per head in the paper; the defaults here are illustrative values, not the paper's.
//! - **T5** relative buckets (Raffel et al., "Exploring the Limits of Transfer Learning with a
//!   Unified Text-to-Text Transformer", JMLR 2020), causal (`bidirectional=False`, as in a
//!   decoder), after Mesh TensorFlow's and transformers' `_relative_position_bucket`: distances
//!   below `num_buckets/2` get a bucket each, larger ones log-spaced buckets up to
//!   `max_distance`, and every distance from `max_distance` on shares the last bucket. Each
//!   bucket's bias is a *learned* number per head, so only the bucket structure is shown here,
//!   never invented values, and T5 has no prior.
//! - **NoPE** (no position encoding; Kazemnejad et al., "The Impact of Positional Encoding on
//!   Length Generalization in Transformers", NeurIPS 2023): bias 0, so the prior is uniform.
//! - **Rotary** (Su et al., "RoFormer", 2021, §3.4.3): no bias at all; the paper's long-term
//!   decay is the relative upper bound `(1/(D/2)) Σ_{j=1}^{D/2} |S_j|`, `S_j = Σ_{k<j}
//!   e^{i·r·θ_k}`, `θ_k = base^(-2k/D)` (`D` the head dimension) on how much the score of a
//!   query–key pair at relative distance `r` can depend on it. An upper bound on a logit's
//!   magnitude, not something added to it, so rotary has no prior either.
//!
//! Pure functions of numbers, like the rest of `alibi`: no candle, no terminal.

use super::prior::{log_bin_range, log_bins};
use std::fmt;

/// The schemes, in the order the view and the command list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ALiBi: `-m·d`.
    Alibi,
    /// KERPLE, logarithmic variant: `-p·ln(1 + a·d)`.
    KerpleLog,
    /// KERPLE, power variant: `-a·d^p`.
    KerplePower,
    /// T5's learned relative buckets (causal).
    T5,
    /// No position encoding: bias 0.
    NoPe,
    /// Rotary embeddings' long-term decay bound.
    Rotary,
}

/// What a scheme's number at a distance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A bias added to the attention logit (its softmax is the prior).
    Bias,
    /// The index of a learned bucket (its bias is learned: no prior).
    Bucket,
    /// An upper bound on the logit's dependence on distance (not a bias: no prior).
    DecayBound,
}

impl Scheme {
    /// Every scheme, in display order.
    pub const ALL: [Scheme; 6] = [
        Scheme::Alibi,
        Scheme::KerpleLog,
        Scheme::KerplePower,
        Scheme::T5,
        Scheme::NoPe,
        Scheme::Rotary,
    ];

    /// Short machine name (JSON, file names).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Alibi => "alibi",
            Scheme::KerpleLog => "kerple-log",
            Scheme::KerplePower => "kerple-power",
            Scheme::T5 => "t5",
            Scheme::NoPe => "nope",
            Scheme::Rotary => "rotary",
        }
    }

    /// Name for people.
    pub fn title(self) -> &'static str {
        match self {
            Scheme::Alibi => "ALiBi",
            Scheme::KerpleLog => "KERPLE log",
            Scheme::KerplePower => "KERPLE power",
            Scheme::T5 => "T5",
            Scheme::NoPe => "NoPE",
            Scheme::Rotary => "Rotary decay",
        }
    }

    /// The formula of its number at distance `d` (or `r`).
    pub fn formula(self) -> &'static str {
        match self {
            Scheme::Alibi => "bias = −m·d",
            Scheme::KerpleLog => "bias = −p·ln(1 + a·d)",
            Scheme::KerplePower => "bias = −a·d^p",
            Scheme::T5 => "bias = b[bucket(d)]",
            Scheme::NoPe => "bias = 0",
            Scheme::Rotary => "mean_j |Σ_{k<j} e^(i·r·θ_k)|",
        }
    }

    /// The source, short.
    pub fn source(self) -> &'static str {
        match self {
            Scheme::Alibi => "Press et al. 2022",
            Scheme::KerpleLog | Scheme::KerplePower => "Chi et al. 2022",
            Scheme::T5 => "Raffel et al. 2020",
            Scheme::NoPe => "Kazemnejad et al. 2023",
            Scheme::Rotary => "Su et al. 2021 §3.4.3",
        }
    }

    /// What its number at a distance is.
    pub fn value_kind(self) -> Value {
        match self {
            Scheme::T5 => Value::Bucket,
            Scheme::Rotary => Value::DecayBound,
            _ => Value::Bias,
        }
    }

    /// Why there is no prior, for the schemes without one.
    pub fn no_prior_reason(self) -> Option<&'static str> {
        match self {
            Scheme::T5 => Some("bucket biases are learned: no prior without a trained model"),
            Scheme::Rotary => Some("a bound on |q·k|, not a bias: no prior"),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// ALiBi's slope by default: 1/16, a middle head of 8 (the paper's slopes are 1/2 .. 1/256).
pub const DEFAULT_ALIBI_SLOPE: f64 = 1.0 / 16.0;
/// T5's bucket count (T5 and transformers' default).
pub const T5_BUCKETS: usize = 32;
/// T5's largest distinguished distance (T5 and transformers' default).
pub const T5_MAX_DISTANCE: usize = 128;
/// The rotary head dimension by default (GPT-NeoX, Llama and most rotary models use 64 or 128).
pub const ROTARY_DIM: usize = 64;
/// The rotary base (RoFormer's `θ_k = 10000^(-2k/D)`).
pub const ROTARY_BASE: f64 = 10_000.0;
/// KERPLE's power exponent `p` may be at most 2 (beyond it the kernel is not conditionally
/// positive definite).
pub const KERPLE_MAX_POWER: f64 = 2.0;
/// Factor of one parameter step (as the slope editor's).
pub const STEP: f64 = 1.25;
/// The largest head dimension and bucket count the parameters accept (bounds the work a
/// distance costs).
pub const MAX_DIM: usize = 4096;

/// The parameters of every scheme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    /// ALiBi's slope `m`.
    pub alibi_slope: f64,
    /// KERPLE log: scale `p` (the paper's `r1`).
    pub kerple_log_p: f64,
    /// KERPLE log: `a` inside the logarithm (the paper's `r2`).
    pub kerple_log_a: f64,
    /// KERPLE power: scale `a` (the paper's `r1`).
    pub kerple_power_a: f64,
    /// KERPLE power: exponent `p`, `0 < p <= 2` (the paper's `r2`).
    pub kerple_power_p: f64,
    /// T5: number of buckets (even, at least 2).
    pub t5_buckets: usize,
    /// T5: distance from which every key shares the last bucket.
    pub t5_max_distance: usize,
    /// Rotary: head dimension `D` (even).
    pub rotary_dim: usize,
    /// Rotary: base of the frequencies.
    pub rotary_base: f64,
}

impl Default for Family {
    /// ALiBi's middle head; KERPLE at illustrative values (`-ln(1+d)`: attention falling as
    /// `1/(1+d)`; `-√d`); T5's published 32 buckets up to 128; a 64-dimensional rotary head with
    /// base 10,000.
    fn default() -> Self {
        Family {
            alibi_slope: DEFAULT_ALIBI_SLOPE,
            kerple_log_p: 1.0,
            kerple_log_a: 1.0,
            kerple_power_a: 1.0,
            kerple_power_p: 0.5,
            t5_buckets: T5_BUCKETS,
            t5_max_distance: T5_MAX_DISTANCE,
            rotary_dim: ROTARY_DIM,
            rotary_base: ROTARY_BASE,
        }
    }
}

/// One named parameter's value, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its name in the formula (`m`, `p`, `a`, `buckets`, ...).
    pub name: &'static str,
    /// Its value.
    pub value: f64,
}

/// The T5 bucket of a key `d` tokens back, causal (`bidirectional=False`): `d` itself below
/// `num_buckets/2`, then `num_buckets/2 + floor(ln(d/exact)/ln(max_distance/exact) ·
/// (num_buckets − exact))` capped at the last bucket (`exact = num_buckets/2`).
pub fn t5_bucket(d: usize, num_buckets: usize, max_distance: usize) -> usize {
    let exact = num_buckets / 2;
    if d < exact {
        return d;
    }
    let last = num_buckets.saturating_sub(1);
    if d >= max_distance || max_distance <= exact {
        return last;
    }
    let ratio = (d as f64 / exact as f64).ln() / (max_distance as f64 / exact as f64).ln();
    let large = exact + (ratio * (num_buckets - exact) as f64) as usize;
    large.min(last)
}

/// RoFormer's relative upper bound at distance `r`: `(1/(D/2)) Σ_{j=1}^{D/2} |S_j|`, `S_j =
/// Σ_{k=0}^{j-1} e^{i r θ_k}`, `θ_k = base^(-2k/D)`. At `r = 0` every term is 1, so `|S_j| = j`
/// and the bound is `(D/2 + 1)/2`.
pub fn rotary_bound(r: usize, dim: usize, base: f64) -> f64 {
    let half = (dim / 2).max(1);
    let (mut re, mut im, mut sum) = (0.0f64, 0.0f64, 0.0f64);
    for k in 0..half {
        let theta = base.powf(-2.0 * k as f64 / dim.max(2) as f64);
        let (s, c) = (r as f64 * theta).sin_cos();
        re += c;
        im += s;
        sum += re.hypot(im);
    }
    sum / half as f64
}

/// Distances a log bin is averaged over when its values are costly (rotary): at most this many,
/// evenly spaced; cheap schemes use every distance.
pub const BIN_SAMPLES: usize = 256;

/// The mean of `f(d)` over each log bin of the distances `0..len` (bins `[0,1), [1,2), [2,4),
/// ...`), over at most `samples` evenly spaced distances per bin.
pub fn log_binned(len: usize, samples: usize, f: impl Fn(usize) -> f64) -> Vec<f64> {
    (0..log_bins(len))
        .map(|bin| {
            let (from, to) = log_bin_range(bin);
            let to = to.min(len);
            let n = to - from;
            let k = n.min(samples.max(1));
            let sum: f64 = (0..k).map(|s| f(from + s * n / k)).sum();
            sum / k as f64
        })
        .collect()
}

impl Family {
    /// Checks every parameter: finite and positive, KERPLE's power at most 2, T5's buckets even
    /// and at least 2 with `max_distance` above `num_buckets/2`, rotary's dimension even.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--slope", self.alibi_slope, true),
            ("--kerple-log-p", self.kerple_log_p, false),
            ("--kerple-log-a", self.kerple_log_a, false),
            ("--kerple-power-a", self.kerple_power_a, false),
            ("--kerple-power-p", self.kerple_power_p, false),
            ("--rotary-base", self.rotary_base, false),
        ];
        for (what, v, zero_ok) in positive {
            if !v.is_finite() || v < 0.0 || (v == 0.0 && !zero_ok) {
                let need = if zero_ok { "0 or more" } else { "above 0" };
                return Err(format!("{what} must be a finite number {need} (got {v})"));
            }
        }
        for (what, v) in [
            ("--slope", self.alibi_slope),
            ("--kerple-log-p", self.kerple_log_p),
            ("--kerple-log-a", self.kerple_log_a),
            ("--kerple-power-a", self.kerple_power_a),
        ] {
            if v > MAX_PARAM {
                return Err(format!("{what} must be at most {MAX_PARAM} (got {v})"));
            }
        }
        if self.rotary_base > MAX_ROTARY_BASE {
            return Err(format!(
                "--rotary-base must be at most {MAX_ROTARY_BASE:e} (got {})",
                self.rotary_base
            ));
        }
        if self.kerple_power_p > KERPLE_MAX_POWER {
            return Err(format!(
                "--kerple-power-p must be at most 2 (got {}): KERPLE's power kernel needs 0 < p <= 2",
                self.kerple_power_p
            ));
        }
        if self.rotary_base <= 1.0 {
            return Err(format!(
                "--rotary-base must be above 1 (got {}): the frequencies base^(-2k/D) must fall",
                self.rotary_base
            ));
        }
        let b = self.t5_buckets;
        if b < 2 || !b.is_multiple_of(2) || b > MAX_DIM {
            return Err(format!(
                "--t5-buckets must be even, from 2 to {MAX_DIM} (got {b}): half of them are exact distances"
            ));
        }
        if self.t5_max_distance <= b / 2 {
            return Err(format!(
                "--t5-max-distance must be above half the buckets ({}; got {})",
                b / 2,
                self.t5_max_distance
            ));
        }
        let d = self.rotary_dim;
        if d < 2 || !d.is_multiple_of(2) || d > MAX_DIM {
            return Err(format!(
                "--rotary-dim must be even, from 2 to {MAX_DIM} (got {d}): rotary turns pairs of dimensions"
            ));
        }
        Ok(())
    }

    /// The scheme's number at distance `d`: its bias (ALiBi, KERPLE, NoPE), bucket index (T5)
    /// or decay bound (rotary); see [`Scheme::value_kind`].
    pub fn value(&self, s: Scheme, d: usize) -> f64 {
        let x = d as f64;
        match s {
            Scheme::Alibi => -self.alibi_slope * x,
            Scheme::KerpleLog => -self.kerple_log_p * (self.kerple_log_a * x).ln_1p(),
            Scheme::KerplePower => -self.kerple_power_a * x.powf(self.kerple_power_p),
            Scheme::T5 => t5_bucket(d, self.t5_buckets, self.t5_max_distance) as f64,
            Scheme::NoPe => 0.0,
            Scheme::Rotary => rotary_bound(d, self.rotary_dim, self.rotary_base),
        }
    }

    /// The bias at distance `d`, for the schemes that add one; `None` for T5 (learned values)
    /// and rotary (no bias).
    pub fn bias(&self, s: Scheme, d: usize) -> Option<f64> {
        (s.value_kind() == Value::Bias).then(|| self.value(s, d))
    }

    /// The value at `d` on a 0..1 scale for colour: `e^bias` (the factor by which the bias alone
    /// scales attention), the bucket over the last bucket, the bound over the bound at 0.
    pub fn shade(&self, s: Scheme, d: usize) -> f64 {
        match s.value_kind() {
            Value::Bias => self.value(s, d).exp(),
            Value::Bucket => self.value(s, d) / (self.t5_buckets - 1).max(1) as f64,
            Value::DecayBound => self.value(s, d) / self.value(s, 0),
        }
    }

    /// The prior of the last query of a window of `len` tokens: `p(d) = softmax_d(bias(d))` over
    /// the keys `d = 0..len` back (uniform for NoPE); `None` for the schemes without one.
    pub fn prior(&self, s: Scheme, len: usize) -> Option<Vec<f64>> {
        if len == 0 {
            return None;
        }
        let bias: Vec<f64> = (0..len).map(|d| self.bias(s, d)).collect::<Option<_>>()?;
        // Every bias here is at most 0 and is 0 at d = 0: exp never overflows.
        let top = bias.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = bias.iter().map(|b| (b - top).exp()).collect();
        let z: f64 = w.iter().sum();
        Some(w.iter().map(|x| x / z).collect())
    }

    /// The prior's mean distance `Σ_d d·p(d)` for the last query of `len` tokens.
    pub fn prior_mean_distance(&self, s: Scheme, len: usize) -> Option<f64> {
        let p = self.prior(s, len)?;
        Some(p.iter().enumerate().map(|(d, p)| d as f64 * p).sum())
    }

    /// The curve the view draws against log-binned distance: the prior's mean attention per key
    /// in each bin (bias schemes), the mean bucket index (T5), or the mean bound over the bound
    /// at 0 (rotary; sampled at most [`BIN_SAMPLES`] distances a bin).
    pub fn profile(&self, s: Scheme, len: usize) -> Vec<f64> {
        match s.value_kind() {
            Value::Bias => {
                let p = self.prior(s, len).unwrap_or_default();
                log_binned(p.len(), usize::MAX, |d| p[d])
            }
            Value::Bucket => log_binned(len, usize::MAX, |d| self.value(s, d)),
            Value::DecayBound => log_binned(len, BIN_SAMPLES, |d| self.shade(s, d)),
        }
    }

    /// The scheme's parameters, main one first (the one `+`/`-` scale in the TUI).
    pub fn params(&self, s: Scheme) -> Vec<Param> {
        let p = |name, value| Param { name, value };
        match s {
            Scheme::Alibi => vec![p("m", self.alibi_slope)],
            Scheme::KerpleLog => vec![p("p", self.kerple_log_p), p("a", self.kerple_log_a)],
            Scheme::KerplePower => vec![p("a", self.kerple_power_a), p("p", self.kerple_power_p)],
            Scheme::T5 => vec![
                p("max_distance", self.t5_max_distance as f64),
                p("buckets", self.t5_buckets as f64),
            ],
            Scheme::NoPe => vec![],
            Scheme::Rotary => vec![p("D", self.rotary_dim as f64), p("base", self.rotary_base)],
        }
    }

    /// The parameters as text: `m = 0.0625`, `p = 1, a = 1`, ...
    pub fn params_text(&self, s: Scheme) -> String {
        let v = self.params(s);
        if v.is_empty() {
            return "no parameters".to_string();
        }
        v.iter()
            .map(|p| format!("{} = {}", p.name, fmt_param(p.value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One step of parameter `which` (0 = main, 1 = second) of `s`, up or down: real parameters
    /// by [`STEP`], whole ones (T5's, rotary's dimension) by 2; the rotary base by 10. An edit
    /// that would leave the valid range is refused with the reason (the parameters unchanged).
    pub fn step(&mut self, s: Scheme, which: usize, up: bool) -> Result<(), String> {
        let mut next = *self;
        let f = if up { STEP } else { 1.0 / STEP };
        let twice = |n: usize| if up { n.saturating_mul(2) } else { n / 2 };
        match (s, which) {
            (Scheme::Alibi, 0) => next.alibi_slope *= f,
            (Scheme::KerpleLog, 0) => next.kerple_log_p *= f,
            (Scheme::KerpleLog, 1) => next.kerple_log_a *= f,
            (Scheme::KerplePower, 0) => next.kerple_power_a *= f,
            (Scheme::KerplePower, 1) => {
                next.kerple_power_p = (next.kerple_power_p * f).min(KERPLE_MAX_POWER);
            }
            (Scheme::T5, 0) => next.t5_max_distance = twice(next.t5_max_distance),
            (Scheme::T5, 1) => next.t5_buckets = twice(next.t5_buckets),
            (Scheme::Rotary, 0) => next.rotary_dim = twice(next.rotary_dim),
            (Scheme::Rotary, 1) => next.rotary_base *= if up { 10.0 } else { 0.1 },
            _ => {
                let n = self.params(s).len();
                return Err(if n == 0 {
                    format!("{s} has no parameters")
                } else {
                    format!("{s} has {} parameter{}", n, if n == 1 { "" } else { "s" })
                });
            }
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

/// The largest slope or KERPLE parameter (per token of distance; the paper's slopes are at most 1/2).
pub const MAX_PARAM: f64 = 1000.0;
/// The largest rotary base.
pub const MAX_ROTARY_BASE: f64 = 1e12;

/// The widest [`fmt_param`] text: a number wider than this is written in scientific notation.
pub const PARAM_WIDTH: usize = 7;

/// A parameter for display: whole numbers without decimals, others with four significant digits;
/// at most [`PARAM_WIDTH`] characters (scientific notation past that: `-1.02e6`).
pub fn fmt_param(v: f64) -> String {
    let plain = fmt_param_plain(v);
    if plain.chars().count() <= PARAM_WIDTH {
        plain
    } else {
        crate::alibi::fmt_fixed(v, 0, PARAM_WIDTH)
    }
}

fn fmt_param_plain(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 0.01 {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_keep_to_their_column() {
        assert_eq!(fmt_param(-999.0), "-999");
        assert_eq!(fmt_param(1.6094), "1.6094");
        assert_eq!(fmt_param(-1_022_976.0), "-1.02e6");
        for v in [-1e300, 1e300, -1.0e-300, 123_456_789.123, -0.000_123_456] {
            assert!(
                fmt_param(v).chars().count() <= PARAM_WIDTH,
                "{v}: {}",
                fmt_param(v)
            );
        }
    }

    #[test]
    fn steps_stay_in_range_and_refuse_what_would_leave_it() {
        let mut f = Family::default();
        f.step(Scheme::Alibi, 0, true).unwrap();
        assert!((f.alibi_slope - DEFAULT_ALIBI_SLOPE * STEP).abs() < 1e-15);
        for _ in 0..10 {
            let _ = f.step(Scheme::KerplePower, 1, true);
        }
        assert!((f.kerple_power_p - 2.0).abs() < 1e-12);
        // T5: max_distance may not fall to half the buckets.
        f.t5_max_distance = 32;
        assert!(f.step(Scheme::T5, 0, false).is_err());
        assert_eq!(f.t5_max_distance, 32);
        assert!(f.step(Scheme::NoPe, 0, true).is_err());
        assert!(f.step(Scheme::Alibi, 1, true).is_err());
        let mut g = Family::default();
        for _ in 0..20 {
            let _ = g.step(Scheme::Rotary, 0, false);
        }
        assert_eq!(g.rotary_dim, 2);
    }

    #[test]
    fn params_print_plainly() {
        assert_eq!(fmt_param(32.0), "32");
        assert_eq!(fmt_param(0.0625), "0.0625");
        assert_eq!(fmt_param(1.25), "1.25");
        assert_eq!(fmt_param(0.001), "1.00e-3");
        let f = Family::default();
        assert_eq!(f.params_text(Scheme::KerpleLog), "p = 1, a = 1");
        assert_eq!(f.params_text(Scheme::NoPe), "no parameters");
    }
}
