//! The decoder-only, pre-LayerNorm transformer every checkpoint runs on.
//!
//! After candle-transformers' `models/llama.rs` and `models/mpt.rs`: modules are structs with
//! `new(cfg, vb)` and `forward`. Slopes are data: attention takes a `(heads,)` slope tensor at run
//! time so the TUI can swap them without reloading weights. Inference computes attention in query
//! blocks (flash-style) so memory stays linear in the number of heads and layers; training uses
//! the full score matrix through ops that record gradients (the fused candle ops record none).

use super::attention_stats::{AttentionStats, HeadSums};
use super::config::{Config, Position};
use super::kernels::LogSumExpUpdate;
use super::position::{rotary_tables, sinusoidal_rows};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};
use std::sync::Arc;

mod attention;
mod layers;

use attention::{Attention, Ctx};
pub use attention::{LayerCache, MIN_QUERY_BLOCK, SCORE_BLOCK_ELEMENTS, query_block};
use layers::Mlp;
pub use layers::{LM_HEAD_CHUNK_TOKENS, LayerNorm};
use std::sync::atomic::AtomicBool;

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
    /// Stop after the last layer with a capture: only the attention maps are wanted, and the
    /// returned `hidden` is that layer's output (no final LayerNorm). A map of layer `l` then costs
    /// `l + 1` layers instead of the whole model.
    pub capture_only: bool,
    /// A window or sinks recipe ([`crate::alibi::recipe::KeyMask`]): keys outside it are
    /// masked, and ALiBi distances to sinks are counted inside the kept cache.
    pub key_mask: Option<crate::alibi::recipe::KeyMask>,
    /// Checked between layers: when set, the forward stops with [`INTERRUPTED`] (the TUI's worker
    /// sets it when a more urgent job arrives, and runs this one again later).
    pub interrupt: Option<Arc<AtomicBool>>,
}

pub(crate) use attention::check_interrupt;
pub use attention::{INTERRUPTED, STOPPED};

/// Whether `e` is a forward stopped by [`ForwardOptions::interrupt`].
pub fn is_interrupted(e: &candle_core::Error) -> bool {
    e.to_string().starts_with(INTERRUPTED)
}

/// What the position scheme needs at run time, for positions `0..len`: the slopes (ALiBi) or the
/// rotary tables. Built once per forward (or once per chunked window).
#[derive(Debug, Clone)]
pub struct PositionInputs {
    slopes: Option<Tensor>,
    rotary: Option<(Tensor, Tensor)>,
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
        cache: Option<&mut LayerCache>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (a, probs) =
            self.attn
                .forward(&self.ln1.forward(x, ctx.train)?, ctx, capture, stats, cache)?;
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
        self.check_len(t)?;
        let pos = self.position_inputs(t, opts.slopes.as_ref())?;
        let mut x = self.embed(tokens, 0, opts.train)?;
        let mut captured = Vec::new();
        let mut stats = opts
            .stats
            .then(|| AttentionStats::new(self.cfg.n_layers, self.cfg.n_heads));
        let last = match opts.capture.iter().map(|&(l, _)| l).max() {
            Some(l) if opts.capture_only => l.min(self.cfg.n_layers.saturating_sub(1)),
            _ => self.cfg.n_layers.saturating_sub(1),
        };
        for layer in 0..=last {
            check_interrupt(opts.interrupt.as_deref())?;
            let heads: Vec<usize> = opts
                .capture
                .iter()
                .filter(|(l, _)| *l == layer)
                .map(|(_, h)| *h)
                .collect();
            let layer_stats = stats.as_mut().map(|s| s.layer_mut(layer));
            let (y, probs) =
                self.layer_forward(layer, &x, 0, &pos, opts, &heads, layer_stats, None)?;
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
        let hidden = if opts.capture_only && last + 1 < self.cfg.n_layers {
            x
        } else {
            self.final_norm(&x, opts.train)?
        };
        Ok(ForwardOutput {
            hidden,
            captured: ordered,
            stats,
        })
    }

    /// Fails when `len` tokens exceed the model's limit (MPT's `max_seq_len`).
    pub fn check_len(&self, len: usize) -> Result<()> {
        if let Some(max) = self.cfg.max_len
            && len > max
        {
            candle_core::bail!("input of {len} tokens exceeds the model's limit of {max} tokens");
        }
        Ok(())
    }

    /// The position scheme's run-time inputs for positions `0..len`: `slopes` (an override of the
    /// model's own, ALiBi only) or the rotary tables.
    pub fn position_inputs(&self, len: usize, slopes: Option<&Tensor>) -> Result<PositionInputs> {
        let mut out = PositionInputs {
            slopes: None,
            rotary: None,
        };
        match self.cfg.position {
            Position::Alibi => {
                out.slopes = Some(slopes.cloned().unwrap_or_else(|| self.slopes.clone()));
            }
            Position::Rotary => {
                out.rotary = Some(rotary_tables(
                    len,
                    self.cfg.head_dim(),
                    self.cfg.rotary_base,
                    self.dtype,
                    &self.device,
                )?);
            }
            Position::Sinusoidal | Position::None => {}
        }
        Ok(out)
    }

