//! `slopes check`: does a slope list follow a known formula, and if not, which known fault does
//! it show?
//!
//! The faults are the ones public ALiBi ports were fixed for (mlx, TensorRT-LLM, Baichuan2,
//! flashinfer, candle's flash-attention): the power-of-two formula used for other head counts,
//! head 0 given slope 1 (an off-by-one in the exponent), slopes sliced wrongly per
//! tensor-parallel rank, a flipped sign, plus reversed or permuted order, a constant factor and
//! a wrong count. Pure numbers, like the rest of [`crate::alibi`].

use super::{PAPER_MAX_BIAS, geometric_slopes};
use std::fmt;

/// Two slopes agree when they differ by at most this, relative.
pub const MATCH_REL_TOL: f64 = 1e-6;

/// Slices of at most this many times the head count are searched.
const MAX_SLICE_FACTOR: usize = 16;

/// Slice searches stop at this many heads in the larger set (the search is quadratic).
const MAX_SLICE_HEADS: usize = 8192;

/// A known way of computing slopes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Formula {
    /// The paper's `get_slopes` (= BLOOM's `build_alibi_tensor` = MPT's `gen_slopes` with
    /// `alibi_bias_max` 8), with its interleave for non-powers of two.
    Geometric,
    /// MPT's `gen_slopes(n, alibi_bias_max)` with another maximum bias.
    Mpt {
        /// `alibi_bias_max`.
        bias_max: f64,
    },
}

impl Formula {
    /// The maximum bias of the geometric sequence.
    pub fn max_bias(self) -> f64 {
        match self {
            Formula::Geometric => PAPER_MAX_BIAS,
            Formula::Mpt { bias_max } => bias_max,
        }
    }

    /// The formula's slopes for `n` heads.
    pub fn slopes(self, n: usize) -> Vec<f64> {
        // MPT's order equals the paper's (tested in `alibi`), so one construction serves both.
        geometric_slopes(n, self.max_bias())
    }

    /// A short name for JSON.
    pub fn key(self) -> &'static str {
        match self {
            Formula::Geometric => "geometric",
            Formula::Mpt { .. } => "mpt",
        }
    }
}

impl fmt::Display for Formula {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Formula::Geometric => {
                f.write_str("geometric (paper / BLOOM / MPT with alibi_bias_max 8)")
            }
            Formula::Mpt { bias_max } => write!(f, "MPT gen_slopes with alibi_bias_max {bias_max}"),
        }
    }
}

/// A known fault of a slope list.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Not one slope per head.
    Count {
        /// Slopes given.
        got: usize,
        /// Heads expected.
        heads: usize,
        /// A formula the list follows for its own length, if any.
        matches: Option<Formula>,
    },
    /// NaN, infinite, or too large for f32.
    NotFinite {
        /// The heads concerned.
        heads: Vec<usize>,
    },
    /// Every slope negative, so attention grows with distance.
    FlippedSign {
        /// A formula the negated list follows, if any.
        matches: Option<Formula>,
    },
    /// Some slopes negative.
    Negative {
        /// The heads concerned.
        heads: Vec<usize>,
    },
    /// Some slopes zero (no position bias on those heads).
    Zero {
        /// The heads concerned.
        heads: Vec<usize>,
    },
    /// Head 0 has slope 1: exponents counted from 0 instead of 1.
    OffByOne {
        /// The formula meant.
        formula: Formula,
    },
    /// `2^(-b(h+1)/d)` with `d` the head count or its next power of two, for a head count that
    /// is not a power of two (candle's flash-attention uses the next power of two).
    PowerOfTwoFormula {
        /// The denominator used.
        denominator: usize,
        /// The maximum bias `b`.
        formula: Formula,
    },
    /// The formula's slopes in reverse head order.
    Reversed {
        /// The formula meant.
        formula: Formula,
    },
    /// The formula's slopes in another order (for non-powers of two: the interleave).
    Order {
        /// The formula meant.
        formula: Formula,
    },
    /// Every slope is the formula's times one factor.
    ConstantFactor {
        /// The factor.
        factor: f64,
        /// The formula meant.
        formula: Formula,
    },
    /// The geometric sequence of another maximum bias (MPT's `alibi_bias_max`).
    OtherMaxBias {
        /// The maximum bias the list follows.
        bias_max: f64,
    },
    /// Each tensor-parallel rank computed the slopes for its own head count: the list is the
    /// formula for `n / ranks` heads, repeated `ranks` times.
    RankLocal {
        /// Tensor-parallel ranks.
        ranks: usize,
        /// Heads per rank.
        per_rank: usize,
        /// The formula meant.
        formula: Formula,
    },
    /// Heads `start..start+n` of the formula for `of` heads.
    Slice {
        /// Heads of the larger set.
        of: usize,
        /// The first head of the slice.
        start: usize,
        /// The formula meant.
        formula: Formula,
    },
}

