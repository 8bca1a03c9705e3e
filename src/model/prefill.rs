//! Long forwards run a piece at a time, so a caller (the TUI's worker) can stop between pieces,
//! answer something more urgent, and resume without losing work.
//!
//! - [`Prefill`]: one window scored in chunks of positions, one layer of one chunk per step, with
//!   every layer's keys and values kept for the chunks after it (the "chunked prefill" of
//!   inference servers such as vLLM). Position `p` attends to exactly the keys and biases it has in
//!   one whole forward, so the losses are those of the whole window (only the order of float
//!   operations differs, ~1e-6), and the first chunk's losses arrive after a fraction of the time.
//! - [`LayerInputs`]: the input of every layer for one input, computed one layer at a time and
//!   kept, so the attention map of another head or layer costs one layer rather than a forward.
//!
//! Costs are estimated in FLOPs from the config ([`token_flops`]) to size chunks and report an ETA.

use super::config::Config;
use super::transformer::{ForwardOptions, LayerCache, PositionInputs, Transformer};
use candle_core::{DType, Result, Tensor};

/// A chunk of a long window costs about this many FLOPs through the whole model (a few seconds on
/// a 2-core CPU, ~0.1 s on a GPU): bloom-560m runs chunks of 256 tokens, our small models run
/// their windows whole.
pub const CHUNK_FLOPS: f64 = 3e11;
/// The smallest chunk of a chunked window.
pub const MIN_CHUNK_TOKENS: usize = 128;

/// Approximate FLOPs of one token through the whole model at context length `context`: the
/// projections and MLP (`2 x` their weights), attention over `context` keys, the LM head.
pub fn token_flops(cfg: &Config, context: usize) -> f64 {
    let (d, f, v) = (cfg.d_model as f64, cfg.d_ff as f64, cfg.vocab_size as f64);
    let layers = cfg.n_layers as f64;
    layers * layer_token_flops(d, f, context as f64) + 2.0 * v * d
}

fn layer_token_flops(d: f64, f: f64, keys: f64) -> f64 {
    // q/k/v + output projection (4 d^2), MLP (2 d f), scores and weighted values (2 x 2 d keys).
    2.0 * (4.0 * d * d + 2.0 * d * f) + 4.0 * d * keys
}

/// Tokens per chunk for `cfg`: the largest power of two whose chunk costs at most
/// [`CHUNK_FLOPS`] (at least [`MIN_CHUNK_TOKENS`]). A window no longer than this runs whole.
pub fn chunk_tokens(cfg: &Config) -> usize {
    let per_token = token_flops(cfg, 0).max(1.0);
    let fit = (CHUNK_FLOPS / per_token).max(1.0) as usize;
    let pow = if fit.is_power_of_two() {
        fit
    } else {
        fit.next_power_of_two() / 2
    };
    pow.max(MIN_CHUNK_TOKENS)
}

/// Bytes of the key/value cache of a chunked window of `len` tokens (every layer, keys and values).
pub fn cache_bytes(cfg: &Config, len: usize, dtype: DType) -> u64 {
    2 * cfg.n_layers as u64 * len as u64 * cfg.d_model as u64 * dtype.size_in_bytes() as u64
}

/// What one [`Prefill::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// One layer of the current chunk ran.
    Layer,
    /// A chunk was scored: the losses (nats) of window positions `offset..offset + nll.len()`.
    Scored {
        /// First position of the chunk in the window.
        offset: usize,
        /// Per-position NLL.
        nll: Vec<f32>,
    },
}

/// One window's forward and loss, run one (chunk, layer) at a time; see the module docs.
pub struct Prefill {
    ids: Vec<u32>,
    targets: Vec<u32>,
    chunk: usize,
    pos: PositionInputs,
    opts: ForwardOptions,
    caches: Vec<LayerCache>,
    /// Positions through every layer and scored.
    done: usize,
    /// The next layer of the current chunk (`n_layers` = the LM head and loss).
    layer: usize,
    x: Option<Tensor>,
    flops_done: f64,
    flops_total: f64,
}

