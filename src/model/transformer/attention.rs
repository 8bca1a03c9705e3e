//! Attention of one block: fused q/k/v, optional q/k norms and clipping, rotary or ALiBi, and
//! blocked (flash-style) attention over query blocks, with an optional key/value cache so a window
//! can run in chunks of positions (see `model/prefill.rs`).

use super::super::attention_stats::{HeadSums, accumulate_block};
use super::super::config::Config;
use super::super::kernels::{AddCausalBias, SoftmaxLastDim};
use super::super::position::{BiasForm, alibi_bias, apply_rotary};
use super::layers::{LayerNorm, linear, linear_forward};
use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use std::sync::atomic::{AtomicBool, Ordering};

/// Upper bound on the elements of one block of attention scores (`batch*heads*q_block*keys`).
pub const SCORE_BLOCK_ELEMENTS: usize = 1 << 23;
/// The smallest query block used by blocked attention.
pub const MIN_QUERY_BLOCK: usize = 16;

/// Keys and values one layer has seen so far, for a forward run in chunks of positions
/// ([`super::prefill`]): `(batch, heads, capacity, head_dim)` each, filled up to the positions done.
#[derive(Debug)]
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
}

impl LayerCache {
    /// An empty cache for `capacity` positions of a layer of `cfg`, in `dtype` (the model's).
    pub fn new(
        cfg: &Config,
        batch: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, cfg.n_heads, capacity, cfg.head_dim());
        Ok(Self {
            k: Tensor::zeros(shape, dtype, device)?,
            v: Tensor::zeros(shape, dtype, device)?,
        })
    }

    /// Whether this cache can serve a layer of `cfg` for `len` positions of `batch` rows in
    /// `dtype` on `device` (positions past those written are never read, so a longer cache, or
    /// one used before, serves as well as a new one).
    pub fn fits(
        &self,
        cfg: &Config,
        batch: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> bool {
        self.k.dtype() == dtype
            && self.k.device().same_device(device)
            && self.k.dims4().is_ok_and(|(b, h, cap, hd)| {
                b == batch && h == cfg.n_heads && cap >= len && hd == cfg.head_dim()
            })
    }
}

/// The error message of a forward stopped by [`super::ForwardOptions::interrupt`].
pub const INTERRUPTED: &str = "interrupted by a more urgent job";

/// The error message of a forward stopped by a signal ([`crate::files::stop`]).
pub const STOPPED: &str = "stopped by a signal";

/// Fails with [`INTERRUPTED`] when `interrupt` is set, or with [`STOPPED`] when a signal asked
/// the process to stop: checked between layers and between blocks of queries.
pub(crate) fn check_interrupt(interrupt: Option<&AtomicBool>) -> Result<()> {
    if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
        candle_core::bail!("{INTERRUPTED}");
    }
    if crate::files::stop::should_stop() {
        candle_core::bail!("{STOPPED}");
    }
    Ok(())
}

pub(super) struct Ctx<'a> {
    /// `(1, heads, 1, 1)` multipliers for this layer's head outputs (0 = knocked out).
    pub(super) head_mask: Option<Tensor>,
    /// Absolute position of the first query (0 unless a chunked forward continues a window).
    pub(super) offset: usize,
    pub(super) train: bool,
    pub(super) query_block: Option<usize>,
    pub(super) slopes: Option<&'a Tensor>,
    /// How the ALiBi bias is built from `slopes` (Falcon-RW rounds it in bf16).
    pub(super) bias_form: BiasForm,
    pub(super) rotary: Option<&'a (Tensor, Tensor)>,
    /// A window or sinks recipe's key mask.
    pub(super) key_mask: Option<crate::alibi::recipe::KeyMask>,
    /// Checked between blocks of queries ([`check_interrupt`]).
    pub(super) interrupt: Option<&'a AtomicBool>,
}

#[derive(Debug, Clone)]
pub(super) struct Attention {
    qkv: Linear,
    out: Linear,
    q_norm: Option<LayerNorm>,
    k_norm: Option<LayerNorm>,
    n_heads: usize,
    head_dim: usize,
    clip_qkv: Option<f64>,
}

impl Attention {
    pub(super) fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let (q_norm, k_norm) = if cfg.qk_norm {
            (
                Some(LayerNorm::new(
                    d,
                    cfg.norm_bias,
                    cfg.layer_norm_eps,
                    vb.pp("q_norm"),
                )?),
                Some(LayerNorm::new(
                    d,
                    cfg.norm_bias,
                    cfg.layer_norm_eps,
                    vb.pp("k_norm"),
                )?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            qkv: linear(d, 3 * d, cfg.linear_bias, vb.pp("qkv"))?,
            out: linear(d, d, cfg.linear_bias, vb.pp("out"))?,
            q_norm,
            k_norm,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            clip_qkv: cfg.clip_qkv,
        })
    }

