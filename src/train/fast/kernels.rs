//! Row kernels of the fast trainer, forward and backward: LayerNorm with saved mean and inverse
//! deviation, bias plus tanh GELU, column sums (bias gradients), rotary rotation, and the
//! softmax/cross-entropy of one slice of logits. After llm.c's `layernorm_forward/backward` and
//! `gelu_forward/backward`.
//!
//! Every reduction across rows sums fixed chunks of rows in a fixed order, whatever the number of
//! threads or how rayon schedules them, so a step is bit-for-bit repeatable. Each kernel runs in
//! parallel chunks compiled for AVX-512 or AVX2 through `pulp` (as `model::kernels` does).
#![allow(clippy::inline_always)]

use crate::model::kernels::exp;
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Rows per chunk of a cross-row reduction (fixed, so sums do not depend on the thread count).
pub const REDUCE_ROWS: usize = 64;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF: f32 = 0.044_715;

/// Runs `f` compiled with the widest instruction set the CPU has (what `f` inlines is
/// vectorised with it).
struct Wide<F>(F);

impl<R, F: FnOnce() -> R> WithSimd for Wide<F> {
    type Output = R;
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> R {
        (self.0)()
    }
}

/// Runs `f` with AVX-512 or AVX2 enabled. Pass an `#[inline(always)]` closure: only code inlined
/// into the dispatched function is compiled for the wider instruction set (without it, the
/// polynomial `exp` called libm's `floorf` per element: 9% of a training step).
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    Arch::new().dispatch(Wide(f))
}

/// Lanes of the vectorised reductions below: a float sum or max carried in one accumulator is a
/// chain the compiler must keep in order (no vector instructions); sixteen independent
/// accumulators, combined at the end, vectorise (one AVX-512 register). The order is fixed, so
/// results stay bit-for-bit repeatable.
pub const LANES: usize = 16;

/// The maximum of `xs` (`-inf` when empty), vectorised.
#[inline(always)]
pub fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in chunks.remainder().iter().chain(&acc) {
        m = if x > m { x } else { m };
    }
    m
}

/// Replaces each `x` of `xs` by `exp(x - shift)` and returns their sum, vectorised.
#[inline(always)]
pub fn exp_sum_lanes(xs: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp(*x - shift);
            *a += *x;
        }
    }
    let mut sum = 0f32;
    for x in chunks.into_remainder() {
        *x = exp(*x - shift);
        sum += *x;
    }
    sum + acc.iter().sum::<f32>()
}

/// The dot product of `a` and `b` (same length), vectorised.
#[inline(always)]
pub fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    tail + acc.iter().sum::<f32>()
}

