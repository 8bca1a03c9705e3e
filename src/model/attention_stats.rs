//! Attention statistics per (layer, head), accumulated inside blocked attention from each query
//! block's probabilities, so no `len x len` map is ever held.
//!
//! For query `i` of a window (0-based position inside the window) with attention `p_ij` on the
//! keys `j <= i`: mean distance `sum_j p_ij (i - j)`, entropy `-sum_j p_ij ln p_ij` (nats),
//! normalised entropy `entropy / ln(i + 1)` (queries `i >= 1`), the 90 % mass distance (smallest
//! `d` with `sum_{j >= i-d} p_ij >= 0.9`), the sink mass `sum_{j < 4} p_ij` (queries `i >= 16`),
//! and the attention by distance in log-spaced bins (`alibi::log_bin`). Sums run over every query
//! of every window in f64 (queries first, then windows: each query weighs the same), so the
//! means are means over queries. The definitions and bins are shared with the ALiBi prior in
//! `alibi::prior`.

use crate::alibi::prior::{MASS_THRESHOLD, SINK_MIN_QUERY, SINK_TOKENS, log_bin, log_bin_range};
use candle_core::{DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Running sums of one head's statistics over queries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadSums {
    /// Queries added.
    pub queries: u64,
    /// Sum of mean distances, tokens.
    pub mean_distance: f64,
    /// Sum of entropies, nats.
    pub entropy: f64,
    /// Sum of `entropy / ln(i + 1)` over queries `i >= 1`.
    pub entropy_norm: f64,
    /// Queries with `i >= 1` (those in `entropy_norm`).
    pub norm_queries: u64,
    /// Sum of 90 % mass distances, tokens.
    pub mass90_distance: f64,
    /// Sum of sink masses over queries `i >= 16`.
    pub sink_mass: f64,
    /// Queries with `i >= 16` (those in `sink_mass`).
    pub sink_queries: u64,
    /// `[k]` = sum over queries of the attention at distances in log bin `k`.
    pub profile: Vec<f64>,
    /// `[k]` = (query, distance) pairs in log bin `k` (distance `<=` query position).
    pub profile_pairs: Vec<u64>,
}

/// One head's statistics as means over queries.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMeans {
    /// Queries averaged.
    pub queries: u64,
    /// Mean distance, tokens.
    pub mean_distance: f64,
    /// Entropy, nats.
    pub entropy: f64,
    /// Entropy over `ln(i + 1)` (queries `i >= 1`); `None` without such queries.
    pub entropy_norm: Option<f64>,
    /// 90 % mass distance, tokens.
    pub mass90_distance: f64,
    /// Attention on the first four tokens (queries `i >= 16`); `None` without such queries.
    pub sink_mass: Option<f64>,
    /// `[k]` = mean attention at one distance in log bin `k` (the bin's attention over its pairs).
    pub profile: Vec<f64>,
}

impl HeadSums {
    /// Adds query `i` whose attention over keys `0..=i` is `row` (`row.len() == i + 1`).
    pub fn add_query(&mut self, i: usize, row: &[f32]) {
        debug_assert_eq!(row.len(), i + 1);
        let bins = log_bin(i) + 1;
        if self.profile.len() < bins {
            self.profile.resize(bins, 0.0);
            self.profile_pairs.resize(bins, 0);
        }
        let (mut distance, mut entropy, mut cum) = (0.0f64, 0.0f64, 0.0f64);
        let mut mass90 = None;
        // Walk outwards from the diagonal one log bin of distances at a time: the bin's keys are
        // one contiguous slice, and the 90 % mass distance is found on the way.
        for bin in 0..bins {
            let (from, to) = log_bin_range(bin);
            let to = to.min(i + 1);
            let seg = &row[i + 1 - to..=i - from]; // keys j = i+1-to ..= i-from
            let first_key = i + 1 - to;
            let (mass, key_mass, plogp) = segment_sums(seg);
            // sum p (i - j) with j = first_key + k
            distance += (i - first_key) as f64 * mass - key_mass;
            entropy -= plogp;
            self.profile[bin] += mass;
            self.profile_pairs[bin] += (to - from) as u64;
            if mass90.is_none() && cum + mass >= MASS_THRESHOLD {
                let mut c = cum;
                for (d, &p) in (from..to).zip(seg.iter().rev()) {
                    c += f64::from(p);
                    if c >= MASS_THRESHOLD {
                        mass90 = Some(d);
                        break;
                    }
                }
                mass90.get_or_insert(to - 1);
            }
            cum += mass;
        }
        self.queries += 1;
        self.mean_distance += distance;
        self.entropy += entropy;
        if i >= 1 {
            self.entropy_norm += entropy / ((i + 1) as f64).ln();
            self.norm_queries += 1;
        }
        self.mass90_distance += mass90.unwrap_or(i) as f64;
        if i >= SINK_MIN_QUERY {
            self.sink_mass += row[..SINK_TOKENS]
                .iter()
                .map(|&p| f64::from(p))
                .sum::<f64>();
            self.sink_queries += 1;
        }
    }

