//! Vectorised f32 CPU kernels for inference: `exp`, the tanh GELU (fused with a Linear's bias),
//! a bias added in place, the last-dimension softmax and a row's log-sum-exp.
//!
//! candle's CPU versions call libm's scalar `tanhf`/`expf` one element at a time and its
//! broadcast add walks a strided index: at bloom-560m's shape the GELU alone took as long as all the
//! MLP's matmuls. These make one pass in parallel chunks, each compiled for AVX2 or AVX-512 (picked
//! at run time through `pulp`, as `gemm` does). `exp` follows Cephes' `expf` (range reduction by
//! `ln 2`, a degree-6 polynomial; within 2 ulp of libm), so results differ from candle's in the
//! last bits only. None of them records a gradient: training keeps the stock ops.
//!
//! The element functions are `#[inline(always)]` on purpose: `pulp` compiles each kernel's body
//! inside a function with the wider instruction set enabled, and only code inlined into it is
//! vectorised with those instructions.
#![allow(clippy::inline_always)]

use candle_core::{
    CpuStorage, CustomOp1, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Shape,
};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Elements per parallel task (large enough to hide the task overhead).
const TASK_ELEMENTS: usize = 1 << 14;
/// Independent accumulators per row reduction, so the compiler can keep them in vector lanes.
const LANES: usize = 16;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two so `n * ln 2` is exact in the first part (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `exp` returns 0 (`e^-87` is near the smallest normal f32); above it saturates.
const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.0;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF: f32 = 0.044_715;

/// `e^x` (0 for `x < -87`, including `-inf`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let c = x.clamp(EXP_MIN, EXP_MAX);
    let n = (c * LOG2E + 0.5).floor();
    let r = c - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < EXP_MIN { 0.0 } else { y * scale }
}

/// GELU with the tanh approximation, written as `x * sigmoid(2u)` (`0.5 * (1 + tanh u)` is
/// `sigmoid(2u)`), which needs one `exp`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{what}: needs contiguous f32 input"),
    }
}

fn contiguous_f32_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("{what}: needs contiguous f32 input"),
    }
}

/// Rows of `x` plus `bias`, then GELU when `gelu` is set.
struct BiasRows<'a> {
    rows: &'a mut [f32],
    bias: Option<&'a [f32]>,
    gelu: bool,
}

impl WithSimd for BiasRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let width = self.bias.map_or(self.rows.len(), <[f32]>::len);
        for row in self.rows.chunks_exact_mut(width) {
            if let Some(bias) = self.bias {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x += b;
                }
            }
            if self.gelu {
                for x in row.iter_mut() {
                    *x = gelu(*x);
                }
            }
        }
    }
}

/// Rows per parallel task for rows of `width`.
fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMENTS / width.max(1)).max(1)
}

fn bias_rows(x: &mut [f32], bias: Option<&[f32]>, gelu: bool) {
    let width = bias.map_or(TASK_ELEMENTS, <[f32]>::len).max(1);
    let arch = Arch::new();
    x.par_chunks_mut(rows_per_task(width) * width)
        .for_each(|rows| arch.dispatch(BiasRows { rows, bias, gelu }));
}

/// Adds a `(width,)` bias to every row of a contiguous `(.., width)` f32 tensor, in place, then
/// applies the tanh GELU when `gelu` is set (the MLP's up projection).
pub struct AddBias {
    /// Apply the tanh GELU after the bias.
    pub gelu: bool,
}

impl InplaceOp2 for AddBias {
    fn name(&self) -> &'static str {
        if self.gelu {
            "add-bias-gelu"
        } else {
            "add-bias-rows"
        }
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
    ) -> Result<()> {
        let what = self.name();
        let bias = contiguous_f32(bias, bias_l, what)?;
        let x = contiguous_f32_mut(dst, dst_l, what)?;
        if bias.is_empty() || x.len() % bias.len() != 0 {
            candle_core::bail!(
                "{what}: {} values do not split into rows of {}",
                x.len(),
                bias.len()
            );
        }
        bias_rows(x, Some(bias), self.gelu);
        Ok(())
    }
}

/// The tanh GELU in place.
pub struct Gelu;

impl InplaceOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        bias_rows(contiguous_f32_mut(s, l, "gelu")?, None, true);
        Ok(())
    }
}

/// The largest value of `row` (`-inf` when empty).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let m = tail.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    acc.iter().fold(m, |m, &v| m.max(v))
}

/// `sum(exp(row - max))`, storing each `exp` in `out` when given.
#[inline(always)]
fn sum_exp(row: &[f32], max: f32, mut out: Option<&mut [f32]>) -> f32 {
    let mut acc = [0f32; LANES];
    let n = row.len() / LANES * LANES;
    for (i, c) in row[..n].chunks_exact(LANES).enumerate() {
        let mut e = [0f32; LANES];
        for ((e, a), &v) in e.iter_mut().zip(acc.iter_mut()).zip(c) {
            *e = exp(v - max);
            *a += *e;
        }
        if let Some(o) = out.as_deref_mut() {
            o[i * LANES..(i + 1) * LANES].copy_from_slice(&e);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (j, &v) in row[n..].iter().enumerate() {
        let e = exp(v - max);
        s += e;
        if let Some(o) = out.as_deref_mut() {
            o[n + j] = e;
        }
    }
    s
}

struct LogSumExp<'a>(&'a [f32]);

impl WithSimd for LogSumExp<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> f32 {
        let max = row_max(self.0);
        max + sum_exp(self.0, max, None).ln()
    }
}