impl Fault {
    /// A short name for JSON and tests.
    pub fn key(&self) -> &'static str {
        match self {
            Fault::Count { .. } => "count",
            Fault::NotFinite { .. } => "not_finite",
            Fault::FlippedSign { .. } => "flipped_sign",
            Fault::Negative { .. } => "negative",
            Fault::Zero { .. } => "zero",
            Fault::OffByOne { .. } => "off_by_one",
            Fault::PowerOfTwoFormula { .. } => "power_of_two_formula",
            Fault::Reversed { .. } => "reversed",
            Fault::Order { .. } => "order",
            Fault::ConstantFactor { .. } => "constant_factor",
            Fault::OtherMaxBias { .. } => "other_max_bias",
            Fault::RankLocal { .. } => "rank_local",
            Fault::Slice { .. } => "slice",
        }
    }
}

fn fmt_heads(heads: &[usize]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = heads.iter().take(SHOWN).map(ToString::to_string).collect();
    if heads.len() > SHOWN {
        s.push(format!("… ({} in all)", heads.len()));
    }
    let noun = if heads.len() == 1 { "head" } else { "heads" };
    format!("{noun} {}", s.join(", "))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Count {
                got,
                heads,
                matches,
            } => {
                write!(f, "wrong count: {got} slopes for {heads} heads")?;
                if let Some(m) = matches {
                    write!(f, " (the list is {m} for {got} heads)")?;
                }
                Ok(())
            }
            Fault::NotFinite { heads } => write!(
                f,
                "non-finite slopes (NaN, infinite or beyond f32) on {}",
                fmt_heads(heads)
            ),
            Fault::FlippedSign { matches } => {
                f.write_str(
                    "flipped sign: every slope is negative, so attention grows with distance",
                )?;
                if let Some(m) = matches {
                    write!(f, " (the negated list is {m})")?;
                }
                Ok(())
            }
            Fault::Negative { heads } => write!(
                f,
                "negative slopes on {}: the bias rewards distance there",
                fmt_heads(heads)
            ),
            Fault::Zero { heads } => write!(
                f,
                "zero slopes on {}: no position bias there",
                fmt_heads(heads)
            ),
            Fault::OffByOne { formula } => write!(
                f,
                "head-0 off-by-one: head 0 has slope 1 (exponents counted from 0), otherwise {formula}"
            ),
            Fault::PowerOfTwoFormula {
                denominator,
                formula,
            } => write!(
                f,
                "power-of-two formula 2^(-{b}(h+1)/{denominator}) used for a head count that is not a power of two (expected {formula}, which interleaves)",
                b = formula.max_bias()
            ),
            Fault::Reversed { formula } => write!(f, "reversed order of {formula}"),
            Fault::Order { formula } => write!(
                f,
                "the slopes of {formula} in another order (interleave order wrong)"
            ),
            Fault::ConstantFactor { factor, formula } => {
                write!(f, "constant factor: every slope is {factor:.6} x {formula}")
            }
            Fault::OtherMaxBias { bias_max } => write!(
                f,
                "geometric with max bias {bias_max}, not 8: MPT gen_slopes with alibi_bias_max {bias_max} (give --max-bias {bias_max} if the model was trained so)"
            ),
            Fault::RankLocal {
                ranks,
                per_rank,
                formula,
            } => write!(
                f,
                "sliced wrongly per tensor-parallel rank: {formula} for {per_rank} heads, repeated {ranks} times (each rank computed its own instead of taking its slice)"
            ),
            Fault::Slice { of, start, formula } => {
                write!(f, "a slice: heads {start}.. of {formula} for {of} heads")
            }
        }
    }
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The list follows a known formula.
    Match(Formula),
    /// The list shows a known fault.
    Fault(Fault),
    /// Neither: custom or learned slopes.
    Unknown,
}

impl Verdict {
    /// Whether the list follows a formula (`slopes check` exits 0).
    pub fn is_match(&self) -> bool {
        matches!(self, Verdict::Match(_))
    }
}

