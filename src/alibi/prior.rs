//! The ALiBi prior: the attention a head pays from its bias alone, `softmax_j(-m (i - j))` over
//! the keys `j <= i`, and the statistics of it that the attention statistics compare against.
//!
//! With `r = e^(-m)` the prior of query `i` is a geometric distribution over the distance
//! `d = i - j`, truncated at `i`: `p(d) = r^d / Z_i`, `Z_i = sum_{d <= i} r^d`. So
//! `mean = S_i / Z_i` (`S_i = sum d r^d`), `entropy = m * mean + ln Z_i`, and the 90 % mass distance
//! is the smallest `d` with `Z_d >= 0.9 Z_i`. Running sums over `i` give the averages over all
//! queries of a window in O(length). Slope 0 is uniform attention. Slopes are expected `>= 0`
//! (a negative slope favours distant keys and overflows for long inputs).
//!
//! The constants and log-spaced bins here define the statistics for the model too
//! (`model::attention_stats`), so content and prior are measured the same way.

/// The mass fraction of `mass90_distance`: the smallest distance holding 90 % of the attention.
pub const MASS_FRACTION: f64 = 0.9;
/// The cumulative mass at which [`MASS_FRACTION`] counts as reached: a little below it, so exact
/// ties (uniform attention over ten keys: nine of them hold 0.9) do not hinge on rounding.
pub const MASS_THRESHOLD: f64 = MASS_FRACTION - 1e-9;
/// `sink_mass` is the attention on this many first tokens of the window.
pub const SINK_TOKENS: usize = 4;
/// `sink_mass` counts only queries at this position or later (earlier ones have few other keys).
pub const SINK_MIN_QUERY: usize = 16;

/// The log-spaced bin of a distance or position `x`: bin 0 is `[0, 1)`, bin `k >= 1` is
/// `[2^(k-1), 2^k)`; so `[0,1), [1,2), [2,4), [4,8), ...`.
pub fn log_bin(x: usize) -> usize {
    if x == 0 { 0 } else { x.ilog2() as usize + 1 }
}

/// The half-open range `[from, to)` of log bin `bin` (see [`log_bin`]).
pub fn log_bin_range(bin: usize) -> (usize, usize) {
    if bin == 0 {
        (0, 1)
    } else {
        (1 << (bin - 1), 1 << bin)
    }
}

/// How many log bins cover `0..len` (the distances of a window of `len` tokens).
pub fn log_bins(len: usize) -> usize {
    if len == 0 { 0 } else { log_bin(len - 1) + 1 }
}

/// The prior's statistics for one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorQuery {
    /// `sum_j p_ij (i - j)`, tokens.
    pub mean_distance: f64,
    /// `-sum_j p_ij ln p_ij`, nats.
    pub entropy: f64,
    /// Smallest `d` with `sum_{j >= i-d} p_ij >= 0.9`, tokens.
    pub mass90_distance: usize,
    /// `sum_{j < 4} p_ij`, the attention on the first [`SINK_TOKENS`] keys.
    pub sink_mass: f64,
}

/// The prior of query `i` for slope `m`, in O(i): the distance weights `r^d` are summed directly.
pub fn prior_query(slope: f64, i: usize) -> PriorQuery {
    let r = (-slope).exp();
    let mut weights = Vec::with_capacity(i + 1);
    let mut w = 1.0;
    for _ in 0..=i {
        weights.push(w);
        w *= r;
    }
    let z: f64 = weights.iter().sum();
    let s: f64 = weights.iter().enumerate().map(|(d, w)| d as f64 * w).sum();
    let mean = s / z;
    let mut cum = 0.0;
    let mut mass90 = i;
    for (d, w) in weights.iter().enumerate() {
        cum += w / z;
        if cum >= MASS_THRESHOLD {
            mass90 = d;
            break;
        }
    }
    let sink: f64 = weights[i + 1 - SINK_TOKENS.min(i + 1)..]
        .iter()
        .sum::<f64>()
        / z;
    PriorQuery {
        mean_distance: mean,
        entropy: slope * mean + z.ln(),
        mass90_distance: mass90,
        sink_mass: sink,
    }
}

