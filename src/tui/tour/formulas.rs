//! The formulas the shipped tour states, each beside the arithmetic it claims, so a test can hold
//! the text to the code that computes the numbers (`alibi::paper_slopes`, `alibi::bias`,
//! `alibi::reach`). A tour test checks that every formula in `assets/tour.md` is one of these,
//! and that none of the slips common in public tutorials (`2^(−8/n)` for head n) appears.

/// The paper's slopes for a power-of-two head count `H`, head `h` counted from 1.
pub const SLOPES: &str = "m_h = 2^(−8h/H)";
/// Heads counted from 1 in [`SLOPES`].
pub const SLOPES_RANGE: &str = "h = 1..H";
/// A head count that is not a power of two: the rule for `P = 2^⌊log₂H⌋`, then odd-numbered
/// slopes of the rule for `2P`.
pub const SLOPES_OTHER: &str = "P = 2^⌊log₂H⌋";
/// The bias a query at `i` adds to the score of key `j`.
pub const BIAS: &str = "−m·(i−j)";
/// The factor the bias alone puts on a key's attention weight (the bias panel's colour).
pub const FACTOR: &str = "e^(−m·(i−j))";
/// A head's reach: where the bias alone divides attention by 100.
pub const REACH: &str = "reach = ln(100)/m";

/// Every formula a tour may state, for the test that reads `assets/tour.md`.
pub const FORMULAS: &[&str] = &[SLOPES, SLOPES_RANGE, SLOPES_OTHER, BIAS, FACTOR, REACH];

/// Slips seen in public explanations of ALiBi; the shipped tour must not contain them.
pub const KNOWN_SLIPS: &[&str] = &[
    "2^(−8/n)",
    "2^(-8/n)",
    "2^(−8/h)",
    "2^(-8/h)",
    "2^(−8h/n)",
    "m·(j−i)",
    "+m·(i−j)",
    "ln(2)/m",
];

/// [`SLOPES`] as written: `2^(−8h/H)` for head `h` (from 1) of `heads`.
pub fn slope_by_formula(h: usize, heads: usize) -> f64 {
    2f64.powf(-8.0 * h as f64 / heads as f64)
}

/// The slopes the tour's words give for any head count: [`SLOPES`] when `H` is a power of two;
/// otherwise [`SLOPES`] with `P` = [`SLOPES_OTHER`] for the first `P` heads, then the odd-numbered
/// (`h = 1, 3, 5, …`) slopes of [`SLOPES`] with `2P` heads for the rest.
pub fn slopes_by_rule(heads: usize) -> Vec<f64> {
    if heads == 0 {
        return Vec::new();
    }
    if heads.is_power_of_two() {
        return (1..=heads).map(|h| slope_by_formula(h, heads)).collect();
    }
    let p = 1usize << heads.ilog2();
    (1..=p)
        .map(|h| slope_by_formula(h, p))
        .chain(
            (1..=2 * p)
                .step_by(2)
                .map(|h| slope_by_formula(h, 2 * p))
                .take(heads - p),
        )
        .collect()
}

/// [`BIAS`] as written.
pub fn bias_by_formula(m: f64, i: usize, j: usize) -> f64 {
    -m * (i as f64 - j as f64)
}

/// [`REACH`] as written.
pub fn reach_by_formula(m: f64) -> f64 {
    100f64.ln() / m
}

/// The slip "m = 2^(−8/n) for head n" (what some tutorials write).
pub fn slip_slope(n: usize) -> f64 {
    2f64.powf(-8.0 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alibi;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs())
    }

    #[test]
    fn the_slope_formula_is_the_papers_for_powers_of_two() {
        for heads in [1, 2, 4, 8, 16, 32, 64] {
            let by_formula: Vec<f64> = (1..=heads).map(|h| slope_by_formula(h, heads)).collect();
            assert!(
                close(&by_formula, &alibi::paper_slopes(heads)),
                "{heads} heads"
            );
        }
    }

    #[test]
    fn the_rule_in_words_gives_the_papers_slopes_for_other_head_counts() {
        for heads in [3, 5, 6, 7, 12, 20, 24, 40, 96, 112] {
            assert!(
                close(&slopes_by_rule(heads), &alibi::paper_slopes(heads)),
                "{heads} heads"
            );
            // The power-of-two formula alone is wrong there: a card must not say only that.
            let naive: Vec<f64> = (1..=heads).map(|h| slope_by_formula(h, heads)).collect();
            assert!(!close(&naive, &alibi::paper_slopes(heads)), "{heads} heads");
        }
    }

    #[test]
    fn the_common_slip_is_not_the_paper() {
        // "m = 2^(−8/n) for head n" matches the paper only for n = 1 of a one-head model.
        let paper = alibi::paper_slopes(8);
        assert!((slip_slope(1) - paper[0]).abs() > 1e-3);
        assert!(
            (1..=8)
                .filter(|&n| (slip_slope(n) - paper[n - 1]).abs() < 1e-12)
                .count()
                <= 1
        );
    }

    #[test]
    fn bias_and_reach_are_the_codes() {
        for m in [0.5, 0.0625, 1.0 / 256.0] {
            for (i, j) in [(0, 0), (10, 3), (1000, 1)] {
                assert_eq!(bias_by_formula(m, i, j), alibi::bias(m, i, j));
            }
            assert!((reach_by_formula(m) - alibi::reach(m)).abs() < 1e-9);
            // The factor e^bias at the reach is 1/100.
            assert!((alibi::bias(m, 0, 0).exp() - 1.0).abs() < 1e-12);
            assert!(((-m * alibi::reach(m)).exp() - 0.01).abs() < 1e-12);
        }
    }
}
