//! Where each parameter of our architecture lives in the fast trainer's flat buffers: the names
//! and shapes of `model::init::param_specs` (so checkpoints are the candle path's), plus the
//! learned slopes, as ranges of one `Vec<f32>` (parameters, gradients and AdamW moments share it).

use crate::model::config::Config;
use crate::model::init::param_specs;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::ops::Range;

/// Checkpoint name of the learned ALiBi slopes.
pub const SLOPES_NAME: &str = "alibi.slopes";

/// One parameter's place in the flat buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Checkpoint name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Its values in the flat buffers.
    pub range: Range<usize>,
    /// Whether weight decay applies (matrices; as the candle path's AdamW decides by rank).
    pub decay: bool,
}

/// A LayerNorm's gain and optional bias.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Gain.
    pub w: Range<usize>,
    /// Bias (`norm_bias`).
    pub b: Option<Range<usize>>,
}

/// A linear map's `(out, in)` weight and optional bias.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight, `(out, in)` row-major.
    pub w: Range<usize>,
    /// Bias (`linear_bias`).
    pub b: Option<Range<usize>>,
}

/// One block's parameters.
#[derive(Debug, Clone)]
pub struct Block {
    /// LayerNorm before attention.
    pub ln1: Norm,
    /// Fused q/k/v projection `(3d, d)`.
    pub qkv: Linear,
    /// Attention output projection `(d, d)`.
    pub out: Linear,
    /// LayerNorm before the MLP.
    pub ln2: Norm,
    /// MLP up projection `(d_ff, d)`.
    pub up: Linear,
    /// MLP down projection `(d, d_ff)`.
    pub down: Linear,
}

/// Every parameter of a model in one flat buffer.
#[derive(Debug, Clone)]
pub struct Layout {
    /// In `param_specs` order, then the slopes.
    pub entries: Vec<Entry>,
    /// Total number of values.
    pub len: usize,
    /// Token embedding `(vocab, d)`.
    pub tok_emb: Range<usize>,
    /// LayerNorm after the embedding (`embed_norm`).
    pub emb_norm: Option<Norm>,
    /// The blocks.
    pub blocks: Vec<Block>,
    /// Final LayerNorm.
    pub ln_f: Norm,
    /// Output projection; `None` when tied to the embedding.
    pub lm_head: Option<Range<usize>>,
    /// Learned slopes `(heads,)`.
    pub slopes: Option<Range<usize>>,
}

impl Layout {
    /// The layout of `cfg`'s parameters, with `learn_slopes` adding the slopes at the end.
    pub fn new(cfg: &Config, learn_slopes: bool) -> Self {
        let mut entries = Vec::new();
        let mut len = 0;
        let mut push = |name: String, shape: Vec<usize>| {
            let n: usize = shape.iter().product();
            entries.push(Entry {
                decay: shape.len() >= 2,
                name,
                shape,
                range: len..len + n,
            });
            len += n;
        };
        for (name, shape, _) in param_specs(cfg) {
            push(name, shape);
        }
        if learn_slopes {
            push(SLOPES_NAME.to_string(), vec![cfg.n_heads]);
        }
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.range.clone())
        };
        let need = |name: &str| find(name).unwrap_or(0..0);
        let norm = |p: &str| Norm {
            w: need(&format!("{p}.weight")),
            b: find(&format!("{p}.bias")),
        };
        let linear = |p: &str| Linear {
            w: need(&format!("{p}.weight")),
            b: find(&format!("{p}.bias")),
        };
        let blocks = (0..cfg.n_layers)
            .map(|i| Block {
                ln1: norm(&format!("blocks.{i}.ln1")),
                qkv: linear(&format!("blocks.{i}.attn.qkv")),
                out: linear(&format!("blocks.{i}.attn.out")),
                ln2: norm(&format!("blocks.{i}.ln2")),
                up: linear(&format!("blocks.{i}.mlp.up")),
                down: linear(&format!("blocks.{i}.mlp.down")),
            })
            .collect();
        Self {
            tok_emb: need("tok_emb.weight"),
            emb_norm: cfg.embed_norm.then(|| norm("emb_norm")),
            blocks,
            ln_f: norm("ln_f"),
            lm_head: find("lm_head.weight"),
            slopes: find(SLOPES_NAME),
            entries,
            len,
        }
    }
}

impl Layout {
    /// The flat buffer of `tensors` (checkpoint names; the slopes under [`SLOPES_NAME`]).
    pub fn gather(&self, tensors: &HashMap<String, Tensor>) -> candle_core::Result<Vec<f32>> {
        let mut out = vec![0f32; self.len];
        for e in &self.entries {
            let t = tensors
                .get(&e.name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter {}", e.name)))?;
            if t.dims() != e.shape.as_slice() {
                candle_core::bail!(
                    "{} has shape {:?}, expected {:?}",
                    e.name,
                    t.dims(),
                    e.shape
                );
            }
            let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            out[e.range.clone()].copy_from_slice(&v);
        }
        Ok(out)
    }

    /// Every parameter of `buf` as a CPU tensor under its checkpoint name.
    pub fn tensors(&self, buf: &[f32]) -> candle_core::Result<HashMap<String, Tensor>> {
        self.entries
            .iter()
            .map(|e| {
                let t =
                    Tensor::from_slice(&buf[e.range.clone()], e.shape.as_slice(), &Device::Cpu)?;
                Ok((e.name.clone(), t))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Position;

    #[test]
    fn the_layout_covers_every_parameter_once() {
        let cfg = Config::ours(10, 8, 2, 2, 16, Position::Alibi, 4);
        let l = Layout::new(&cfg, true);
        assert_eq!(l.len, crate::model::init::param_count(&cfg) + 2);
        let mut next = 0;
        for e in &l.entries {
            assert_eq!(e.range.start, next, "{}", e.name);
            next = e.range.end;
        }
        assert_eq!(l.blocks.len(), 2);
        assert!(l.lm_head.is_none() && l.slopes.is_some());
        assert!(l.blocks[1].down.b.is_some() && l.ln_f.b.is_some());
    }
}