/// The prior's statistics averaged over the queries `0..len` of a window (each query weighs the
/// same; `entropy_norm` over queries `i >= 1`, `sink_mass` over queries `i >=` [`SINK_MIN_QUERY`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorMeans {
    /// Queries averaged (`len`).
    pub queries: usize,
    /// Mean of [`PriorQuery::mean_distance`], tokens.
    pub mean_distance: f64,
    /// Mean entropy, nats.
    pub entropy: f64,
    /// Mean of `entropy / ln(i + 1)` over queries `i >= 1`; `None` when `len < 2`.
    pub entropy_norm: Option<f64>,
    /// Mean 90 % mass distance, tokens.
    pub mass90_distance: f64,
    /// Mean sink mass over queries `i >= 16`; `None` when there are none.
    pub sink_mass: Option<f64>,
}

/// The prior averaged over the queries of a window of `len` tokens, in O(len) with running sums.
pub fn prior_means(slope: f64, len: usize) -> PriorMeans {
    let r = (-slope).exp();
    // pow[d] = r^d, z[d] = sum_{k <= d} r^k (the normaliser of query d, and the prefix mass).
    let mut pow = Vec::with_capacity(len);
    let mut z = Vec::with_capacity(len);
    let (mut w, mut zi, mut si) = (1.0, 0.0, 0.0);
    let (mut mean_sum, mut entropy_sum, mut norm_sum, mut mass_sum, mut sink_sum) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut mass90 = 0;
    for i in 0..len {
        pow.push(w);
        zi += w;
        si += i as f64 * w;
        z.push(zi);
        w *= r;
        let mean = si / zi;
        let entropy = slope * mean + zi.ln();
        mean_sum += mean;
        entropy_sum += entropy;
        if i >= 1 {
            norm_sum += entropy / ((i + 1) as f64).ln();
        }
        // Z_i grows with i, so the 90 % distance never shrinks: one pointer over all queries.
        while z[mass90] / zi < MASS_THRESHOLD && mass90 < i {
            mass90 += 1;
        }
        mass_sum += mass90 as f64;
        if i >= SINK_MIN_QUERY {
            sink_sum += pow[i + 1 - SINK_TOKENS..=i].iter().sum::<f64>() / zi;
        }
    }
    let n = len.max(1) as f64;
    PriorMeans {
        queries: len,
        mean_distance: mean_sum / n,
        entropy: entropy_sum / n,
        entropy_norm: (len >= 2).then(|| norm_sum / (len - 1) as f64),
        mass90_distance: mass_sum / n,
        sink_mass: (len > SINK_MIN_QUERY).then(|| sink_sum / (len - SINK_MIN_QUERY) as f64),
    }
}

