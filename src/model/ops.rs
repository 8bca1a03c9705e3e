//! Fused CPU training ops with hand-written backward passes: row-wise cross-entropy and the tanh
//! GELU. candle's composite versions allocate a tensor per elementary step and dominate training
//! time at small widths; these make one pass each way. Other devices and dtypes use stock ops.

use super::kernels::log_sum_exp;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF: f32 = 0.044_715;

fn contiguous<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    let slice = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&slice[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// The `(rows, vocab)` f32 logits and `(rows,)` u32 targets of a cross-entropy op.
fn rows_and_targets<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
    what: &str,
) -> Result<(usize, &'a [f32], &'a [u32])> {
    let (_, vocab) = l1.shape().dims2()?;
    Ok((
        vocab,
        contiguous::<f32>(s1, l1, what)?,
        contiguous::<u32>(s2, l2, what)?,
    ))
}

/// `nll[i] = logsumexp(logits[i]) - logits[i, target[i]]` for `(rows, vocab)` f32 logits.
struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (vocab, logits, targets) = rows_and_targets(s1, l1, s2, l2, "cross-entropy")?;
        let out: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(targets.par_iter())
            .map(|(row, &t)| log_sum_exp(row) - row[t as usize])
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(targets.len())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op2_no_bwd(targets, &CrossEntropyGrad)?;
        Ok((Some(g.broadcast_mul(&grad.unsqueeze(1)?)?), None))
    }
}

/// `softmax(logits[i]) - onehot(target[i])`.
struct CrossEntropyGrad;

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross-entropy-rows-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (vocab, logits, targets) = rows_and_targets(s1, l1, s2, l2, "cross-entropy grad")?;
        let mut out = vec![0f32; logits.len()];
        out.par_chunks_mut(vocab)
            .zip(logits.par_chunks(vocab))
            .zip(targets.par_iter())
            .for_each(|((o, row), &t)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, v) in o.iter_mut().zip(row) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                for o in o.iter_mut() {
                    *o *= inv;
                }
                o[t as usize] -= 1.0;
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Per-row negative log-likelihood of `targets` `(rows,)` u32 under `logits` `(rows, vocab)`,
/// differentiable in the logits. Fused on CPU f32; stock log-softmax elsewhere.
pub fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, CrossEntropy)
    } else {
        let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        logp.gather(&targets.unsqueeze(1)?.contiguous()?, 1)?
            .squeeze(1)?
            .neg()
    }
}

/// GELU with the tanh approximation.
struct GeluTanh;

fn gelu_fwd(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x)).tanh())
}

/// Applies `f` to every element of a contiguous f32 storage, in parallel chunks.
fn map_f32(
    s: &CpuStorage,
    l: &Layout,
    what: &str,
    f: fn(f32) -> f32,
) -> Result<(CpuStorage, Shape)> {
    let x = contiguous::<f32>(s, l, what)?;
    let out: Vec<f32> = x.par_iter().with_min_len(4096).map(|&v| f(v)).collect();
    Ok((CpuStorage::F32(out), l.shape().clone()))
}

fn gelu_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x);
    let t = u.tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x * x)
}

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(s, l, "gelu", gelu_fwd)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = arg.apply_op1_no_bwd(&GeluTanhGrad)?;
        Ok(Some(d.mul(grad)?))
    }
}

struct GeluTanhGrad;

impl CustomOp1 for GeluTanhGrad {
    fn name(&self) -> &'static str {
        "gelu-tanh-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(s, l, "gelu grad", gelu_grad)
    }
}

/// Tanh-approximated GELU that records a gradient; fused on CPU f32, stock elsewhere.
pub fn gelu_tanh_train(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(GeluTanh)
    } else {
        x.gelu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_cross_entropy_matches_stock_forward_and_backward() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..3 * 7)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.4)
            .collect();
        let targets = Tensor::new(&[2u32, 6, 0], &dev).unwrap();
        let a = Var::from_tensor(&Tensor::from_vec(data.clone(), (3, 7), &dev).unwrap()).unwrap();
        let fused = cross_entropy_rows(&a, &targets).unwrap();
        let w = Tensor::new(&[1.0f32, 2.0, 0.5], &dev).unwrap();
        let ga = fused
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let b = Var::from_tensor(&Tensor::from_vec(data, (3, 7), &dev).unwrap()).unwrap();
        let logp = candle_nn::ops::log_softmax(&b, D::Minus1).unwrap();
        let stock = logp
            .gather(&targets.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap();
        let gb = stock
            .mul(&w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
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
        assert!(diff(&fused, &stock) < 1e-5);
        assert!(diff(ga.get(&a).unwrap(), gb.get(&b).unwrap()) < 1e-5);
    }

    #[test]
    fn fused_gelu_matches_stock_forward_and_backward() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.23).collect();
        let a = Var::from_tensor(&Tensor::new(data.as_slice(), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(data.as_slice(), &dev).unwrap()).unwrap();
        let fa = gelu_tanh_train(&a).unwrap();
        let fb = b.gelu().unwrap();
        let ga = fa.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gb = fb.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&fa, &fb) < 1e-5);
        assert!(diff(ga.get(&a).unwrap(), gb.get(&b).unwrap()) < 1e-4);
    }
}