/// `ln(sum(exp(row)))`, computed stably.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    Arch::new().dispatch(LogSumExp(row))
}

struct SoftmaxRows<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    width: usize,
}

impl WithSimd for SoftmaxRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        for (s, d) in self
            .src
            .chunks_exact(self.width)
            .zip(self.dst.chunks_exact_mut(self.width))
        {
            let max = row_max(s);
            let inv = 1.0 / sum_exp(s, max, Some(d));
            for v in d.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// Softmax over the last dimension of a contiguous f32 tensor (`exp(-inf)` is 0: masked keys get
/// no weight).
pub struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim-simd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "softmax")?;
        let width = l.dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; src.len()];
        let per = rows_per_task(width) * width;
        let arch = Arch::new();
        src.par_chunks(per)
            .zip(dst.par_chunks_mut(per))
            .for_each(|(src, dst)| arch.dispatch(SoftmaxRows { src, dst, width }));
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

/// One row's running log-sum-exp `(max, sum of exp(x - max), target's logit)` over slices of the
/// vocabulary seen so far, updated with the next slice.
struct UpdateRows<'a> {
    state: &'a mut [f32],
    logits: &'a [f32],
    targets: &'a [u32],
    width: usize,
    vocab_start: usize,
}

impl WithSimd for UpdateRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let rows = self.logits.chunks_exact(self.width);
        for ((st, row), &t) in self.state.chunks_exact_mut(3).zip(rows).zip(self.targets) {
            let (max, sum) = (st[0], st[1]);
            let m = row_max(row).max(max);
            st[0] = m;
            st[1] = sum * exp(max - m) + sum_exp(row, m, None);
            if let Some(v) = (t as usize)
                .checked_sub(self.vocab_start)
                .and_then(|j| row.get(j))
            {
                st[2] = *v;
            }
        }
    }
}

/// Folds a slice of logits `(rows, width)` for vocabulary ids `vocab_start..` into a running
/// `(rows, 3)` state `(max, sum of exp(x - max), target's logit)`, given `(rows,)` u32 targets, so
/// the cross-entropy over a large vocabulary never holds a token's whole logit row. The NLL is
/// then `max + ln(sum) - target's logit`; start from `(-inf, 0, 0)`.
pub struct LogSumExpUpdate {
    /// The vocabulary id of the slice's first column.
    pub vocab_start: usize,
}

impl InplaceOp3 for LogSumExpUpdate {
    fn name(&self) -> &'static str {
        "log-sum-exp-update"
    }

    fn cpu_fwd(
        &self,
        state: &mut CpuStorage,
        state_l: &Layout,
        logits: &CpuStorage,
        logits_l: &Layout,
        targets: &CpuStorage,
        targets_l: &Layout,
    ) -> Result<()> {
        let (rows, width) = logits_l.shape().dims2()?;
        let logits = contiguous_f32(logits, logits_l, "log-sum-exp update")?;
        let targets = match (targets, targets_l.contiguous_offsets()) {
            (CpuStorage::U32(v), Some((a, b))) if b - a == rows => &v[a..b],
            _ => candle_core::bail!("log-sum-exp update: needs {rows} contiguous u32 targets"),
        };
        let state = contiguous_f32_mut(state, state_l, "log-sum-exp update")?;
        if state.len() != 3 * rows || width == 0 {
            candle_core::bail!("log-sum-exp update: state must be ({rows}, 3)");
        }
        let per = rows_per_task(width);
        let arch = Arch::new();
        let vocab_start = self.vocab_start;
        state
            .par_chunks_mut(3 * per)
            .zip(logits.par_chunks(per * width))
            .zip(targets.par_chunks(per))
            .for_each(|((state, logits), targets)| {
                arch.dispatch(UpdateRows {
                    state,
                    logits,
                    targets,
                    width,
                    vocab_start,
                });
            });
        Ok(())
    }
}

/// Adds the causal ALiBi bias in place to scores `(batch, heads, q_len, k_len)` of queries
/// `q_start..` against keys `0..k_len`: `m_h * (j - i)` where `j <= i` (the same product
/// [`super::position::causal_bias`] forms), `-inf` above the diagonal; with no slopes only the mask.
/// It replaces building the bias block (six candle passes over `heads x q_len x k_len`) per layer.
pub struct AddCausalBias {
    /// Per-head slopes, or none for the causal mask alone.
    pub slopes: Option<Vec<f32>>,
    /// Absolute position of the first query.
    pub q_start: usize,
}