    /// The input of the first block for `tokens` `(batch, len)` at positions
    /// `offset..offset+len`: embeddings, their scale and norm, sinusoidal positions.
    pub fn embed(&self, tokens: &Tensor, offset: usize, train: bool) -> Result<Tensor> {
        let (_, t) = tokens.dims2()?;
        let mut x = self.tok_emb.forward(tokens)?;
        if (self.cfg.embed_scale - 1.0).abs() > f64::EPSILON {
            x = (x * self.cfg.embed_scale)?;
        }
        if let Some(n) = &self.emb_norm {
            x = n.forward(&x, train)?;
        }
        if self.cfg.position == Position::Sinusoidal {
            let pe = sinusoidal_rows(offset, t, self.cfg.d_model, x.dtype(), &self.device)?;
            x = x.broadcast_add(&pe)?;
        }
        Ok(x)
    }

    /// Runs block `layer` on `x` `(batch, len, d_model)` at positions `offset..offset+len`,
    /// capturing the attention of `capture`'s heads and accumulating `stats`. A chunked forward
    /// passes the layer's `cache` (positions before `offset` already in it).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_forward(
        &self,
        layer: usize,
        x: &Tensor,
        offset: usize,
        pos: &PositionInputs,
        opts: &ForwardOptions,
        capture: &[usize],
        stats: Option<&mut [HeadSums]>,
        cache: Option<&mut LayerCache>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let Some(block) = self.blocks.get(layer) else {
            candle_core::bail!(
                "layer {layer} does not exist (the model has {} layers)",
                self.cfg.n_layers
            );
        };
        let ctx = Ctx {
            head_mask: self.head_mask(&opts.knockout, layer)?,
            offset,
            train: opts.train,
            query_block: opts.query_block,
            slopes: pos.slopes.as_ref(),
            bias_form: self.cfg.bias_form(),
            rotary: pos.rotary.as_ref(),
            key_mask: opts.key_mask,
            interrupt: opts.interrupt.as_deref(),
        };
        block.forward(x, &ctx, capture, stats, cache)
    }

    /// The final LayerNorm (hidden states as [`Self::nll`] and [`Self::logits`] take them).
    pub fn final_norm(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.ln_f.forward(x, train)
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
    ///
    /// At inference on CPU each chunk is also projected a slice of the vocabulary at a time
    /// ([`LM_HEAD_SLICE_ROWS`]) and folded into a running log-sum-exp: the logits a chunk needs
    /// stay small enough to be reused and to sit in the cache, instead of a fresh 500 MB block per
    /// chunk whose first touch (page faults) cost about half as much as its matmul.
    pub fn nll(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if hidden.device().is_cpu() && !hidden.track_op() && !self.lm_head.track_op() {
            return self.nll_sliced(hidden, targets);
        }
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

impl Transformer {
    /// [`Self::nll`] a vocabulary slice at a time (no gradient; CPU).
    fn nll_sliced(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let (b, t, d) = hidden.dims3()?;
        let vocab = self.lm_head.dim(0)?;
        let rows = hidden.contiguous()?.reshape((b * t, d))?;
        let targets = targets.flatten_all()?.contiguous()?;
        let init: Vec<f32> = (0..b * t)
            .flat_map(|_| [f32::NEG_INFINITY, 0.0, 0.0])
            .collect();
        let state = Tensor::from_vec(init, (b * t, 3), &self.device)?;
        let mut start = 0;
        while start < b * t {
            let len = LM_HEAD_CHUNK_TOKENS.min(b * t - start);
            let h = rows.narrow(0, start, len)?;
            let (st, tgt) = (state.narrow(0, start, len)?, targets.narrow(0, start, len)?);
            let mut v0 = 0;
            while v0 < vocab {
                let n = LM_HEAD_SLICE_ROWS.min(vocab - v0);
                let w = self.lm_head.narrow(0, v0, n)?;
                let logits = h.matmul(&w.t()?)?.to_dtype(DType::F32)?; // (len, n)
                st.inplace_op3(&logits, &tgt, &LogSumExpUpdate { vocab_start: v0 })?;
                v0 += n;
            }
            start += len;
        }
        let nll: Vec<f32> = state
            .to_vec2::<f32>()?
            .iter()
            .map(|s| s[0] + s[1].ln() - s[2])
            .collect();
        Tensor::from_vec(nll, (b, t), &self.device)
    }
}

/// Vocabulary rows per slice of the output projection in [`Transformer::nll`] at inference on CPU
/// (512 tokens x 16,384 rows of f32 logits: 32 MB).
pub const LM_HEAD_SLICE_ROWS: usize = 16_384;

/// Slopes as the `(heads,)` f32 tensor attention takes.
pub fn slopes_tensor(slopes: &[f64], device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = slopes.iter().map(|&m| m as f32).collect();
    Tensor::from_vec(v, slopes.len(), device)
}
