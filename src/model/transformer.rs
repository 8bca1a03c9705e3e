//! The decoder-only, pre-LayerNorm transformer every checkpoint runs on.
//!
//! After candle-transformers' `models/llama.rs` and `models/mpt.rs`: modules are structs with
//! `new(cfg, vb)` and `forward`. Slopes are data: attention takes a `(heads,)` slope tensor at run
//! time so the TUI can swap them without reloading weights. Inference computes attention in query
//! blocks (flash-style) so memory stays linear in the number of heads and layers; training uses
//! the full score matrix through ops that record gradients (the fused candle ops record none).

use super::attention_stats::{AttentionStats, HeadSums, accumulate_block};
use super::config::{Activation, Config, Position};
use super::position::{BiasForm, alibi_bias, apply_rotary, rotary_tables, sinusoidal_table};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

/// Upper bound on the elements of one block of attention scores (`batch*heads*q_block*keys`).
pub const SCORE_BLOCK_ELEMENTS: usize = 1 << 23;
/// The smallest query block used by blocked attention.
pub const MIN_QUERY_BLOCK: usize = 16;
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

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get((out_dim, in_dim), "weight")?;
    let b = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear::new(w, b))
}

/// What one forward pass should do besides computing hidden states.
#[derive(Debug, Clone, Default)]
pub struct ForwardOptions {
    /// Per-head ALiBi slopes `(heads,)` in f32 replacing the model's own (ALiBi models only).
    pub slopes: Option<Tensor>,
    /// `(layer, head)` pairs whose attention probabilities are returned.
    pub capture: Vec<(usize, usize)>,
    /// Record gradients (full attention, differentiable ops).
    pub train: bool,
    /// Force this query-block size in blocked attention (tests and benchmarks).
    pub query_block: Option<usize>,
    /// Accumulate attention statistics of every (layer, head) (see [`AttentionStats`]) while
    /// attending, one query block at a time.
    pub stats: bool,
    /// `(layer, head)` pairs whose attention output is zeroed before the output projection
    /// (knock-out ablation).
    pub knockout: Vec<(usize, usize)>,
}

/// Attention probabilities of one head, `(batch, len, len)` f32, rows = queries.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// The probabilities.
    pub probs: Tensor,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// Final hidden states after the last LayerNorm, `(batch, len, d_model)`.
    pub hidden: Tensor,
    /// The requested attention maps, in request order.
    pub captured: Vec<Captured>,
    /// Attention statistics of every head, when [`ForwardOptions::stats`] is set.
    pub stats: Option<AttentionStats>,
}

