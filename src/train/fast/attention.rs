//! Causal attention for training, forward and backward, one sequence per task: scores are built a
//! block of queries at a time (each block sees only the keys up to its last query), the ALiBi bias
//! `m*(j-i)` (or the causal mask alone) is added on the fly, and only the log-sum-exp of each row
//! is kept. The backward recomputes each block's probabilities from it, as flash-attention's
//! backward does (Dao et al. 2022, algorithm 2), so no `(len x len)` tensor outlives a block; it
//! also returns the slopes' gradient (learned slopes).

use super::kernels::LANES;
use super::matmul::{Mat, MatMut, matmul};
use rayon::prelude::*;

/// Queries per block: small enough that a block's scores stay in the core's cache, large enough
/// for efficient products; masked key blocks past a block's last query are skipped.
pub const QUERY_BLOCK: usize = 64;

/// The shape of one layer's attention.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Positions per sequence.
    pub len: usize,
    /// Model width (`heads * head_dim`).
    pub d: usize,
    /// Heads.
    pub heads: usize,
    /// Width of a head.
    pub head_dim: usize,
}

impl AttnShape {
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Scores of queries `i0..i0+rows` against keys `0..keys` of head `h` into `s` (`rows x keys`),
/// scaled, biased and masked; then each row turned into probabilities. With `lse` given (the
/// backward) the rows are `exp(score - lse)`; otherwise they are normalised and their log-sum-exp
/// written to `lse_out`.
#[allow(clippy::too_many_arguments)]
fn probabilities(
    s: &mut [f32],
    q: Mat,
    k: Mat,
    i0: usize,
    rows: usize,
    keys: usize,
    scale: f32,
    slope: Option<f32>,
    ramp: &[f32],
    lse: Option<&[f32]>,
    lse_out: Option<&mut [f32]>,
) {
    matmul(
        MatMut::new(s, rows, keys),
        q.rows(i0, rows),
        k.rows(0, keys).t(),
        scale,
        false,
        false,
    );
    let mut lse_out = lse_out;
    super::kernels::wide(
        #[inline(always)]
        || {
            for (r, row) in s.chunks_exact_mut(keys).enumerate() {
                let i = i0 + r;
                let (live, masked) = row.split_at_mut(i + 1);
                masked.fill(0.0);
                if let Some(m) = slope {
                    // `ramp[j] = j`: an index converted per element would not vectorise.
                    let fi = i as f32;
                    for (v, &j) in live.iter_mut().zip(ramp) {
                        *v += m * (j - fi);
                    }
                }
                match lse {
                    Some(lse) => {
                        let l = lse[i];
                        for v in live.iter_mut() {
                            *v = crate::model::kernels::exp(*v - l);
                        }
                    }
                    None => {
                        let max = super::kernels::max_lanes(live);
                        let sum = super::kernels::exp_sum_lanes(live, max);
                        let inv = 1.0 / sum;
                        for v in live.iter_mut() {
                            *v *= inv;
                        }
                        if let Some(out) = lse_out.as_deref_mut() {
                            out[i] = max + sum.ln();
                        }
                    }
                }
            }
        },
    );
}

/// `[0, 1, ..., len - 1]` as floats (key positions for the ALiBi bias).
fn ramp(len: usize) -> Vec<f32> {
    (0..len).map(|j| j as f32).collect()
}

/// Forward: `y` `(batch*len, d)` from `qkv` `(batch*len, 3d)`, keeping `lse`
/// `(batch, heads, len)`. `slopes` are per head (ALiBi), `None` for the causal mask alone.
pub fn forward(y: &mut [f32], lse: &mut [f32], qkv: &[f32], slopes: Option<&[f32]>, a: AttnShape) {
    let (t, d, hd) = (a.len, a.d, a.head_dim);
    let ramp = ramp(t);
    y.par_chunks_mut(t * d)
        .zip(lse.par_chunks_mut(a.heads * t))
        .zip(qkv.par_chunks(t * 3 * d))
        .for_each(|((y, lse), qkv)| {
            let mut s = vec![0f32; QUERY_BLOCK.min(t) * t];
            for h in 0..a.heads {
                let q = Mat::strided(&qkv[h * hd..], t, hd, 3 * d);
                let k = Mat::strided(&qkv[d + h * hd..], t, hd, 3 * d);
                let v = Mat::strided(&qkv[2 * d + h * hd..], t, hd, 3 * d);
                let lse_h = &mut lse[h * t..(h + 1) * t];
                for i0 in (0..t).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(t - i0);
                    let keys = i0 + rows;
                    let s = &mut s[..rows * keys];
                    let slope = slopes.map(|m| m[h]);
                    probabilities(
                        s,
                        q,
                        k,
                        i0,
                        rows,
                        keys,
                        a.scale(),
                        slope,
                        &ramp,
                        None,
                        Some(lse_h),
                    );
                    matmul(
                        MatMut::strided(&mut y[i0 * d + h * hd..], rows, hd, d),
                        Mat::new(s, rows, keys),
                        v.rows(0, keys),
                        1.0,
                        false,
                        false,
                    );
                }
            }
        });
}