impl Verdict {
    /// A short form for narrow panels (the TUI's Slopes panel).
    pub fn short(&self) -> String {
        let name = |f: &Formula| match f {
            Formula::Geometric => "geometric".to_string(),
            Formula::Mpt { bias_max } => format!("MPT max bias {bias_max}"),
        };
        match self {
            Verdict::Match(f) => match f {
                Formula::Geometric => "matches geometric (paper/BLOOM)".to_string(),
                Formula::Mpt { .. } => format!("matches {}", name(f)),
            },
            Verdict::Unknown => "no known formula (custom)".to_string(),
            Verdict::Fault(fault) => match fault {
                Fault::Count { got, heads, .. } => format!("{got} slopes for {heads} heads"),
                Fault::NotFinite { .. } => "non-finite slopes".to_string(),
                Fault::FlippedSign { .. } => "flipped sign (all negative)".to_string(),
                Fault::Negative { heads } => format!("{} negative", heads.len()),
                Fault::Zero { heads } => format!("{} of them zero (no bias)", heads.len()),
                Fault::OffByOne { .. } => "head-0 off-by-one (slope 1)".to_string(),
                Fault::PowerOfTwoFormula { denominator, .. } => {
                    format!("power-of-two formula, /{denominator}")
                }
                Fault::Reversed { formula } => format!("{} reversed", name(formula)),
                Fault::Order { formula } => format!("{} reordered", name(formula)),
                Fault::ConstantFactor { factor, formula } => {
                    format!(
                        "{} x{}",
                        name(formula),
                        crate::alibi::fmt_fixed(*factor, 4, 10)
                    )
                }
                Fault::OtherMaxBias { bias_max } => format!("geometric, max bias {bias_max}"),
                Fault::RankLocal {
                    ranks, per_rank, ..
                } => format!("{per_rank}-head slopes x{ranks} ranks"),
                Fault::Slice { of, start, .. } => format!("slice {start}.. of {of} heads"),
            },
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Match(m) => write!(f, "matches {m}"),
            Verdict::Fault(fault) => fault.fmt(f),
            Verdict::Unknown => f.write_str("no known formula or fault (custom or learned slopes)"),
        }
    }
}

/// What the list is checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckOptions {
    /// The head count the list should have (the model's), when known.
    pub heads: Option<usize>,
    /// MPT's `alibi_bias_max` to accept besides 8 (from the model's config, or `--max-bias`).
    pub mpt_bias_max: Option<f64>,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= MATCH_REL_TOL * b.abs()
}

fn all_close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| close(x, y))
}

fn formulas(opts: &CheckOptions) -> Vec<Formula> {
    let mut v = vec![Formula::Geometric];
    if let Some(b) = opts.mpt_bias_max
        && b.is_finite()
        && b > 0.0
        && !close(b, PAPER_MAX_BIAS)
    {
        v.insert(0, Formula::Mpt { bias_max: b });
    }
    v
}

fn matching(slopes: &[f64], formulas: &[Formula]) -> Option<Formula> {
    formulas
        .iter()
        .copied()
        .find(|f| all_close(slopes, &f.slopes(slopes.len())))
}

/// The formula with exponents counted from 0 (head 0 gets slope 1).
fn off_by_one(n: usize, max_bias: f64) -> Vec<f64> {
    let power_of_two = |p: usize| -> Vec<f64> {
        let start = 2f64.powf(-max_bias / p as f64);
        (0..p).map(|i| start.powi(i as i32)).collect()
    };
    if n.is_power_of_two() {
        return power_of_two(n);
    }
    let closest = 1usize << n.ilog2();
    let mut v = power_of_two(closest);
    v.extend(
        power_of_two(2 * closest)
            .into_iter()
            .step_by(2)
            .take(n - closest),
    );
    v
}

/// The maximum bias `b` for which the list is the geometric sequence `geometric_slopes(n, b)`,
/// read off head 0 and checked on every head.
pub fn infer_max_bias(slopes: &[f64]) -> Option<f64> {
    let n = slopes.len();
    let first = *slopes.first()?;
    if !(first > 0.0 && first < 1.0) {
        return None;
    }
    let closest = (1usize << n.ilog2()) as f64;
    let b = -first.log2() * closest;
    // Snap to a round value when within tolerance, so messages read `4`, not `3.9999999`.
    let rounded = (b * 1e6).round() / 1e6;
    let b = if close(rounded, b) { rounded } else { b };
    all_close(slopes, &geometric_slopes(n, b)).then_some(b)
}