    /// Adds another head's sums (other windows of the same head).
    pub fn merge(&mut self, other: &Self) {
        self.queries += other.queries;
        self.mean_distance += other.mean_distance;
        self.entropy += other.entropy;
        self.entropy_norm += other.entropy_norm;
        self.norm_queries += other.norm_queries;
        self.mass90_distance += other.mass90_distance;
        self.sink_mass += other.sink_mass;
        self.sink_queries += other.sink_queries;
        if self.profile.len() < other.profile.len() {
            self.profile.resize(other.profile.len(), 0.0);
            self.profile_pairs.resize(other.profile.len(), 0);
        }
        for (k, (&a, &n)) in other.profile.iter().zip(&other.profile_pairs).enumerate() {
            self.profile[k] += a;
            self.profile_pairs[k] += n;
        }
    }

    /// The means over the queries added.
    pub fn means(&self) -> HeadMeans {
        let per = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
        let n = self.queries.max(1) as f64;
        HeadMeans {
            queries: self.queries,
            mean_distance: self.mean_distance / n,
            entropy: self.entropy / n,
            entropy_norm: per(self.entropy_norm, self.norm_queries),
            mass90_distance: self.mass90_distance / n,
            sink_mass: per(self.sink_mass, self.sink_queries),
            profile: self
                .profile
                .iter()
                .zip(&self.profile_pairs)
                .map(|(&a, &n)| a / n.max(1) as f64)
                .collect(),
        }
    }
}

/// Lanes of the per-segment sums: independent accumulators the compiler can keep in vector
/// registers.
const LANES: usize = 8;

/// `(sum p, sum p k, sum p ln p)` over a slice, `k` the index in the slice. The sums run in f32
/// lanes (a segment is at most half a window) and are returned in f64.
fn segment_sums(seg: &[f32]) -> (f64, f64, f64) {
    let (mut mass, mut key_mass, mut plogp) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut k = [0f32; LANES];
    for (l, x) in k.iter_mut().enumerate() {
        *x = l as f32;
    }
    let chunks = seg.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            let p = chunk[l];
            mass[l] += p;
            key_mass[l] += p * k[l];
            // p = 0 (masked or underflowed) contributes 0 * ln(tiny) = 0.
            plogp[l] += p * fast_ln(p.max(f32::MIN_POSITIVE));
            k[l] += LANES as f32;
        }
    }
    let base = (seg.len() - rest.len()) as f32;
    for (l, &p) in rest.iter().enumerate() {
        mass[l] += p;
        key_mass[l] += p * (base + l as f32);
        plogp[l] += p * fast_ln(p.max(f32::MIN_POSITIVE));
    }
    let total = |v: [f32; LANES]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
    (total(mass), total(key_mass), total(plogp))
}