    pub(super) fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        capture: &[usize],
        stats: Option<&mut [HeadSums]>,
        cache: Option<&mut LayerCache>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (b, t, d) = x.dims3()?;
        let mut qkv = linear_forward(&self.qkv, x, ctx.train)?; // (b, t, 3d)
        if let Some(c) = self.clip_qkv {
            qkv = qkv.clamp(-c, c)?;
        }
        let mut q = qkv.narrow(2, 0, d)?;
        let mut k = qkv.narrow(2, d, d)?;
        let v = qkv.narrow(2, 2 * d, d)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(&q, ctx.train)?;
            k = kn.forward(&k, ctx.train)?;
        }
        let heads = |x: Tensor| -> Result<Tensor> {
            // (b, t, d) -> (b, heads, t, head_dim)
            x.reshape((b, t, self.n_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (mut q, mut k, v) = (heads(q)?, heads(k)?, heads(v)?);
        if let Some((cos, sin)) = ctx.rotary {
            let cos = cos.narrow(0, ctx.offset, t)?;
            let sin = sin.narrow(0, ctx.offset, t)?;
            q = apply_rotary(&q, &cos, &sin)?;
            k = apply_rotary(&k, &cos, &sin)?;
        }
        // A chunked forward attends over every position so far: this chunk's keys and values go
        // into the cache at their positions, and attention reads the cache up to them.
        let (k, v) = match cache {
            Some(c) => {
                c.k.slice_set(&k.contiguous()?, 2, ctx.offset)?;
                c.v.slice_set(&v, 2, ctx.offset)?;
                let keys = ctx.offset + t;
                (c.k.narrow(2, 0, keys)?, c.v.narrow(2, 0, keys)?)
            }
            None if ctx.offset > 0 => {
                candle_core::bail!("a forward at offset {} needs a key/value cache", ctx.offset)
            }
            None => (k, v),
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (q * scale)?;
        let (y, probs) = if ctx.train {
            self.full_attention(&q, &k, &v, ctx, stats)?
        } else {
            self.blocked_attention(&q, &k, &v, ctx, capture, stats)?
        };
        let y = match &ctx.head_mask {
            Some(mask) => y.broadcast_mul(&mask.to_dtype(y.dtype())?)?,
            None => y,
        };
        // (b, heads, t, head_dim) -> (b, t, d)
        let y = y.transpose(1, 2)?.reshape((b, t, d))?;
        Ok((linear_forward(&self.out, &y, ctx.train)?, probs))
    }

    /// Differentiable attention over the whole `(b, heads, t, t)` score matrix.
    fn full_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        ctx: &Ctx,
        stats: Option<&mut [HeadSums]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let t = q.dim(2)?;
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?; // (b, heads, t, t)
        let bias = alibi_bias(ctx.slopes, ctx.bias_form, 0, t, t, q.device())?; // (heads|1, t, t)
        let scores = scores.broadcast_add(&bias.unsqueeze(0)?)?;
        let scores = apply_key_mask(scores, ctx, 0)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        if let Some(heads) = stats {
            accumulate_block(heads, &probs.detach(), 0)?;
        }
        let probs = probs.to_dtype(v.dtype())?;
        Ok((probs.matmul(v)?, Vec::new()))
    }

    /// Attention computed one block of queries at a time; each block sees only the keys up to its
    /// last query, so the scores never exceed `SCORE_BLOCK_ELEMENTS` and masked work is skipped.
    /// Statistics, when asked for, are taken from each block's probabilities as it goes.
    fn blocked_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        ctx: &Ctx,
        capture: &[usize],
        mut stats: Option<&mut [HeadSums]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (b, h, t, _) = q.dims4()?;
        // Keys cover the positions before this forward's queries too (a chunked forward).
        let total = k.dim(2)?;
        let offset = total - t;
        let block = ctx
            .query_block
            .unwrap_or_else(|| query_block(b * h, total))
            .max(1);
        // The relative bias goes onto each block's scores in place on CPU (see `add_bias`).
        let in_place = match (ctx.slopes, ctx.bias_form) {
            (Some(m), BiasForm::Relative) if q.device().is_cpu() => {
                InPlaceBias::Alibi(m.to_vec1::<f32>()?)
            }
            (None, _) if q.device().is_cpu() => InPlaceBias::MaskOnly,
            _ => InPlaceBias::No,
        };
        let mut outs = Vec::with_capacity(t.div_ceil(block));
        let mut captured: Vec<Vec<Tensor>> = vec![Vec::new(); capture.len()];
        let mut start = 0;
        while start < t {
            check_interrupt(ctx.interrupt)?;
            let len = block.min(t - start);
            let keys = offset + start + len;
            let q_blk = q.narrow(2, start, len)?; // (b, h, len, hd)
            let k_blk = k.narrow(2, 0, keys)?.contiguous()?; // (b, h, keys, hd)
            let v_blk = v.narrow(2, 0, keys)?.contiguous()?;
            let scores = q_blk
                .contiguous()?
                .matmul(&k_blk.t()?)?
                .to_dtype(DType::F32)?; // (b, h, len, keys)
            let scores = add_bias(scores, ctx, &in_place, offset + start)?;
            let scores = apply_key_mask(scores, ctx, offset + start)?;
            let probs = softmax_last_dim(&scores)?; // (b, h, len, keys)
            if let Some(heads) = stats.as_deref_mut() {
                accumulate_block(heads, &probs, offset + start)?;
            }
            for (slot, &head) in captured.iter_mut().zip(capture) {
                let p = probs.narrow(1, head, 1)?.squeeze(1)?; // (b, len, keys)
                let p = if keys < total {
                    let pad = Tensor::zeros((b, len, total - keys), DType::F32, q.device())?;
                    Tensor::cat(&[&p, &pad], 2)?
                } else {
                    p
                };
                slot.push(p);
            }
            outs.push(probs.to_dtype(v.dtype())?.matmul(&v_blk)?);
            start += len;
        }
        let y = Tensor::cat(&outs, 2)?;
        let maps = captured
            .into_iter()
            .map(|parts| Tensor::cat(&parts, 1))
            .collect::<Result<Vec<_>>>()?;
        Ok((y, maps))
    }
}