impl InplaceOp1 for AddCausalBias {
    fn name(&self) -> &'static str {
        "add-causal-bias"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let (_, heads, q_len, k_len) = l.shape().dims4()?;
        if let Some(m) = &self.slopes
            && m.len() != heads
        {
            candle_core::bail!("causal bias: {} slopes for {heads} heads", m.len());
        }
        let x = contiguous_f32_mut(s, l, "causal bias")?;
        let q_start = self.q_start;
        let slopes = self.slopes.as_deref();
        x.par_chunks_mut(q_len * k_len.max(1))
            .enumerate()
            .for_each(|(bh, block)| {
                let m = slopes.map(|m| m[bh % heads]);
                for (qi, row) in block.chunks_exact_mut(k_len.max(1)).enumerate() {
                    let i = q_start + qi;
                    let seen = (i + 1).min(k_len);
                    if let Some(m) = m {
                        for (j, v) in row[..seen].iter_mut().enumerate() {
                            *v += m * (j as f32 - i as f32);
                        }
                    }
                    row[seen..].fill(f32::NEG_INFINITY);
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f32) -> f32 {
        if a == b {
            0.0
        } else {
            (a - b).abs() / a.abs().max(b.abs())
        }
    }

    #[test]
    fn exp_matches_libm_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(rel(exp(x), x.exp()));
            x += 0.001_37;
        }
        assert!(worst < 4.0 * f32::EPSILON, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_matches_the_tanh_formula() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let want = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x)).tanh());
            assert!(
                (gelu(x) - want).abs() <= 1e-6 * x.abs().max(1.0),
                "{x}: {} vs {want}",
                gelu(x)
            );
        }
    }

    #[test]
    fn causal_bias_in_place_equals_adding_the_bias_block() {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let slopes = [0.5f32, 0.125, 0.03125];
        let scores = Tensor::randn(0f32, 1.0, (2, 3, 4, 9), &dev).unwrap();
        for (q_start, m) in [(5, Some(&slopes[..])), (0, None)] {
            let st = m.map(|m| Tensor::new(m, &dev).unwrap());
            let bias =
                super::super::position::causal_bias(st.as_ref(), q_start, 4, 9, &dev).unwrap();
            let want = scores.broadcast_add(&bias.unsqueeze(0).unwrap()).unwrap();
            let got = scores.copy().unwrap();
            let op = AddCausalBias {
                slopes: m.map(<[f32]>::to_vec),
                q_start,
            };
            got.inplace_op1(&op).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(flat(&got), flat(&want), "q_start {q_start}");
        }
    }

    #[test]
    fn softmax_and_bias_ops_match_candle() {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (3, 5, 37), &dev).unwrap();
        let mask = Tensor::new(&[0f32, f32::NEG_INFINITY], &dev)
            .unwrap()
            .repeat(37 * 15 / 2 + 1)
            .unwrap();
        let x = (x.flatten_all().unwrap() + mask.narrow(0, 0, 3 * 5 * 37).unwrap())
            .unwrap()
            .reshape((3, 5, 37))
            .unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let ours = x.apply_op1_no_bwd(&SoftmaxLastDim).unwrap();
        assert!(diff(&ours, &candle_nn::ops::softmax_last_dim(&x).unwrap()) < 1e-6);
        let bias = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        let y = x.abs().unwrap();
        let want = y.broadcast_add(&bias).unwrap();
        let got = y.copy().unwrap();
        got.inplace_op2(&bias, &AddBias { gelu: false }).unwrap();
        assert_eq!(diff(&got, &want), 0.0);
        got.inplace_op2(&bias, &AddBias { gelu: true }).unwrap();
        assert!(diff(&got, &want.broadcast_add(&bias).unwrap().gelu().unwrap()) < 1e-5);
    }

    #[test]
    fn sliced_log_sum_exp_equals_the_whole_row() {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let logits = Tensor::randn(0f32, 4.0, (5, 300), &dev).unwrap();
        let targets = Tensor::new(&[0u32, 299, 150, 128, 7], &dev).unwrap();
        let init: Vec<f32> = (0..5).flat_map(|_| [f32::NEG_INFINITY, 0.0, 0.0]).collect();
        let state = Tensor::from_vec(init, (5, 3), &dev).unwrap();
        for (start, n) in [(0, 128), (128, 128), (256, 44)] {
            let slice = logits.narrow(1, start, n).unwrap().contiguous().unwrap();
            state
                .inplace_op3(&slice, &targets, &LogSumExpUpdate { vocab_start: start })
                .unwrap();
        }
        let want = super::super::ops::cross_entropy_rows(&logits, &targets)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (st, w) in state.to_vec2::<f32>().unwrap().iter().zip(want) {
            let got = st[0] + st[1].ln() - st[2];
            assert!((got - w).abs() < 1e-5 * w.abs().max(1.0), "{got} vs {w}");
        }
    }

    #[test]
    fn row_reductions_match_plain_loops() {
        let row: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3)
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        assert_eq!(row_max(&row), max);
        assert!(rel(log_sum_exp(&row), lse) < 1e-6);
    }
}
