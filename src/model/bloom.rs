//! BigScience BLOOM checkpoints (`model_type: bloom`): config and tensor-name mapping.
//!
//! Follows the reference forward of Hugging Face transformers' `models/bloom/modeling_bloom.py`
//! (checked against 5.24.0; see `scripts/FIXTURES.md`): a word-embedding LayerNorm, pre-LayerNorm
//! blocks with biases everywhere, tanh GELU, a tied LM head, and the paper's ALiBi slopes added to
//! `q·k/sqrt(head_dim)`. The one real difference from our layout is the fused `query_key_value`
//! projection, whose rows are interleaved per head (q, k, v of head 0, then head 1, ...); it is
//! permuted into our `[Q | K | V]` blocks at load time.

use super::config::{Activation, Arch, Config, Position};
use super::family::Family;
use candle_core::{Result, Tensor};
use serde::Deserialize;

/// The context length BLOOM was trained with; its config does not record it.
pub const BLOOM_TRAIN_LEN_TOKENS: usize = 2048;

fn default_vocab() -> usize {
    250_880
}
fn default_hidden() -> usize {
    64
}
fn default_layers() -> usize {
    2
}
fn default_heads() -> usize {
    8
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}

/// The fields of a BLOOM `config.json` that decide the computation. Missing fields take the
/// defaults of transformers' `BloomConfig`; unknown fields (dropouts, token ids, ...) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RawBloomConfig {
    /// Vocabulary size.
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Width of the residual stream (`n_embed` in the oldest configs).
    #[serde(default = "default_hidden", alias = "n_embed")]
    pub hidden_size: usize,
    /// Number of blocks.
    #[serde(default = "default_layers", alias = "num_hidden_layers")]
    pub n_layer: usize,
    /// Attention heads.
    #[serde(default = "default_heads", alias = "num_attention_heads")]
    pub n_head: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Residual taken after the LayerNorm instead of before it (not supported).
    #[serde(default)]
    pub apply_residual_connection_post_layernorm: bool,
    /// The LM head shares the word embedding.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Training context length, when a config records it.
    #[serde(default)]
    pub seq_length: Option<usize>,
    /// The dtype the weights were saved in (`torch_dtype`, `dtype` in newer configs).
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
}

/// Converts a BLOOM config into the normalised [`Config`].
///
/// `train_len` is `seq_length` when present, else 2048 (the BLOOM paper's training context);
/// there is no hard `max_len`, since ALiBi is meant to extrapolate.
pub fn to_config(raw: &RawBloomConfig) -> std::result::Result<Config, String> {
    if raw.apply_residual_connection_post_layernorm {
        return Err(
            "BLOOM with apply_residual_connection_post_layernorm=true is not supported \
             (the residual would skip the LayerNorm; every released BLOOM uses false)"
                .to_string(),
        );
    }
    let d_ff = raw.hidden_size.checked_mul(4).ok_or_else(|| {
        format!(
            "BLOOM hidden_size {} is too large (the MLP width 4*hidden_size does not fit)",
            raw.hidden_size
        )
    })?;
    let mut cfg = Config::ours(
        raw.vocab_size,
        raw.hidden_size,
        raw.n_layer,
        raw.n_head,
        d_ff,
        Position::Alibi,
        raw.seq_length.unwrap_or(BLOOM_TRAIN_LEN_TOKENS),
    );
    cfg.arch = Arch::Bloom;
    cfg.layer_norm_eps = raw.layer_norm_epsilon;
    cfg.linear_bias = true;
    cfg.norm_bias = true;
    cfg.embed_norm = true;
    cfg.embed_scale = 1.0;
    cfg.tie_embeddings = raw.tie_word_embeddings;
    cfg.activation = Activation::GeluTanh;
    // Checked before the slopes are built: their length is n_head.
    cfg.validate_hf()?;
    cfg.slopes = Some(crate::alibi::bloom_slopes(raw.n_head));
    cfg.saved_dtype = raw.dtype.as_deref().and_then(super::family::hf_dtype_name);
    cfg.validate_hf()?;
    Ok(cfg)
}