/// Sums the per-chunk partial vectors of `width` in chunk order into `out` (`+=`).
fn add_partials(out: &mut [f32], partials: &[Vec<f32>]) {
    for p in partials {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// LayerNorm of each row of `x` (rows of `weight.len()`): `out = (x - mean) * rstd * w + b`,
/// saving `mean` and `rstd` per row.
pub fn layer_norm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    eps: f32,
) {
    let c = weight.len();
    out.par_chunks_mut(REDUCE_ROWS * c)
        .zip(x.par_chunks(REDUCE_ROWS * c))
        .zip(mean.par_chunks_mut(REDUCE_ROWS))
        .zip(rstd.par_chunks_mut(REDUCE_ROWS))
        .for_each(|(((out, x), mean), rstd)| {
            wide(
                #[inline(always)]
                || {
                    for (((o, x), m), r) in out
                        .chunks_exact_mut(c)
                        .zip(x.chunks_exact(c))
                        .zip(mean.iter_mut())
                        .zip(rstd.iter_mut())
                    {
                        let mu = x.iter().sum::<f32>() / c as f32;
                        let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
                        let rs = 1.0 / (var + eps).sqrt();
                        *m = mu;
                        *r = rs;
                        match bias {
                            Some(b) => {
                                for (((o, x), w), b) in o.iter_mut().zip(x).zip(weight).zip(b) {
                                    *o = (x - mu) * rs * w + b;
                                }
                            }
                            None => {
                                for ((o, x), w) in o.iter_mut().zip(x).zip(weight) {
                                    *o = (x - mu) * rs * w;
                                }
                            }
                        }
                    }
                },
            );
        });
}

/// LayerNorm backward: `dx += dLN/dx^T dout`, `dweight += sum(dout * norm)`, `dbias += sum(dout)`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dx: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    weight: &[f32],
) {
    let c = weight.len();
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(REDUCE_ROWS * c)
        .zip(dout.par_chunks(REDUCE_ROWS * c))
        .zip(x.par_chunks(REDUCE_ROWS * c))
        .zip(mean.par_chunks(REDUCE_ROWS))
        .zip(rstd.par_chunks(REDUCE_ROWS))
        .map(|((((dx, dout), x), mean), rstd)| {
            wide(
                #[inline(always)]
                || {
                    // [dweight | dbias] of this chunk.
                    let mut acc = vec![0f32; 2 * c];
                    let (dw, db) = acc.split_at_mut(c);
                    for ((((dx, dout), x), &mu), &rs) in dx
                        .chunks_exact_mut(c)
                        .zip(dout.chunks_exact(c))
                        .zip(x.chunks_exact(c))
                        .zip(mean)
                        .zip(rstd)
                    {
                        let mut dnorm_mean = 0f32;
                        let mut dnorm_norm_mean = 0f32;
                        for (((d, x), w), (dw, db)) in dout
                            .iter()
                            .zip(x)
                            .zip(weight)
                            .zip(dw.iter_mut().zip(db.iter_mut()))
                        {
                            let norm = (x - mu) * rs;
                            let dnorm = d * w;
                            dnorm_mean += dnorm;
                            dnorm_norm_mean += dnorm * norm;
                            *dw += d * norm;
                            *db += d;
                        }
                        dnorm_mean /= c as f32;
                        dnorm_norm_mean /= c as f32;
                        for (((dx, d), x), w) in dx.iter_mut().zip(dout).zip(x).zip(weight) {
                            let norm = (x - mu) * rs;
                            *dx += (d * w - dnorm_mean - norm * dnorm_norm_mean) * rs;
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    for p in &partials {
        for (o, v) in dweight.iter_mut().zip(&p[..c]) {
            *o += v;
        }
    }
    if let Some(db) = dbias {
        for p in &partials {
            for (o, v) in db.iter_mut().zip(&p[c..]) {
                *o += v;
            }
        }
    }
}

/// Adds `bias` to every row of `x` in place.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    let c = bias.len();
    x.par_chunks_mut(REDUCE_ROWS * c).for_each(|rows| {
        wide(
            #[inline(always)]
            || {
                for row in rows.chunks_exact_mut(c) {
                    for (v, b) in row.iter_mut().zip(bias) {
                        *v += b;
                    }
                }
            },
        );
    });
}

/// `dbias += ` the column sums of `dy` (rows of `dbias.len()`).
pub fn bias_backward(dbias: &mut [f32], dy: &[f32]) {
    let c = dbias.len();
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(REDUCE_ROWS * c)
        .map(|rows| {
            wide(
                #[inline(always)]
                || {
                    let mut acc = vec![0f32; c];
                    for row in rows.chunks_exact(c) {
                        for (a, v) in acc.iter_mut().zip(row) {
                            *a += v;
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    add_partials(dbias, &partials);
}

#[inline(always)]
fn sigmoid_2u(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    1.0 / (1.0 + exp(-2.0 * u))
}

/// Tanh GELU, written as `x * sigmoid(2u)` (the same formula as inference's kernel).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * sigmoid_2u(x)
}

/// `d gelu / dx`: `s + 2 x s (1 - s) u'(x)` with `s = sigmoid(2u)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let s = sigmoid_2u(x);
    s + 2.0 * x * s * (1.0 - s) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x * x)
}

/// `u += bias` (when given), then `g = gelu(u)`, row by row: the MLP's up projection.
pub fn bias_gelu_forward(g: &mut [f32], u: &mut [f32], bias: Option<&[f32]>, width: usize) {
    g.par_chunks_mut(REDUCE_ROWS * width)
        .zip(u.par_chunks_mut(REDUCE_ROWS * width))
        .for_each(|(g, u)| {
            wide(
                #[inline(always)]
                || {
                    if let Some(b) = bias {
                        for row in u.chunks_exact_mut(width) {
                            for (v, b) in row.iter_mut().zip(b) {
                                *v += b;
                            }
                        }
                    }
                    for (g, u) in g.iter_mut().zip(u.iter()) {
                        *g = gelu(*u);
                    }
                },
            );
        });
}

/// `g = gelu(u)` (recomputed in backward instead of kept per layer).
pub fn gelu_forward(g: &mut [f32], u: &[f32]) {
    g.par_chunks_mut(REDUCE_ROWS * 256)
        .zip(u.par_chunks(REDUCE_ROWS * 256))
        .for_each(|(g, u)| {
            wide(
                #[inline(always)]
                || {
                    for (g, u) in g.iter_mut().zip(u) {
                        *g = gelu(*u);
                    }
                },
            );
        });
}

/// `dg *= gelu'(u)` in place (`dg` becomes `du`), and `dbias += ` its column sums.
pub fn gelu_backward(dg: &mut [f32], u: &[f32], dbias: Option<&mut [f32]>, width: usize) {
    let want_bias = dbias.is_some();
    let partials: Vec<Vec<f32>> = dg
        .par_chunks_mut(REDUCE_ROWS * width)
        .zip(u.par_chunks(REDUCE_ROWS * width))
        .map(|(dg, u)| {
            wide(
                #[inline(always)]
                || {
                    for (d, u) in dg.iter_mut().zip(u) {
                        *d *= gelu_grad(*u);
                    }
                    let mut acc = Vec::new();
                    if want_bias {
                        acc = vec![0f32; width];
                        for row in dg.chunks_exact(width) {
                            for (a, v) in acc.iter_mut().zip(row) {
                                *a += v;
                            }
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    if let Some(db) = dbias {
        add_partials(db, &partials);
    }
}

/// Rotary tables for positions `0..len`: `(len, head_dim/2)` cosines and sines (GPT-NeoX's
/// "rotate half" layout; the same angles as `model::position::rotary_tables`).
pub fn rotary_tables(len: usize, head_dim: usize, base: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = vec![0f32; len * half];
    let mut sin = vec![0f32; len * half];
    for p in 0..len {
        for i in 0..half {
            let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
            let angle = p as f64 * freq;
            cos[p * half + i] = angle.cos() as f32;
            sin[p * half + i] = angle.sin() as f32;
        }
    }
    (cos, sin)
}

/// Rotates (or, with `inverse`, rotates back: the backward pass) the query and key heads of each
/// row of `qkv` `(rows, 3*d)`; row `r` is position `r % len`.
pub fn rotary(
    qkv: &mut [f32],
    d: usize,
    head_dim: usize,
    len: usize,
    tables: (&[f32], &[f32]),
    inverse: bool,
) {
    let half = head_dim / 2;
    let (cos, sin) = tables;
    let sign = if inverse { -1.0 } else { 1.0 };
    qkv.par_chunks_mut(3 * d * len).for_each(|seq| {
        wide(
            #[inline(always)]
            || {
                for (p, row) in seq.chunks_exact_mut(3 * d).enumerate() {
                    let (c, s) = (
                        &cos[p * half..(p + 1) * half],
                        &sin[p * half..(p + 1) * half],
                    );
                    for head in row[..2 * d].chunks_exact_mut(head_dim) {
                        let (a, b) = head.split_at_mut(half);
                        for (((a, b), &c), &s) in a.iter_mut().zip(b.iter_mut()).zip(c).zip(s) {
                            let s = sign * s;
                            let (x, y) = (*a, *b);
                            *a = x * c - y * s;
                            *b = y * c + x * s;
                        }
                    }
                }
            },
        );
    });
}

/// One slice of rows' logits turned into the gradient of the mean loss: each row becomes
/// `(softmax(row) - onehot(target)) * scale`; returns each row's NLL in `nll`.
pub fn softmax_xent_rows(
    logits: &mut [f32],
    targets: &[u32],
    nll: &mut [f32],
    vocab: usize,
    scale: f32,
) {
    logits
        .par_chunks_mut(vocab * 8)
        .zip(targets.par_chunks(8))
        .zip(nll.par_chunks_mut(8))
        .for_each(|((rows, targets), nll)| {
            wide(
                #[inline(always)]
                || {
                    for ((row, &t), nll) in rows.chunks_exact_mut(vocab).zip(targets).zip(nll) {
                        let t = t as usize;
                        let target_logit = row[t];
                        let max = max_lanes(row);
                        let sum = exp_sum_lanes(row, max);
                        *nll = max + sum.ln() - target_logit;
                        let inv = scale / sum;
                        for v in row.iter_mut() {
                            *v *= inv;
                        }
                        row[t] -= scale;
                    }
                },
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_equal_the_plain_ones() {
        for n in [0, 1, 15, 16, 17, 100, 4096] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let plain = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max_lanes(&xs), plain, "n = {n}");
            let dot = dot_lanes(&xs, &xs);
            let want_dot: f64 = xs.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            assert!(
                (f64::from(dot) - want_dot).abs() <= 1e-5 * want_dot.max(1.0),
                "n = {n}"
            );
            let mut ys = xs.clone();
            let sum = exp_sum_lanes(&mut ys, 1.5);
            let want: f64 = xs.iter().map(|&x| (f64::from(x) - 1.5).exp()).sum();
            assert!(
                (f64::from(sum) - want).abs() <= 1e-5 * want.max(1.0),
                "n = {n}"
            );
            for (y, x) in ys.iter().zip(&xs) {
                let e = (f64::from(*x) - 1.5).exp();
                assert!((f64::from(*y) - e).abs() <= 1e-6 * e.max(1.0), "n = {n}");
            }
        }
    }
}