/// Natural log of a positive normal f32, branch-free so loops over it vectorise: the exponent
/// from the bits, the mantissa moved into `[sqrt(1/2), sqrt(2))`, and `ln m = 2 atanh(s)`,
/// `s = (m - 1)/(m + 1)`, `|s| <= 0.172`, as an odd series to `s^9` (truncation below 1e-9).
/// Within a few f32 ulps of `f32::ln`, several times faster.
pub fn fast_ln(x: f32) -> f32 {
    const MANTISSA: u32 = 0x007f_ffff;
    const ONE_BITS: u32 = 0x3f80_0000;
    const EXPONENT_BIAS: i32 = 127;
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - EXPONENT_BIAS;
    let m = f32::from_bits((bits & MANTISSA) | ONE_BITS); // [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (exponent + i32::from(big)) as f32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    // Not `mul_add`: without FMA in the target features it becomes a libm call.
    e * std::f32::consts::LN_2 + series
}

/// The statistics of every (layer, head) of a model, filled by one forward pass (or merged from
/// several).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionStats {
    n_heads: usize,
    /// Layer-major: `[layer * n_heads + head]`.
    heads: Vec<HeadSums>,
}

impl AttentionStats {
    /// Empty sums for `n_layers x n_heads` heads.
    pub fn new(n_layers: usize, n_heads: usize) -> Self {
        Self {
            n_heads,
            heads: vec![HeadSums::default(); n_layers * n_heads],
        }
    }

    /// Layers covered.
    pub fn n_layers(&self) -> usize {
        self.heads.len() / self.n_heads.max(1)
    }

    /// Heads per layer.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// The sums of one head.
    pub fn head(&self, layer: usize, head: usize) -> &HeadSums {
        &self.heads[layer * self.n_heads + head]
    }

    /// The sums of every head of `layer`, by head.
    pub fn layer_mut(&mut self, layer: usize) -> &mut [HeadSums] {
        let h = self.n_heads;
        &mut self.heads[layer * h..(layer + 1) * h]
    }

    /// Adds the sums of another run over the same model (more windows).
    pub fn merge(&mut self, other: &Self) {
        if self.heads.is_empty() {
            self.clone_from(other);
            return;
        }
        for (a, b) in self.heads.iter_mut().zip(&other.heads) {
            a.merge(b);
        }
    }
}