/// Backward: `dqkv` `(batch*len, 3d)` (overwritten) from `dy`, given the forward's `qkv`, `y`
/// and `lse`. Returns the gradient of the slopes (zeros without slopes).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    y: &[f32],
    lse: &[f32],
    slopes: Option<&[f32]>,
    a: AttnShape,
) -> Vec<f32> {
    let (t, d, hd) = (a.len, a.d, a.head_dim);
    let scale = a.scale();
    let ramp = ramp(t);
    let partials: Vec<Vec<f32>> = dqkv
        .par_chunks_mut(t * 3 * d)
        .zip(dy.par_chunks(t * d))
        .zip(qkv.par_chunks(t * 3 * d))
        .zip(y.par_chunks(t * d))
        .zip(lse.par_chunks(a.heads * t))
        .map(|((((dqkv, dy), qkv), y), lse)| {
            let block = QUERY_BLOCK.min(t);
            let mut p = vec![0f32; block * t];
            let mut dp = vec![0f32; block * t];
            let mut dq = vec![0f32; t * hd];
            let mut dk = vec![0f32; t * hd];
            let mut dv = vec![0f32; t * hd];
            // delta[h][i] = dO_i . O_i for head h, all heads in one pass over the rows.
            let mut all_delta = vec![0f32; a.heads * t];
            super::kernels::wide(
                #[inline(always)]
                || {
                    for (i, (o, g)) in y.chunks_exact(d).zip(dy.chunks_exact(d)).enumerate() {
                        for (h, (o, g)) in o.chunks_exact(hd).zip(g.chunks_exact(hd)).enumerate() {
                            all_delta[h * t + i] = super::kernels::dot_lanes(o, g);
                        }
                    }
                },
            );
            let mut dslopes = vec![0f32; a.heads];
            for h in 0..a.heads {
                let q = Mat::strided(&qkv[h * hd..], t, hd, 3 * d);
                let k = Mat::strided(&qkv[d + h * hd..], t, hd, 3 * d);
                let v = Mat::strided(&qkv[2 * d + h * hd..], t, hd, 3 * d);
                let d_out = Mat::strided(&dy[h * hd..], t, hd, d);
                let lse_h = &lse[h * t..(h + 1) * t];
                let slope = slopes.map(|m| m[h]);
                let delta = &all_delta[h * t..(h + 1) * t];
                dk.fill(0.0);
                dv.fill(0.0);
                for i0 in (0..t).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(t - i0);
                    let keys = i0 + rows;
                    let p = &mut p[..rows * keys];
                    let dp = &mut dp[..rows * keys];
                    probabilities(
                        p,
                        q,
                        k,
                        i0,
                        rows,
                        keys,
                        scale,
                        slope,
                        &ramp,
                        Some(lse_h),
                        None,
                    );
                    // dP = dO V^T
                    matmul(
                        MatMut::new(dp, rows, keys),
                        d_out.rows(i0, rows),
                        v.rows(0, keys).t(),
                        1.0,
                        false,
                        false,
                    );
                    // dV += P^T dO
                    matmul(
                        MatMut::new(&mut dv[..keys * hd], keys, hd),
                        Mat::new(p, rows, keys).t(),
                        d_out.rows(i0, rows),
                        1.0,
                        true,
                        false,
                    );
                    // dS = P * (dP - delta), in place in dp; the slope's gradient sums dS*(j-i).
                    let mut dm = 0f32;
                    super::kernels::wide(
                        #[inline(always)]
                        || {
                            for (r, (ds, p)) in dp
                                .chunks_exact_mut(keys)
                                .zip(p.chunks_exact(keys))
                                .enumerate()
                            {
                                let i = i0 + r;
                                let dl = delta[i];
                                // The slope's gradient in lanes (see `kernels::LANES`).
                                let mut acc = [0f32; LANES];
                                let mut dsc = ds.chunks_exact_mut(LANES);
                                let mut pc = p.chunks_exact(LANES);
                                let mut rc = ramp.chunks_exact(LANES);
                                let fi = i as f32;
                                for ((ds, p), js) in (&mut dsc).zip(&mut pc).zip(&mut rc) {
                                    for (((ds, p), a), &j) in
                                        ds.iter_mut().zip(p).zip(acc.iter_mut()).zip(js)
                                    {
                                        *ds = p * (*ds - dl);
                                        *a += *ds * (j - fi);
                                    }
                                }
                                let mut tail = 0f32;
                                let done = keys - keys % LANES;
                                for ((ds, p), &j) in dsc
                                    .into_remainder()
                                    .iter_mut()
                                    .zip(pc.remainder())
                                    .zip(&ramp[done..])
                                {
                                    *ds = p * (*ds - dl);
                                    tail += *ds * (j - fi);
                                }
                                dm += tail + acc.iter().sum::<f32>();
                            }
                        },
                    );
                    dslopes[h] += dm;
                    // dQ = scale * dS K ; dK += scale * dS^T Q
                    matmul(
                        MatMut::new(&mut dq[i0 * hd..keys * hd], rows, hd),
                        Mat::new(dp, rows, keys),
                        k.rows(0, keys),
                        scale,
                        false,
                        false,
                    );
                    matmul(
                        MatMut::new(&mut dk[..keys * hd], keys, hd),
                        Mat::new(dp, rows, keys).t(),
                        q.rows(i0, rows),
                        scale,
                        true,
                        false,
                    );
                }
                for (i, row) in dqkv.chunks_exact_mut(3 * d).enumerate() {
                    let src = i * hd..(i + 1) * hd;
                    row[h * hd..(h + 1) * hd].copy_from_slice(&dq[src.clone()]);
                    row[d + h * hd..d + (h + 1) * hd].copy_from_slice(&dk[src.clone()]);
                    row[2 * d + h * hd..2 * d + (h + 1) * hd].copy_from_slice(&dv[src]);
                }
            }
            dslopes
        })
        .collect();
    let mut out = vec![0f32; a.heads];
    for p in &partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
    out
}