struct Ctx<'a> {
    /// `(1, heads, 1, 1)` multipliers for this layer's head outputs (0 = knocked out).
    head_mask: Option<Tensor>,
    train: bool,
    query_block: Option<usize>,
    slopes: Option<&'a Tensor>,
    /// How the ALiBi bias is built from `slopes` (Falcon-RW rounds it in bf16).
    bias_form: BiasForm,
    rotary: Option<&'a (Tensor, Tensor)>,
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: Linear,
    out: Linear,
    q_norm: Option<LayerNorm>,
    k_norm: Option<LayerNorm>,
    n_heads: usize,
    head_dim: usize,
    clip_qkv: Option<f64>,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
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

    fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        capture: &[usize],
        stats: Option<&mut [HeadSums]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (b, t, d) = x.dims3()?;
        let mut qkv = self.qkv.forward(x)?; // (b, t, 3d)
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
            let cos = cos.narrow(0, 0, t)?;
            let sin = sin.narrow(0, 0, t)?;
            q = apply_rotary(&q, &cos, &sin)?;
            k = apply_rotary(&k, &cos, &sin)?;
        }
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
        Ok((self.out.forward(&y)?, probs))
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
        let block = ctx
            .query_block
            .unwrap_or_else(|| query_block(b * h, t))
            .max(1);
        let mut outs = Vec::with_capacity(t.div_ceil(block));
        let mut captured: Vec<Vec<Tensor>> = vec![Vec::new(); capture.len()];
        let mut start = 0;
        while start < t {
            let len = block.min(t - start);
            let keys = start + len;
            let q_blk = q.narrow(2, start, len)?; // (b, h, len, hd)
            let k_blk = k.narrow(2, 0, keys)?.contiguous()?; // (b, h, keys, hd)
            let v_blk = v.narrow(2, 0, keys)?.contiguous()?;
            let scores = q_blk
                .contiguous()?
                .matmul(&k_blk.t()?)?
                .to_dtype(DType::F32)?; // (b, h, len, keys)
            let bias = alibi_bias(ctx.slopes, ctx.bias_form, start, len, keys, q.device())?;
            let scores = scores.broadcast_add(&bias.unsqueeze(0)?)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?; // (b, h, len, keys)
            if let Some(heads) = stats.as_deref_mut() {
                accumulate_block(heads, &probs, start)?;
            }
            for (slot, &head) in captured.iter_mut().zip(capture) {
                let p = probs.narrow(1, head, 1)?.squeeze(1)?; // (b, len, keys)
                let p = if keys < t {
                    let pad = Tensor::zeros((b, len, t - keys), DType::F32, q.device())?;
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

/// The query-block size for `rows` (batch*heads) score rows of `len` keys.
pub fn query_block(rows: usize, len: usize) -> usize {
    let fit = SCORE_BLOCK_ELEMENTS / (rows.max(1) * len.max(1));
    let fit = (fit / MIN_QUERY_BLOCK * MIN_QUERY_BLOCK).max(MIN_QUERY_BLOCK);
    fit.min(len.max(1))
}

#[derive(Debug, Clone)]
struct Mlp {
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            up: linear(cfg.d_model, cfg.d_ff, cfg.linear_bias, vb.pp("up"))?,
            down: linear(cfg.d_ff, cfg.d_model, cfg.linear_bias, vb.pp("down"))?,
            activation: cfg.activation,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.up.forward(x)?;
        let h = match self.activation {
            Activation::GeluTanh if train => super::ops::gelu_tanh_train(&h)?,
            Activation::GeluTanh => h.gelu()?,
            Activation::GeluErf => h.gelu_erf()?,
        };
        self.down.forward(&h)
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let ln = |name: &str| {
            LayerNorm::new(cfg.d_model, cfg.norm_bias, cfg.layer_norm_eps, vb.pp(name))
        };
        Ok(Self {
            ln1: ln("ln1")?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            ln2: ln("ln2")?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        ctx: &Ctx,
        capture: &[usize],
        stats: Option<&mut [HeadSums]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (a, probs) =
            self.attn
                .forward(&self.ln1.forward(x, ctx.train)?, ctx, capture, stats)?;
        let x = (x + a)?;
        let m = self
            .mlp
            .forward(&self.ln2.forward(&x, ctx.train)?, ctx.train)?;
        Ok(((x + m)?, probs))
    }
}

/// A decoder-only transformer with one of the four position schemes.
#[derive(Debug, Clone)]
pub struct Transformer {
    cfg: Config,
    tok_emb: Embedding,
    emb_norm: Option<LayerNorm>,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Tensor,
    slopes: Tensor,
    device: Device,
    dtype: DType,
}

impl Transformer {
    /// Builds the model from `vb`, whose paths follow our checkpoint names
    /// (`tok_emb.weight`, `blocks.{i}.attn.qkv.weight`, ...).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        if let Err(e) = cfg.validate() {
            candle_core::bail!("invalid config: {e}");
        }
        let tok = vb.get((cfg.vocab_size, cfg.d_model), "tok_emb.weight")?;
        let emb_norm = if cfg.embed_norm {
            Some(LayerNorm::new(
                cfg.d_model,
                cfg.norm_bias,
                cfg.layer_norm_eps,
                vb.pp("emb_norm"),
            )?)
        } else {
            None
        };
        let blocks = (0..cfg.n_layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(
            cfg.d_model,
            cfg.norm_bias,
            cfg.layer_norm_eps,
            vb.pp("ln_f"),
        )?;
        let lm_head = if cfg.tie_embeddings {
            tok.clone()
        } else {
            vb.get((cfg.vocab_size, cfg.d_model), "lm_head.weight")?
        };
        let slopes = slopes_tensor(&cfg.default_slopes(), vb.device())?;
        Ok(Self {
            cfg: cfg.clone(),
            tok_emb: Embedding::new(tok.clone(), cfg.d_model),
            emb_norm,
            blocks,
            ln_f,
            lm_head,
            slopes,
            device: vb.device().clone(),
            dtype: tok.dtype(),
        })
    }

    /// The normalised config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The model's own slopes as an f32 `(heads,)` tensor.
    pub fn slopes(&self) -> &Tensor {
        &self.slopes
    }

    /// Runs the blocks over `tokens` `(batch, len)` (u32) and returns the final hidden states
    /// plus any requested attention maps.
    pub fn forward_hidden(&self, tokens: &Tensor, opts: &ForwardOptions) -> Result<ForwardOutput> {
        let (_, t) = tokens.dims2()?;
        if let Some(max) = self.cfg.max_len
            && t > max
        {
            candle_core::bail!("input of {t} tokens exceeds the model's limit of {max} tokens");
        }
        let mut x = self.tok_emb.forward(tokens)?;
        if (self.cfg.embed_scale - 1.0).abs() > f64::EPSILON {
            x = (x * self.cfg.embed_scale)?;
        }
        if let Some(n) = &self.emb_norm {
            x = n.forward(&x, opts.train)?;
        }
        let rotary;
        let slopes;
        let mut ctx = Ctx {
            head_mask: None,
            train: opts.train,
            query_block: opts.query_block,
            slopes: None,
            bias_form: self.cfg.bias_form(),
            rotary: None,
        };
        match self.cfg.position {
            Position::Alibi => {
                slopes = opts.slopes.clone().unwrap_or_else(|| self.slopes.clone());
                ctx.slopes = Some(&slopes);
            }
            Position::Sinusoidal => {
                let pe = sinusoidal_table(t, self.cfg.d_model, x.dtype(), &self.device)?;
                x = x.broadcast_add(&pe)?;
            }
            Position::Rotary => {
                rotary = rotary_tables(
                    t,
                    self.cfg.head_dim(),
                    self.cfg.rotary_base,
                    x.dtype(),
                    &self.device,
                )?;
                ctx.rotary = Some(&rotary);
            }
            Position::None => {}
        }
        let mut captured = Vec::new();
        let mut stats = opts
            .stats
            .then(|| AttentionStats::new(self.cfg.n_layers, self.cfg.n_heads));
        for (layer, block) in self.blocks.iter().enumerate() {
            let heads: Vec<usize> = opts
                .capture
                .iter()
                .filter(|(l, _)| *l == layer)
                .map(|(_, h)| *h)
                .collect();
            let layer_stats = stats.as_mut().map(|s| s.layer_mut(layer));
            ctx.head_mask = self.head_mask(&opts.knockout, layer)?;
            let (y, probs) = block.forward(&x, &ctx, &heads, layer_stats)?;
            x = y;
            captured.extend(heads.into_iter().zip(probs).map(|(head, probs)| Captured {
                layer,
                head,
                probs,
            }));
        }
        // Return captures in the order they were asked for.
        let mut ordered = Vec::with_capacity(captured.len());
        for &(l, h) in &opts.capture {
            if let Some(i) = captured.iter().position(|c| c.layer == l && c.head == h) {
                ordered.push(captured.swap_remove(i));
            }
        }
        Ok(ForwardOutput {
            hidden: self.ln_f.forward(&x, opts.train)?,
            captured: ordered,
            stats,
        })
    }

    /// The `(1, heads, 1, 1)` mask that zeroes the knocked-out heads of `layer`, if any.
    fn head_mask(&self, knockout: &[(usize, usize)], layer: usize) -> Result<Option<Tensor>> {
        if !knockout.iter().any(|&(l, _)| l == layer) {
            return Ok(None);
        }
        let mask: Vec<f32> = (0..self.cfg.n_heads)
            .map(|h| {
                if knockout.contains(&(layer, h)) {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Some(Tensor::from_vec(
            mask,
            (1, self.cfg.n_heads, 1, 1),
            &self.device,
        )?))
    }

    /// Logits `(batch, len, vocab)` in f32 for hidden states from [`Self::forward_hidden`].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, t, d) = hidden.dims3()?;
        hidden
            .reshape((b * t, d))?
            .matmul(&self.lm_head.t()?)?
            .reshape((b, t, ()))?
            .to_dtype(DType::F32)
    }

    /// Logits for `tokens` `(batch, len)`.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let out = self.forward_hidden(tokens, &ForwardOptions::default())?;
        self.logits(&out.hidden)
    }

    /// Per-position negative log-likelihood (nats, f32) of `targets` `(batch, len)` given hidden
    /// states `(batch, len, d)`. Projects onto the vocabulary in chunks of positions so the full
    /// logits are never held at once.
    pub fn nll(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let (_, t, _) = hidden.dims3()?;
        let mut parts = Vec::with_capacity(t.div_ceil(LM_HEAD_CHUNK_TOKENS));
        let mut start = 0;
        while start < t {
            let len = LM_HEAD_CHUNK_TOKENS.min(t - start);
            let logits = self.logits(&hidden.narrow(1, start, len)?)?; // (b, len, vocab)
            let (b, _, v) = logits.dims3()?;
            let tgt = targets
                .narrow(1, start, len)?
                .contiguous()?
                .reshape(b * len)?;
            let nll = super::ops::cross_entropy_rows(&logits.reshape((b * len, v))?, &tgt)?;
            parts.push(nll.reshape((b, len))?);
            start += len;
        }
        Tensor::cat(&parts, 1)
    }
}

/// Slopes as the `(heads,)` f32 tensor attention takes.
pub fn slopes_tensor(slopes: &[f64], device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = slopes.iter().map(|&m| m as f32).collect();
    Tensor::from_vec(v, slopes.len(), device)
}