/// Our tensor names and BLOOM's (without the optional `transformer.` prefix); `{i}` is the block.
/// The embedding LayerNorm's two entries come first: Falcon-RW's names are the rest
/// ([`super::falcon::TENSOR_NAMES`]).
pub const TENSOR_NAMES: &[(&str, &str)] = &[
    ("emb_norm.weight", "word_embeddings_layernorm.weight"),
    ("emb_norm.bias", "word_embeddings_layernorm.bias"),
    ("tok_emb.weight", "word_embeddings.weight"),
    ("blocks.{i}.ln1.weight", "h.{i}.input_layernorm.weight"),
    ("blocks.{i}.ln1.bias", "h.{i}.input_layernorm.bias"),
    (
        "blocks.{i}.attn.qkv.weight",
        "h.{i}.self_attention.query_key_value.weight",
    ),
    (
        "blocks.{i}.attn.qkv.bias",
        "h.{i}.self_attention.query_key_value.bias",
    ),
    (
        "blocks.{i}.attn.out.weight",
        "h.{i}.self_attention.dense.weight",
    ),
    (
        "blocks.{i}.attn.out.bias",
        "h.{i}.self_attention.dense.bias",
    ),
    (
        "blocks.{i}.ln2.weight",
        "h.{i}.post_attention_layernorm.weight",
    ),
    ("blocks.{i}.ln2.bias", "h.{i}.post_attention_layernorm.bias"),
    ("blocks.{i}.mlp.up.weight", "h.{i}.mlp.dense_h_to_4h.weight"),
    ("blocks.{i}.mlp.up.bias", "h.{i}.mlp.dense_h_to_4h.bias"),
    (
        "blocks.{i}.mlp.down.weight",
        "h.{i}.mlp.dense_4h_to_h.weight",
    ),
    ("blocks.{i}.mlp.down.bias", "h.{i}.mlp.dense_4h_to_h.bias"),
    ("ln_f.weight", "ln_f.weight"),
    ("ln_f.bias", "ln_f.bias"),
    ("lm_head.weight", "lm_head.weight"),
];

/// Permutes the rows of a fused projection from BLOOM's per-head `[q_h, k_h, v_h]` interleaving
/// into `[Q | K | V]` blocks (head-major inside each), for the weight `(3d, d)` and bias `(3d,)`.
pub fn qkv_per_head_to_blocks(t: &Tensor, n_heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let head_dim = rows / (3 * n_heads);
    let rest: Vec<usize> = dims[1..].to_vec();
    let mut split = vec![n_heads, 3, head_dim];
    split.extend(&rest);
    // (heads, 3, head_dim, ..) -> (3, heads, head_dim, ..) -> (3d, ..)
    t.reshape(split)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape(dims)
}

/// Re-lays out one tensor, named with our name, after it is read from a BLOOM checkpoint.
pub fn relayout(cfg: &Config, ours: &str, t: Tensor) -> Result<Tensor> {
    if ours.ends_with(".attn.qkv.weight") || ours.ends_with(".attn.qkv.bias") {
        qkv_per_head_to_blocks(&t, cfg.n_heads)
    } else {
        Ok(t)
    }
}

/// BLOOM's entry for the foreign-checkpoint loader.
pub const FAMILY: Family = Family {
    arch: Arch::Bloom,
    names: TENSOR_NAMES,
    relayout,
    unexpected_hint: |_| None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn qkv_rows_are_regrouped() {
        // 2 heads of width 2: rows q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1, tagged by their value.
        let tags: Vec<f32> = vec![10., 11., 20., 21., 30., 31., 12., 13., 22., 23., 32., 33.];
        let bias = Tensor::from_vec(tags.clone(), 12, &Device::Cpu).unwrap();
        let got = qkv_per_head_to_blocks(&bias, 2)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(
            got,
            [10., 11., 12., 13., 20., 21., 22., 23., 30., 31., 32., 33.]
        );
        let w = Tensor::from_vec(tags.repeat(3), (3, 12), &Device::Cpu)
            .unwrap()
            .t()
            .unwrap()
            .contiguous()
            .unwrap(); // (12, 3): row r is tags[r] three times
        let got = qkv_per_head_to_blocks(&w, 2).unwrap();
        let first_col: Vec<f32> = got
            .narrow(1, 0, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            first_col,
            [10., 11., 12., 13., 20., 21., 22., 23., 30., 31., 32., 33.]
        );
    }

    #[test]
    fn config_defaults_and_refusals() {
        let raw: RawBloomConfig = serde_json::from_str(
            r#"{"model_type":"bloom","n_embed":96,"num_attention_heads":6,"n_layer":3,"vocab_size":50}"#,
        )
        .unwrap();
        let cfg = to_config(&raw).unwrap();
        assert_eq!((cfg.d_model, cfg.n_heads, cfg.d_ff), (96, 6, 384));
        assert_eq!(cfg.train_len, BLOOM_TRAIN_LEN_TOKENS);
        assert_eq!(cfg.max_len, None);
        assert_eq!(cfg.embed_scale, 1.0);
        assert_eq!(cfg.slopes, Some(crate::alibi::paper_slopes(6)));
        let mut raw = raw;
        raw.apply_residual_connection_post_layernorm = true;
        assert!(to_config(&raw).unwrap_err().contains("post_layernorm"));
    }
}