impl Prefill {
    /// A window predicting `targets[p]` from `ids[..=p]` (equal lengths), in chunks of `chunk`
    /// positions (one chunk, and no cache, when `chunk >= ids.len()`). `opts` gives the slopes and
    /// knocked-out heads; captures and statistics are not taken.
    pub fn new(
        model: &Transformer,
        ids: &[u32],
        targets: &[u32],
        chunk: usize,
        opts: &ForwardOptions,
    ) -> Result<Self> {
        Self::reusing(model, ids, targets, chunk, opts, &mut Vec::new())
    }

    /// [`Self::new`], taking its key/value caches from `spare` where they fit (see
    /// [`Self::into_caches`]): a new window then starts without allocating and touching gigabytes
    /// (on a 2-core VM, zeroing bloom-560m's 2.7 GB again took 6 s before the first chunk).
    pub fn reusing(
        model: &Transformer,
        ids: &[u32],
        targets: &[u32],
        chunk: usize,
        opts: &ForwardOptions,
        spare: &mut Vec<LayerCache>,
    ) -> Result<Self> {
        let len = ids.len();
        if len == 0 || targets.len() != len {
            candle_core::bail!(
                "a window needs as many targets as inputs (got {len} inputs, {} targets)",
                targets.len()
            );
        }
        model.check_len(len)?;
        let chunk = chunk.clamp(1, len);
        let caches = if chunk < len {
            let (cfg, dtype, dev) = (model.config(), model.dtype(), model.device());
            (0..cfg.n_layers)
                .map(
                    |_| match spare.iter().position(|c| c.fits(cfg, 1, len, dtype, dev)) {
                        Some(i) => Ok(spare.swap_remove(i)),
                        None => LayerCache::new(cfg, 1, len, dtype, dev),
                    },
                )
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let mut me = Self {
            ids: ids.to_vec(),
            targets: targets.to_vec(),
            chunk,
            pos: model.position_inputs(len, opts.slopes.as_ref())?,
            opts: ForwardOptions {
                slopes: opts.slopes.clone(),
                knockout: opts.knockout.clone(),
                key_mask: opts.key_mask,
                ..Default::default()
            },
            caches,
            done: 0,
            layer: 0,
            x: None,
            flops_done: 0.0,
            flops_total: 0.0,
        };
        let mut total = 0.0;
        let mut at = 0;
        while at < len {
            let c = chunk.min(len - at);
            total += me.chunk_flops(model.config(), at, c);
            at += c;
        }
        me.flops_total = total;
        Ok(me)
    }

    fn chunk_flops(&self, cfg: &Config, offset: usize, c: usize) -> f64 {
        c as f64 * token_flops(cfg, offset + c / 2)
    }

    fn step_flops(&self, cfg: &Config) -> f64 {
        let c = self.chunk.min(self.ids.len() - self.done) as f64;
        let (d, f) = (cfg.d_model as f64, cfg.d_ff as f64);
        if self.layer < cfg.n_layers {
            c * layer_token_flops(d, f, self.done as f64 + c / 2.0)
        } else {
            c * 2.0 * cfg.vocab_size as f64 * d
        }
    }

    /// Runs the next piece: one layer of the current chunk, or its LM head and loss.
    pub fn step(&mut self, model: &Transformer) -> Result<Step> {
        if self.is_done() {
            candle_core::bail!("the window is already scored");
        }
        let n_layers = model.config().n_layers;
        let c = self.chunk.min(self.ids.len() - self.done);
        let dev = model.device();
        let flops = self.step_flops(model.config());
        let x = match self.x.take() {
            Some(x) => x,
            None => {
                let ids =
                    Tensor::from_vec(self.ids[self.done..self.done + c].to_vec(), (1, c), dev)?;
                model.embed(&ids, self.done, false)?
            }
        };
        if self.layer < n_layers {
            let cache = self.caches.get_mut(self.layer);
            let (y, _) = model.layer_forward(
                self.layer,
                &x,
                self.done,
                &self.pos,
                &self.opts,
                &[],
                None,
                cache,
            )?;
            self.x = Some(y);
            self.layer += 1;
            self.flops_done += flops;
            return Ok(Step::Layer);
        }
        let targets =
            Tensor::from_vec(self.targets[self.done..self.done + c].to_vec(), (1, c), dev)?;
        let hidden = model.final_norm(&x, false)?;
        let nll = model
            .nll(&hidden, &targets)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let offset = self.done;
        self.done += c;
        self.layer = 0;
        self.flops_done += flops;
        Ok(Step::Scored { offset, nll })
    }

    /// The key/value caches, for the next window to reuse ([`Self::reusing`]).
    pub fn into_caches(self) -> Vec<LayerCache> {
        self.caches
    }

    /// Whether every position is scored.
    pub fn is_done(&self) -> bool {
        self.done >= self.ids.len()
    }

    /// The window's length.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false (a window has at least one position); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Positions scored so far.
    pub fn positions_done(&self) -> usize {
        self.done
    }

    /// The layer the next step runs (`n_layers` = the LM head).
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The share of the estimated work done, in `[0, 1]`.
    pub fn fraction_done(&self) -> f64 {
        (self.flops_done / self.flops_total.max(1.0)).clamp(0.0, 1.0)
    }
}

/// The input of every layer for one input `(1, len)`, computed a layer at a time on demand and
/// kept: the attention map of layer `l` needs layers `0..l` once, then any head of any layer up
/// to `l` costs one layer.
pub struct LayerInputs {
    pos: PositionInputs,
    opts: ForwardOptions,
    /// `[l]` = the input of layer `l`, `(1, len, d_model)`.
    inputs: Vec<Tensor>,
}

impl LayerInputs {
    /// Embeds `ids` (slopes from `opts`, ALiBi only).
    pub fn new(model: &Transformer, ids: &[u32], opts: &ForwardOptions) -> Result<Self> {
        let len = ids.len();
        model.check_len(len)?;
        let x = Tensor::from_vec(ids.to_vec(), (1, len), model.device())?;
        Ok(Self {
            pos: model.position_inputs(len, opts.slopes.as_ref())?,
            opts: ForwardOptions {
                slopes: opts.slopes.clone(),
                key_mask: opts.key_mask,
                ..Default::default()
            },
            inputs: vec![model.embed(&x, 0, false)?],
        })
    }