/// Adds one block of attention probabilities `(batch, heads, q_len, keys)` for the queries
/// `q_start..q_start + q_len` to `heads` (one [`HeadSums`] per head). Rows of the batch are
/// separate windows. Reads the probabilities on the host, one pass, heads in parallel.
pub fn accumulate_block(heads: &mut [HeadSums], probs: &Tensor, q_start: usize) -> Result<()> {
    let (b, h, q_len, keys) = probs.dims4()?;
    if h != heads.len() {
        candle_core::bail!(
            "attention statistics: {h} heads in the block, {} expected",
            heads.len()
        );
    }
    if q_start + q_len > keys {
        candle_core::bail!(
            "attention statistics: queries {q_start}..{} exceed {keys} keys",
            q_start + q_len
        );
    }
    let probs = probs
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .contiguous()?;
    let (storage, layout) = probs.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("attention statistics: probabilities are not on the host");
    };
    let data = &cpu.as_slice::<f32>()?[layout.start_offset()..];
    let per_head = q_len * keys;
    heads.par_iter_mut().enumerate().for_each(|(head, sums)| {
        for window in 0..b {
            let base = (window * h + head) * per_head;
            for r in 0..q_len {
                let i = q_start + r;
                let row = &data[base + r * keys..base + r * keys + i + 1];
                sums.add_query(i, row);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_ln_matches_ln() {
        let mut x = f32::MIN_POSITIVE;
        while x < 4.0 {
            let (got, want) = (fast_ln(x), x.ln());
            assert!(
                (got - want).abs() <= 4e-7 * want.abs().max(1.0),
                "{x}: {got} vs {want}"
            );
            x *= 1.000_37;
        }
        for x in [1.0f32, 0.5, 0.999_999, 1e-20, 0.123] {
            assert!(
                (fast_ln(x) - x.ln()).abs() <= 4e-7 * x.ln().abs().max(1.0),
                "{x}"
            );
        }
    }

    #[test]
    fn hand_checked_mass90_and_sink() {
        // Query 3 over keys 0..=3 with p = [0.05, 0.05, 0.3, 0.6]: the last key holds 0.6, the last
        // two 0.9 -> mass90 = 1; sink = all four keys, but only counted from query 16.
        let mut s = HeadSums::default();
        s.add_query(3, &[0.05, 0.05, 0.3, 0.6]);
        let m = s.means();
        assert_eq!(m.mass90_distance, 1.0);
        assert!((m.mean_distance - (0.3 + 2.0 * 0.05 + 3.0 * 0.05)).abs() < 1e-6);
        assert_eq!(m.sink_mass, None);
        // Query 16 of 17 keys: 0.25 on key 0, 0.05 on key 3, 0.7 on itself.
        let mut row = vec![0.0f32; 17];
        row[0] = 0.25;
        row[3] = 0.05;
        row[16] = 0.7;
        let mut s = HeadSums::default();
        s.add_query(16, &row);
        let m = s.means();
        assert!((m.sink_mass.unwrap() - 0.3).abs() < 1e-6);
        // 0.7 at d = 0, 0.75 by d = 13 (key 3), 1.0 at d = 16 (key 0).
        assert_eq!(m.mass90_distance, 16.0);
        let entropy = -(0.25f64 * 0.25f64.ln() + 0.05 * 0.05f64.ln() + 0.7 * 0.7f64.ln());
        assert!((m.entropy - entropy).abs() < 1e-6);
        assert!((m.entropy_norm.unwrap() - entropy / 17f64.ln()).abs() < 1e-6);
        // Profile: bin 0 = d 0 (0.7), bin 4 = d 8..16 (key 3 at d 13: 0.05), bin 5 = d 16 (0.25).
        assert!((m.profile[0] - 0.7).abs() < 1e-6);
        assert!((m.profile[4] - 0.05 / 8.0).abs() < 1e-6);
        assert!((m.profile[5] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn uniform_rows_give_half_distance_and_log_entropy() {
        for i in [0usize, 1, 2, 9, 31, 100] {
            let mut s = HeadSums::default();
            let row = vec![1.0 / (i + 1) as f32; i + 1];
            s.add_query(i, &row);
            let m = s.means();
            assert!((m.mean_distance - i as f64 / 2.0).abs() < 1e-4, "i {i}");
            assert!((m.entropy - ((i + 1) as f64).ln()).abs() < 1e-5, "i {i}");
            // Uniform over i+1 keys: ceil(0.9 (i + 1)) keys hold 90 %.
            let want = (0.9 * (i + 1) as f64 - 1e-9).ceil() - 1.0;
            assert_eq!(m.mass90_distance, want, "i {i}");
        }
    }

    #[test]
    fn block_accumulation_splits_batch_and_heads() {
        // (batch 2, heads 2, 2 queries starting at 1, 3 keys).
        let p: Vec<f32> = vec![
            0.5, 0.5, 0.0, 0.2, 0.3, 0.5, // window 0, head 0: queries 1, 2
            0.0, 1.0, 0.0, 0.0, 0.0, 1.0, // window 0, head 1
            1.0, 0.0, 0.0, 1.0, 0.0, 0.0, // window 1, head 0
            0.5, 0.5, 0.0, 0.5, 0.0, 0.5, // window 1, head 1
        ];
        let t = Tensor::from_vec(p, (2, 2, 2, 3), &Device::Cpu).unwrap();
        let mut heads = vec![HeadSums::default(); 2];
        accumulate_block(&mut heads, &t, 1).unwrap();
        assert_eq!(heads[0].queries, 4);
        // head 0 distances: 0.5, 0.3 + 0.4 = 0.7, 1, 2
        assert!((heads[0].means().mean_distance - (0.5 + 0.7 + 1.0 + 2.0) / 4.0).abs() < 1e-6);
        // head 1: 0, 0, 0.5, 1
        assert!((heads[1].means().mean_distance - 1.5 / 4.0).abs() < 1e-6);
        assert!(accumulate_block(&mut heads[..1], &t, 1).is_err());
    }
}
