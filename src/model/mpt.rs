//! MosaicML MPT checkpoints (`model_type: mpt`): config and tensor-name mapping.
//!
//! Follows the original MosaicML modeling code (`modeling_mpt.py` shipped with `mosaicml/mpt-7b`,
//! from llm-foundry) and, where they agree, Hugging Face transformers' `models/mpt/modeling_mpt.py`
//! (checked against 5.24.0; see `scripts/FIXTURES.md`): no embedding LayerNorm, pre-LayerNorm
//! blocks, a fused `Wqkv` already laid out as `[Q | K | V]`, optional clamping of that fused
//! output (`clip_qkv`), optional LayerNorms on queries and keys (`qk_ln`), exact (erf) GELU, a tied
//! LM head and ALiBi slopes from `gen_slopes(n_heads, alibi_bias_max)`.
//!
//! Where the two differ we follow the original, which is what the models were trained with:
//! - `attn_config.alibi_bias_max` sets the slopes; transformers ignores it and always uses 8 (every
//!   released MPT uses 8, so both agree on them).
//! - `qk_ln` adds LayerNorms on queries and keys; transformers ignores it.
//! - `no_bias: false` gives every Linear and LayerNorm a bias; transformers is always bias-free.
//! - The MLP width is `expansion_ratio * d_model`; transformers hard-codes `4 * d_model`.
//!
//! `max_seq_len` becomes `train_len` but not a hard limit: transformers cannot run past it, but
//! reading longer inputs than the training length is the point of ALiBi.

use super::config::{Activation, Arch, Config, Position};
use super::family::Family;
use candle_core::{Result, Tensor};
use serde::Deserialize;

/// The relative tolerance for accepting a configured `softmax_scale` as `1/sqrt(head_dim)`.
const SOFTMAX_SCALE_REL_TOL: f64 = 1e-6;

fn default_d_model() -> usize {
    2048
}
fn default_heads() -> usize {
    16
}
fn default_layers() -> usize {
    24
}
fn default_vocab() -> usize {
    50_368
}
fn default_expansion() -> f64 {
    4.0
}
fn default_max_seq_len() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_bias_max() -> f64 {
    crate::alibi::PAPER_MAX_BIAS
}
fn default_attn_type() -> String {
    "multihead_attention".to_string()
}

/// `attn_config` of an MPT `config.json`: the fields that decide the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct RawMptAttnConfig {
    /// ALiBi instead of learned positions (transformers' default: true).
    #[serde(default = "default_true")]
    pub alibi: bool,
    /// The maximum bias of the slope sequence.
    #[serde(default = "default_bias_max")]
    pub alibi_bias_max: f64,
    /// Clamp of the fused qkv output.
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    /// LayerNorms on queries and keys.
    #[serde(default)]
    pub qk_ln: bool,
    /// Per-head group norms on queries and keys (newer llm-foundry; not supported).
    #[serde(default)]
    pub qk_gn: bool,
    /// Scale of the scores; `None` means `1/sqrt(head_dim)`.
    #[serde(default)]
    pub softmax_scale: Option<f64>,
    /// `multihead_attention` (supported), `multiquery_attention`, `grouped_query_attention`.
    #[serde(default = "default_attn_type")]
    pub attn_type: String,
    /// Prefix-LM masking (not supported).
    #[serde(default)]
    pub prefix_lm: Option<bool>,
    /// Rotary embeddings (newer llm-foundry; not supported).
    #[serde(default)]
    pub rope: bool,
}

impl Default for RawMptAttnConfig {
    fn default() -> Self {
        Self {
            alibi: true,
            alibi_bias_max: default_bias_max(),
            clip_qkv: None,
            qk_ln: false,
            qk_gn: false,
            softmax_scale: None,
            attn_type: default_attn_type(),
            prefix_lm: None,
            rope: false,
        }
    }
}

/// The fields of an MPT `config.json` that decide the computation. Missing fields take the
/// defaults of transformers' `MptConfig`; unknown fields (dropouts, init, ...) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RawMptConfig {
    /// Width of the residual stream.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Attention heads.
    #[serde(default = "default_heads")]
    pub n_heads: usize,
    /// Number of blocks.
    #[serde(default = "default_layers")]
    pub n_layers: usize,
    /// Vocabulary size.
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// MLP width as a multiple of `d_model`.
    #[serde(default = "default_expansion")]
    pub expansion_ratio: f64,
    /// The training context length.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Attention options.
    #[serde(default)]
    pub attn_config: RawMptAttnConfig,
    /// No biases in Linear layers and LayerNorms.
    #[serde(default = "default_true")]
    pub no_bias: bool,
    /// `layernorm` / `low_precision_layernorm` (supported) or an RMSNorm variant.
    #[serde(default)]
    pub norm_type: Option<String>,
    /// LayerNorm epsilon (the original code always uses 1e-5).
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// A factor on the logits (not supported unless null or 1).
    #[serde(default)]
    pub logit_scale: Option<serde_json::Value>,
    /// The LM head shares the word embedding (newer llm-foundry may untie it).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Newer llm-foundry MLP options (`ffn_type` must be `mptmlp`).
    #[serde(default)]
    pub ffn_config: Option<serde_json::Value>,
    /// The dtype the weights were saved in (`torch_dtype`, `dtype` in newer configs).
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
}