/// The prior's attention by distance for a window of `len` tokens: for each log bin (see
/// [`log_bin`]) the mean of `p_i(d)` over every pair (query `i`, distance `d` in the bin) with
/// `d <= i < len`. O(len x bins).
pub fn prior_profile(slope: f64, len: usize) -> Vec<f64> {
    let r = (-slope).exp();
    let mut z = Vec::with_capacity(len);
    let (mut w, mut zi) = (1.0, 0.0);
    for _ in 0..len {
        zi += w;
        z.push(zi);
        w *= r;
    }
    (0..log_bins(len))
        .map(|bin| {
            let (from, to) = log_bin_range(bin);
            // `inside` = sum of r^d for d in [from, min(to - 1, i)], grown as i enters the bin
            // (summed directly, not as a difference of prefix sums, so far bins keep their digits).
            let mut inside = 0.0;
            let mut w = r.powi(from as i32);
            let (mut sum, mut pairs) = (0.0, 0usize);
            for i in from..len {
                if i < to {
                    inside += w;
                    w *= r;
                }
                sum += inside / z[i];
                pairs += i.min(to - 1) - from + 1;
            }
            sum / pairs.max(1) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alibi::{bias, softmax};

    /// The statistics of the brute-force prior row `softmax_j(bias(m, i, j))`.
    fn brute(slope: f64, i: usize) -> (f64, f64, usize, f64) {
        let row: Vec<f64> = (0..=i).map(|j| bias(slope, i, j)).collect();
        let p = softmax(&row);
        let mean = (0..=i).map(|j| p[j] * (i - j) as f64).sum();
        let entropy = -p
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * x.ln())
            .sum::<f64>();
        let mut cum = 0.0;
        let mut mass = i;
        for d in 0..=i {
            cum += p[i - d];
            if cum >= MASS_THRESHOLD {
                mass = d;
                break;
            }
        }
        let sink = p.iter().take(SINK_TOKENS).sum();
        (mean, entropy, mass, sink)
    }

    fn near(a: f64, b: f64, what: &str) {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    }

    const SLOPES: [f64; 6] = [0.0, 1.0 / 256.0, 1.0 / 16.0, 0.25, 0.5, 3.0];

    #[test]
    fn bins_are_log_spaced() {
        let edges: Vec<_> = (0..5).map(log_bin_range).collect();
        assert_eq!(edges, [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16)]);
        for x in 0..300 {
            let (a, b) = log_bin_range(log_bin(x));
            assert!(a <= x && x < b, "{x}");
        }
        assert_eq!(log_bins(0), 0);
        assert_eq!(log_bins(1), 1);
        assert_eq!(log_bins(2), 2);
        assert_eq!(log_bins(2048), 12);
        assert_eq!(log_bins(2049), 13);
    }

    #[test]
    fn prior_query_matches_brute_force() {
        for m in SLOPES {
            for i in [0, 1, 2, 3, 7, 16, 100, 700] {
                let p = prior_query(m, i);
                let (mean, entropy, mass, sink) = brute(m, i);
                near(p.mean_distance, mean, "mean");
                near(p.entropy, entropy, "entropy");
                assert_eq!(p.mass90_distance, mass, "m {m} i {i}");
                near(p.sink_mass, sink, "sink");
            }
        }
    }

    #[test]
    fn zero_slope_is_uniform() {
        for i in [0, 1, 5, 99] {
            let p = prior_query(0.0, i);
            near(p.mean_distance, i as f64 / 2.0, "mean");
            near(p.entropy, ((i + 1) as f64).ln(), "entropy");
        }
        let means = prior_means(0.0, 10);
        near(means.mean_distance, 4.5 / 2.0, "mean over queries");
        near(means.entropy_norm.unwrap(), 1.0, "entropy_norm");
        assert_eq!(means.sink_mass, None);
        // Uniform: every distance d <= i gets 1/(i+1); bin [0,1) averages 1/(i+1) over all i.
        let expected: f64 = (0..10).map(|i| 1.0 / f64::from(i + 1)).sum::<f64>() / 10.0;
        near(prior_profile(0.0, 10)[0], expected, "profile bin 0");
    }

    #[test]
    fn prior_means_average_the_brute_force_queries() {
        for m in SLOPES {
            for len in [1, 2, 17, 40, 300] {
                let q: Vec<_> = (0..len).map(|i| brute(m, i)).collect();
                let n = len as f64;
                let got = prior_means(m, len);
                assert_eq!(got.queries, len);
                near(
                    got.mean_distance,
                    q.iter().map(|x| x.0).sum::<f64>() / n,
                    "mean",
                );
                near(
                    got.entropy,
                    q.iter().map(|x| x.1).sum::<f64>() / n,
                    "entropy",
                );
                let norm = (1..len)
                    .map(|i| q[i].1 / ((i + 1) as f64).ln())
                    .sum::<f64>()
                    / (len as f64 - 1.0);
                match got.entropy_norm {
                    Some(x) => near(x, norm, "entropy_norm"),
                    None => assert_eq!(len, 1),
                }
                let mass = q.iter().map(|x| x.2 as f64).sum::<f64>() / n;
                near(
                    got.mass90_distance,
                    mass,
                    &format!("mass90 m {m} len {len}"),
                );
                let sink: Vec<f64> = q.iter().skip(SINK_MIN_QUERY).map(|x| x.3).collect();
                match got.sink_mass {
                    Some(x) => near(x, sink.iter().sum::<f64>() / sink.len() as f64, "sink"),
                    None => assert!(sink.is_empty()),
                }
            }
        }
    }

    #[test]
    fn prior_profile_matches_brute_force() {
        for m in SLOPES {
            let len = 70;
            let rows: Vec<Vec<f64>> = (0..len)
                .map(|i| softmax(&(0..=i).map(|j| bias(m, i, j)).collect::<Vec<_>>()))
                .collect();
            let got = prior_profile(m, len);
            assert_eq!(got.len(), log_bins(len));
            for (bin, &x) in got.iter().enumerate() {
                let (from, to) = log_bin_range(bin);
                let mut sum = 0.0;
                let mut pairs = 0;
                for (i, row) in rows.iter().enumerate() {
                    for d in from..to.min(i + 1) {
                        sum += row[i - d];
                        pairs += 1;
                    }
                }
                near(x, sum / f64::from(pairs), &format!("m {m} bin {bin}"));
            }
        }
    }
}