    /// Layers whose input is known (`1..=n_layers`).
    pub fn known(&self) -> usize {
        self.inputs.len()
    }

    /// Runs one more layer (the first whose output is unknown); false when every layer's input
    /// is already known.
    pub fn advance(&mut self, model: &Transformer) -> Result<bool> {
        let layer = self.inputs.len() - 1;
        if layer + 1 >= model.config().n_layers {
            return Ok(false);
        }
        let (y, _) = model.layer_forward(
            layer,
            &self.inputs[layer],
            0,
            &self.pos,
            &self.opts,
            &[],
            None,
            None,
        )?;
        self.inputs.push(y);
        Ok(true)
    }

    /// Head `head`'s attention probabilities in `layer`, `(len, len)` f32 row-major (rows =
    /// queries); layer `layer`'s input must be known ([`Self::advance`] until `known() > layer`).
    pub fn attention(
        &mut self,
        model: &Transformer,
        layer: usize,
        head: usize,
    ) -> Result<Vec<f32>> {
        let Some(x) = self.inputs.get(layer) else {
            candle_core::bail!(
                "layer {layer}'s input is not computed yet ({} known)",
                self.inputs.len()
            );
        };
        let (y, probs) =
            model.layer_forward(layer, x, 0, &self.pos, &self.opts, &[head], None, None)?;
        if layer + 1 == self.inputs.len() && layer + 1 < model.config().n_layers {
            self.inputs.push(y);
        }
        probs
            .first()
            .ok_or_else(|| candle_core::Error::Msg("no attention captured".into()))?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()
    }
}