/// Converts an MPT config into the normalised [`Config`], refusing variants that the transformer
/// cannot compute exactly.
pub fn to_config(raw: &RawMptConfig) -> std::result::Result<Config, String> {
    let a = &raw.attn_config;
    if !a.alibi || a.rope {
        return Err(format!(
            "this MPT uses {} positions (attn_config.alibi is false), not ALiBi; alibi-explorer loads \
             ALiBi checkpoints: its own, bloom and mpt with alibi",
            if a.rope { "rotary" } else { "learned absolute" }
        ));
    }
    if a.attn_type != "multihead_attention" {
        return Err(format!(
            "MPT attn_config.attn_type '{}' is not supported (only multihead_attention)",
            a.attn_type
        ));
    }
    if a.prefix_lm == Some(true) {
        return Err("MPT with attn_config.prefix_lm=true is not supported (causal only)".into());
    }
    if a.qk_gn {
        return Err("MPT with attn_config.qk_gn=true is not supported (qk_ln is)".into());
    }
    if !(a.alibi_bias_max.is_finite() && a.alibi_bias_max > 0.0) {
        return Err(format!(
            "MPT attn_config.alibi_bias_max must be a positive number (got {})",
            a.alibi_bias_max
        ));
    }
    if let Some(c) = a.clip_qkv
        && !(c.is_finite() && c > 0.0)
    {
        return Err(format!(
            "MPT attn_config.clip_qkv must be a positive number or null (got {c})"
        ));
    }
    if let Some(norm) = raw.norm_type.as_deref()
        && !matches!(norm, "layernorm" | "low_precision_layernorm")
    {
        return Err(format!(
            "MPT norm_type '{norm}' is not supported (only layernorm and low_precision_layernorm)"
        ));
    }
    match &raw.logit_scale {
        None | Some(serde_json::Value::Null) => {}
        Some(v) if v.as_f64() == Some(1.0) => {}
        Some(v) => {
            return Err(format!(
                "MPT logit_scale {v} is not supported (only null or 1)"
            ));
        }
    }
    if let Some(ffn) = &raw.ffn_config
        && let Some(kind) = ffn.get("ffn_type").and_then(|t| t.as_str())
        && kind != "mptmlp"
    {
        return Err(format!(
            "MPT ffn_config.ffn_type '{kind}' is not supported (only mptmlp)"
        ));
    }
    let d_ff = raw.expansion_ratio * raw.d_model as f64;
    if !(d_ff.is_finite() && d_ff >= 1.0 && d_ff.fract() == 0.0) {
        return Err(format!(
            "MPT expansion_ratio {} times d_model {} is not a whole MLP width",
            raw.expansion_ratio, raw.d_model
        ));
    }
    let mut cfg = Config::ours(
        raw.vocab_size,
        raw.d_model,
        raw.n_layers,
        raw.n_heads,
        d_ff as usize,
        Position::Alibi,
        raw.max_seq_len,
    );
    cfg.validate_hf()?;
    if let Some(scale) = a.softmax_scale {
        let ours = 1.0 / (cfg.head_dim() as f64).sqrt();
        if !scale.is_finite() || (scale - ours).abs() > SOFTMAX_SCALE_REL_TOL * ours {
            return Err(format!(
                "MPT attn_config.softmax_scale {scale} is not supported: attention here scales by \
                 1/sqrt(head_dim) = {ours} (set it to null)"
            ));
        }
    }
    cfg.arch = Arch::Mpt;
    cfg.layer_norm_eps = raw.layer_norm_epsilon;
    cfg.linear_bias = !raw.no_bias;
    cfg.norm_bias = !raw.no_bias;
    cfg.embed_norm = false;
    cfg.embed_scale = 1.0;
    cfg.tie_embeddings = raw.tie_word_embeddings;
    cfg.activation = Activation::GeluErf;
    cfg.slopes = Some(crate::alibi::mpt_slopes(raw.n_heads, a.alibi_bias_max));
    cfg.clip_qkv = a.clip_qkv;
    cfg.qk_norm = a.qk_ln;
    cfg.saved_dtype = raw.dtype.as_deref().and_then(super::family::hf_dtype_name);
    cfg.validate_hf()?;
    Ok(cfg)
}