/// Checks a slope list against the known formulas and, failing that, the known faults.
pub fn check(slopes: &[f64], opts: &CheckOptions) -> Verdict {
    let forms = formulas(opts);
    let n = slopes.len();
    if let Some(heads) = opts.heads
        && heads != n
    {
        return Verdict::Fault(Fault::Count {
            got: n,
            heads,
            matches: matching(slopes, &forms),
        });
    }
    if n == 0 {
        return Verdict::Fault(Fault::Count {
            got: 0,
            heads: opts.heads.unwrap_or(0),
            matches: None,
        });
    }
    let heads_where = |pred: &dyn Fn(f64) -> bool| -> Vec<usize> {
        (0..n).filter(|&h| pred(slopes[h])).collect()
    };
    let not_finite = heads_where(&|m| !m.is_finite() || m.abs() > super::MAX_SLOPE);
    if !not_finite.is_empty() {
        return Verdict::Fault(Fault::NotFinite { heads: not_finite });
    }
    let negative = heads_where(&|m| m < 0.0);
    if negative.len() == n {
        let negated: Vec<f64> = slopes.iter().map(|m| -m).collect();
        let matches = matching(&negated, &forms)
            .or_else(|| infer_max_bias(&negated).map(|bias_max| Formula::Mpt { bias_max }));
        return Verdict::Fault(Fault::FlippedSign { matches });
    }
    if !negative.is_empty() {
        return Verdict::Fault(Fault::Negative { heads: negative });
    }
    let zero = heads_where(&|m| m == 0.0);
    if !zero.is_empty() {
        return Verdict::Fault(Fault::Zero { heads: zero });
    }
    if let Some(m) = matching(slopes, &forms) {
        return Verdict::Match(m);
    }
    positive_faults(slopes, &forms).map_or(Verdict::Unknown, Verdict::Fault)
}

/// The faults of a list of positive, finite slopes that follows no formula.
fn positive_faults(slopes: &[f64], forms: &[Formula]) -> Option<Fault> {
    let n = slopes.len();
    for &formula in forms {
        let expected = formula.slopes(n);
        let reversed: Vec<f64> = expected.iter().rev().copied().collect();
        if n > 1 && all_close(slopes, &reversed) {
            return Some(Fault::Reversed { formula });
        }
        if all_close(slopes, &off_by_one(n, formula.max_bias())) {
            return Some(Fault::OffByOne { formula });
        }
        if !n.is_power_of_two() {
            for denominator in [n, n.next_power_of_two()] {
                let b = formula.max_bias();
                let plain: Vec<f64> = (1..=n)
                    .map(|i| 2f64.powf(-b * i as f64 / denominator as f64))
                    .collect();
                if all_close(slopes, &plain) {
                    return Some(Fault::PowerOfTwoFormula {
                        denominator,
                        formula,
                    });
                }
            }
        }
        let mut sorted = slopes.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut sorted_expected = expected.clone();
        sorted_expected.sort_by(f64::total_cmp);
        if all_close(&sorted, &sorted_expected) {
            return Some(Fault::Order { formula });
        }
        let factor = slopes[0] / expected[0];
        let scaled: Vec<f64> = expected.iter().map(|m| m * factor).collect();
        if all_close(slopes, &scaled) {
            return Some(Fault::ConstantFactor { factor, formula });
        }
        for ranks in (2..=n).filter(|r| n.is_multiple_of(*r)) {
            let local = formula.slopes(n / ranks);
            if slopes.chunks(n / ranks).all(|c| all_close(c, &local)) {
                return Some(Fault::RankLocal {
                    ranks,
                    per_rank: n / ranks,
                    formula,
                });
            }
        }
    }
    if let Some(bias_max) = infer_max_bias(slopes) {
        return Some(Fault::OtherMaxBias { bias_max });
    }
    for &formula in forms {
        if let Some(fault) = find_slice(slopes, formula) {
            return Some(fault);
        }
    }
    None
}

/// Heads `start..start+n` of the formula for a larger head count.
fn find_slice(slopes: &[f64], formula: Formula) -> Option<Fault> {
    let n = slopes.len();
    let largest = (n * MAX_SLICE_FACTOR).min(MAX_SLICE_HEADS);
    for of in n + 1..=largest {
        let all = formula.slopes(of);
        for start in 0..=of - n {
            if close(slopes[0], all[start]) && all_close(slopes, &all[start..start + n]) {
                return Some(Fault::Slice { of, start, formula });
            }
        }
    }
    None
}
