//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), linear warm-up and cosine
//! decay, and global-norm gradient clipping. Written here (rather than candle-nn's `AdamW`) so
//! the moment estimates can be saved and a resumed run continues exactly.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use rayon::prelude::*;

/// Fraction of the peak learning rate the cosine decays to.
pub const MIN_LR_RATIO: f64 = 0.1;

/// One trainable parameter with its moment estimates.
#[derive(Debug)]
pub struct Param {
    /// Checkpoint name.
    pub name: String,
    /// The variable.
    pub var: Var,
    /// First moment.
    pub m: Tensor,
    /// Second moment.
    pub v: Tensor,
    /// Whether weight decay applies (matrices only; not norms, biases or slopes).
    pub decay: bool,
}

/// Hyper-parameters of AdamW.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// AdamW over a list of parameters.
#[derive(Debug)]
pub struct AdamW {
    /// The parameters, in a fixed order.
    pub params: Vec<Param>,
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// Steps taken so far.
    pub step: usize,
}

impl AdamW {
    /// Starts with zero moments.
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let decay = var.rank() >= 2;
                Ok(Param {
                    m: var.zeros_like()?,
                    v: var.zeros_like()?,
                    name,
                    var,
                    decay,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            cfg,
            step: 0,
        })
    }

    /// The global L2 norm of the gradients.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for p in &self.params {
            if let Some(g) = grads.get(&p.var) {
                total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        Ok(total.sqrt())
    }

    /// One update at learning rate `lr`, with gradients scaled by `grad_scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for p in &mut self.params {
            let Some(g) = grads.get(&p.var) else { continue };
            let g = if (grad_scale - 1.0).abs() > f64::EPSILON {
                (g * grad_scale)?
            } else {
                g.clone()
            };
            p.m = ((&p.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&p.m / bias1)?;
            let v_hat = (&p.v / bias2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let mut next = (p.var.as_tensor() - (update * lr)?)?;
            if p.decay && c.weight_decay > 0.0 {
                next = (next - (p.var.as_tensor() * (lr * c.weight_decay))?)?;
            }
            p.var.set(&next)?;
        }
        Ok(())
    }
}

/// Values per parallel task of the flat optimiser (fixed: sums do not depend on the threads).
const FLAT_CHUNK: usize = 1 << 14;

/// AdamW over flat f32 buffers (the fast trainer's): the update of [`AdamW::step`] as one pass
/// over parameters, gradients and both moments, in parallel chunks, allocating nothing.
#[derive(Debug, Clone)]
pub struct FlatAdamW {
    /// First moments, laid out as the parameters.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// Steps taken so far.
    pub step: usize,
}

impl FlatAdamW {
    /// Zero moments for `len` parameters.
    pub fn new(len: usize, cfg: AdamWConfig) -> Self {
        Self {
            m: vec![0.0; len],
            v: vec![0.0; len],
            cfg,
            step: 0,
        }
    }

    /// The global L2 norm of `grads`, summed in fixed chunks (repeatable bit for bit).
    pub fn grad_norm(grads: &[f32]) -> f64 {
        let parts: Vec<f64> = grads
            .par_chunks(FLAT_CHUNK)
            .map(|c| c.iter().map(|&g| f64::from(g) * f64::from(g)).sum())
            .collect();
        parts.iter().sum::<f64>().sqrt()
    }

    /// One update at `lr` with gradients scaled by `grad_scale`; `ranges` say which values are
    /// decayed (matrices) and which not.
    pub fn step(
        &mut self,
        params: &mut [f32],
        grads: &[f32],
        ranges: &[(std::ops::Range<usize>, bool)],
        lr: f64,
        grad_scale: f64,
    ) {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let inv_bias1 = (1.0 / (1.0 - c.beta1.powi(t))) as f32;
        let inv_bias2 = (1.0 / (1.0 - c.beta2.powi(t))) as f32;
        let (lr32, eps, scale) = (lr as f32, c.eps as f32, grad_scale as f32);
        for (range, decay) in ranges {
            let wd = if *decay {
                (lr * c.weight_decay) as f32
            } else {
                0.0
            };
            params[range.clone()]
                .par_chunks_mut(FLAT_CHUNK)
                .zip(grads[range.clone()].par_chunks(FLAT_CHUNK))
                .zip(self.m[range.clone()].par_chunks_mut(FLAT_CHUNK))
                .zip(self.v[range.clone()].par_chunks_mut(FLAT_CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                        let g = g * scale;
                        *m = *m * b1 + g * (1.0 - b1);
                        *v = *v * b2 + g * g * (1.0 - b2);
                        let update = (*m * inv_bias1) / ((*v * inv_bias2).sqrt() + eps);
                        *p = *p - update * lr32 - *p * wd;
                    }
                });
        }
    }
}

/// Learning rate at `step` (0-based): linear warm-up to `peak`, then cosine decay to
/// `peak * min_ratio` at `total` steps.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, min_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_shape() {
        assert!((lr_at(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!(lr_at(55, 100, 10, 1.0, 0.1) < 0.6);
    }

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        // With bias correction, Adam's first update is lr * g/|g| (up to eps).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let loss = (var.as_tensor() * 3.0).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg).unwrap();
        assert!((opt.grad_norm(&grads).unwrap() - (18f64).sqrt()).abs() < 1e-5);
        opt.step(&grads, 0.1, 1.0).unwrap();
        let v = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 2.1).abs() < 1e-5,
            "{v:?}"
        );
    }
}