/// Our tensor names and MPT's (without the optional `transformer.` prefix); `{i}` is the block.
pub const TENSOR_NAMES: &[(&str, &str)] = &[
    ("tok_emb.weight", "wte.weight"),
    ("blocks.{i}.ln1.weight", "blocks.{i}.norm_1.weight"),
    ("blocks.{i}.ln1.bias", "blocks.{i}.norm_1.bias"),
    ("blocks.{i}.attn.qkv.weight", "blocks.{i}.attn.Wqkv.weight"),
    ("blocks.{i}.attn.qkv.bias", "blocks.{i}.attn.Wqkv.bias"),
    (
        "blocks.{i}.attn.q_norm.weight",
        "blocks.{i}.attn.q_ln.weight",
    ),
    ("blocks.{i}.attn.q_norm.bias", "blocks.{i}.attn.q_ln.bias"),
    (
        "blocks.{i}.attn.k_norm.weight",
        "blocks.{i}.attn.k_ln.weight",
    ),
    ("blocks.{i}.attn.k_norm.bias", "blocks.{i}.attn.k_ln.bias"),
    (
        "blocks.{i}.attn.out.weight",
        "blocks.{i}.attn.out_proj.weight",
    ),
    ("blocks.{i}.attn.out.bias", "blocks.{i}.attn.out_proj.bias"),
    ("blocks.{i}.ln2.weight", "blocks.{i}.norm_2.weight"),
    ("blocks.{i}.ln2.bias", "blocks.{i}.norm_2.bias"),
    ("blocks.{i}.mlp.up.weight", "blocks.{i}.ffn.up_proj.weight"),
    ("blocks.{i}.mlp.up.bias", "blocks.{i}.ffn.up_proj.bias"),
    (
        "blocks.{i}.mlp.down.weight",
        "blocks.{i}.ffn.down_proj.weight",
    ),
    ("blocks.{i}.mlp.down.bias", "blocks.{i}.ffn.down_proj.bias"),
    ("ln_f.weight", "norm_f.weight"),
    ("ln_f.bias", "norm_f.bias"),
    ("lm_head.weight", "lm_head.weight"),
];

/// MPT's `Wqkv` is already `[Q | K | V]`: nothing to re-lay out.
pub fn relayout(_cfg: &Config, _ours: &str, t: Tensor) -> Result<Tensor> {
    Ok(t)
}

fn unexpected_hint(name: &str) -> Option<&'static str> {
    if name.starts_with("wpe.") {
        Some("learned position embeddings next to ALiBi are not supported")
    } else if name.contains(".attn.q_ln.") || name.contains(".attn.k_ln.") {
        Some("the checkpoint has q/k LayerNorms but attn_config.qk_ln is false")
    } else if name
        .rsplit_once('.')
        .is_some_and(|(_, last)| last == "bias")
    {
        Some("the checkpoint has biases but config.json says no_bias: true")
    } else {
        None
    }
}

/// MPT's entry for the foreign-checkpoint loader.
pub const FAMILY: Family = Family {
    arch: Arch::Mpt,
    names: TENSOR_NAMES,
    relayout,
    unexpected_hint,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawMptConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn honours_the_original_options() {
        let cfg = to_config(&raw(
            r#"{"d_model":96,"n_heads":12,"n_layers":2,"vocab_size":50,"max_seq_len":64,
               "expansion_ratio":2,"no_bias":false,
               "attn_config":{"alibi":true,"alibi_bias_max":4,"clip_qkv":6,"qk_ln":true,"softmax_scale":null}}"#,
        ))
        .unwrap();
        assert_eq!(cfg.d_ff, 192);
        assert_eq!((cfg.train_len, cfg.max_len), (64, None));
        assert_eq!(cfg.slopes, Some(crate::alibi::mpt_slopes(12, 4.0)));
        assert_eq!(cfg.clip_qkv, Some(6.0));
        assert!(cfg.qk_norm && cfg.linear_bias && cfg.norm_bias);
        assert_eq!(cfg.activation, Activation::GeluErf);
        assert_eq!(cfg.embed_scale, 1.0);
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let base = r#""d_model":64,"n_heads":4,"n_layers":1,"vocab_size":10"#;
        for (extra, needle) in [
            (r#""attn_config":{"alibi":false}"#, "learned absolute"),
            (
                r#""attn_config":{"attn_type":"multiquery_attention"}"#,
                "multiquery",
            ),
            (r#""attn_config":{"softmax_scale":0.5}"#, "softmax_scale"),
            (r#""norm_type":"rmsnorm""#, "rmsnorm"),
            (r#""logit_scale":"inv_sqrt_d_model""#, "logit_scale"),
            (r#""expansion_ratio":1.01"#, "expansion_ratio"),
        ] {
            let err = to_config(&raw(&format!("{{{base},{extra}}}"))).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
        }
        // 1/sqrt(16) given explicitly is fine.
        assert!(
            to_config(&raw(&format!(
                "{{{base},\"attn_config\":{{\"softmax_scale\":0.25}}}}"
            )))
            .is_ok()
        );
    }
}
