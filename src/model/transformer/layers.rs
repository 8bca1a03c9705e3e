//! The plain layers of a block: LayerNorm (fused for inference, differentiable for training),
//! linear maps with optional bias, and the MLP (tanh or erf GELU). Inference on CPU f32 adds the
//! biases (and the tanh GELU) in place on the matmul's output with [`super::super::kernels`].

use super::super::config::{Activation, Config};
use super::super::kernels::{AddBias, Gelu};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Positions per chunk when projecting hidden states onto the vocabulary.
pub const LM_HEAD_CHUNK_TOKENS: usize = 512;

/// A LayerNorm with optional bias; uses the fused op for inference and the differentiable one
/// for training.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` (and `bias` when `has_bias`) of width `dim`.
    pub fn new(dim: usize, has_bias: bool, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(dim, "weight")?;
        let bias = if has_bias {
            vb.get(dim, "bias")?
        } else {
            Tensor::zeros(dim, weight.dtype(), weight.device())?
        };
        Ok(Self { weight, bias, eps })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps as f32)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

pub(super) fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// Whether the in-place CPU f32 kernels apply to `x` (inference only: they record no gradient).
fn fused(x: &Tensor, train: bool) -> bool {
    !train && x.device().is_cpu() && x.dtype() == DType::F32
}

/// `x W^T`, without the bias, for `x` `(.., in)`.
fn matmul(lin: &Linear, x: &Tensor) -> Result<Tensor> {
    Linear::new(lin.weight().clone(), None).forward(x)
}

/// `lin.forward(x)`; at inference on CPU f32 the bias goes onto the matmul's output in place
/// (candle's broadcast add cost a fifth of the matmul at bloom-560m's shape).
pub(super) fn linear_forward(lin: &Linear, x: &Tensor, train: bool) -> Result<Tensor> {
    match lin.bias() {
        Some(bias) if fused(x, train) => {
            let y = matmul(lin, x)?;
            y.inplace_op2(bias, &AddBias { gelu: false })?;
            Ok(y)
        }
        _ => lin.forward(x),
    }
}

#[derive(Debug, Clone)]
pub(super) struct Mlp {
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl Mlp {
    pub(super) fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            up: linear(cfg.d_model, cfg.d_ff, cfg.linear_bias, vb.pp("up"))?,
            down: linear(cfg.d_ff, cfg.d_model, cfg.linear_bias, vb.pp("down"))?,
            activation: cfg.activation,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = match self.activation {
            Activation::GeluTanh if fused(x, train) => {
                // One pass over the up projection's output: bias and GELU together, in place.
                let h = matmul(&self.up, x)?;
                match self.up.bias() {
                    Some(bias) => h.inplace_op2(bias, &AddBias { gelu: true })?,
                    None => h.inplace_op1(&Gelu)?,
                }
                h
            }
            Activation::GeluTanh if train => {
                super::super::ops::gelu_tanh_train(&self.up.forward(x)?)?
            }
            Activation::GeluTanh => self.up.forward(x)?.gelu()?,
            Activation::GeluErf => linear_forward(&self.up, x, train)?.gelu_erf()?,
        };
        linear_forward(&self.down, &h, train)
    }
}