/// Whether [`add_bias`] adds the bias to the scores in place (CPU), and which.
enum InPlaceBias {
    /// The relative ALiBi bias with these slopes.
    Alibi(Vec<f32>),
    /// The causal mask alone (no ALiBi).
    MaskOnly,
    /// Not in place: the bias block is built ([`alibi_bias`]); a GPU, or Falcon's bf16 form.
    No,
}

/// Scores `(b, h, len, keys)` of queries from `q_start` plus the ALiBi bias (or the causal mask):
/// in place with one pass where `in_place` says so ([`AddCausalBias`]; the same sums as adding
/// the block), otherwise by adding the block.
fn add_bias(scores: Tensor, ctx: &Ctx, in_place: &InPlaceBias, q_start: usize) -> Result<Tensor> {
    let (_, _, len, keys) = scores.dims4()?;
    let slopes = match in_place {
        InPlaceBias::Alibi(m) => Some(m.clone()),
        InPlaceBias::MaskOnly => None,
        InPlaceBias::No => {
            let bias = alibi_bias(
                ctx.slopes,
                ctx.bias_form,
                q_start,
                len,
                keys,
                scores.device(),
            )?;
            return scores.broadcast_add(&bias.unsqueeze(0)?);
        }
    };
    scores.inplace_op1(&AddCausalBias { slopes, q_start })?;
    Ok(scores)
}

/// Scores `(b, h, len, keys)` of queries from `q_start` (biased and causally masked) with a
/// window or sinks recipe applied: keys the query does not keep get -inf, and under ALiBi a sink
/// outside the window gets back `slope x gap` of its bias, so its distance is counted inside the
/// kept cache (StreamingLLM). Unchanged without a key mask.
fn apply_key_mask(scores: Tensor, ctx: &Ctx, q_start: usize) -> Result<Tensor> {
    let Some(mask) = ctx.key_mask else {
        return Ok(scores);
    };
    let (_, _, len, keys) = scores.dims4()?;
    if mask.keeps_all(q_start + len) {
        return Ok(scores);
    }
    let slopes: Option<Vec<f32>> = match ctx.slopes {
        Some(m) if mask.sinks > 0 => Some(m.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        _ => None,
    };
    let heads = slopes.as_ref().map_or(1, Vec::len);
    let mut add = vec![0f32; heads * len * keys];
    for h in 0..heads {
        let m = slopes.as_ref().map_or(0.0, |s| s[h]);
        for r in 0..len {
            let i = q_start + r;
            let row = &mut add[(h * len + r) * keys..(h * len + r + 1) * keys];
            for (j, cell) in row.iter_mut().enumerate().take((i + 1).min(keys)) {
                if !mask.keeps(i, j) {
                    *cell = f32::NEG_INFINITY;
                } else if i - j >= mask.window {
                    *cell = m * mask.gap(i) as f32;
                }
            }
        }
    }
    let add = Tensor::from_vec(add, (1, heads, len, keys), scores.device())?;
    scores.broadcast_add(&add)
}

/// Softmax over keys: the vectorised kernel on CPU (scores are f32), candle's fused op elsewhere.
fn softmax_last_dim(scores: &Tensor) -> Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        scores.contiguous()?.apply_op1_no_bwd(&SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax_last_dim(scores)
    }
}

/// The query-block size for `rows` (batch*heads) score rows of `len` keys.
pub fn query_block(rows: usize, len: usize) -> usize {
    let fit = SCORE_BLOCK_ELEMENTS / (rows.max(1) * len.max(1));
    let fit = (fit / MIN_QUERY_BLOCK * MIN_QUERY_BLOCK).max(MIN_QUERY_BLOCK);
    fit.min(len.max(1))
}
