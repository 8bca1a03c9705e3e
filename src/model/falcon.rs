//! TII Falcon-RW checkpoints (`model_type: falcon` with `alibi: true`): config and tensor names.
//!
//! Follows the original Falcon-RW code (tiiuae's `modelling_RW.py`, alibi branch) and, where they
//! agree, Hugging Face transformers' `models/falcon/modeling_falcon.py` (checked against 5.24.0;
//! see `scripts/FIXTURES.md`): no embedding LayerNorm, sequential pre-LayerNorm blocks
//! (`input_layernorm`, `post_attention_layernorm`) with biased LayerNorms, Linear biases when
//! `bias: true`, a fused `query_key_value` interleaved per head as in BLOOM, exact (erf) GELU and
//! a tied LM head.
//!
//! The ALiBi bias is Falcon's own: BLOOM's slopes `M`, rounded to bf16 and multiplied by the
//! bf16-rounded key position in bf16 (`build_alibi_tensor`), added to the raw scores `q·k`, and
//! both scaled by `1/sqrt(head_dim)`. So the slope on the softmax logits is `M/sqrt(head_dim)`;
//! that is the slope stored here (what the TUI shows and `--slopes` sets), and the transformer
//! rebuilds the bf16 rounding from it ([`AlibiForm::FalconBf16`]).
//!
//! Where transformers and the original differ we follow the original: transformers' eager
//! attention adds the bias twice (once itself, once inside the attention mask that
//! `FalconModel.forward` builds), doubling every slope; its sdpa path adds it once, as the
//! original does.

use super::config::{Activation, AlibiForm, Arch, Config, Position};
use super::family::Family;
use candle_core::{Result, Tensor};
use serde::Deserialize;

/// The context length Falcon-RW was trained with, when the config does not say.
pub const FALCON_RW_TRAIN_LEN_TOKENS: usize = 2048;

fn default_vocab() -> usize {
    65_024
}
fn default_hidden() -> usize {
    4544
}
fn default_layers() -> usize {
    32
}
fn default_heads() -> usize {
    71
}
fn default_true() -> bool {
    true
}

/// The fields of a Falcon `config.json` that decide the computation. Missing fields take the
/// defaults of transformers' `FalconConfig` (which describe falcon-7b: rotary, multi-query,
/// parallel attention, no biases); unknown fields (dropouts, token ids, rope) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RawFalconConfig {
    /// Vocabulary size.
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Width of the residual stream (`n_embed` in the RefinedWeb configs).
    #[serde(default = "default_hidden", alias = "n_embed")]
    pub hidden_size: usize,
    /// Number of blocks.
    #[serde(default = "default_layers", alias = "n_layer")]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[serde(default = "default_heads", alias = "n_head")]
    pub num_attention_heads: usize,
    /// Key/value heads (only meaningful for the new decoder architecture).
    #[serde(default, alias = "n_head_kv")]
    pub num_kv_heads: Option<usize>,
    /// ALiBi instead of rotary embeddings.
    #[serde(default)]
    pub alibi: bool,
    /// falcon-40b/180b's layout (grouped K/V, two LayerNorms); not supported.
    #[serde(default)]
    pub new_decoder_architecture: bool,
    /// One K/V head shared by all query heads; not supported.
    #[serde(default = "default_true")]
    pub multi_query: bool,
    /// Attention and MLP side by side from one LayerNorm; not supported.
    #[serde(default = "default_true")]
    pub parallel_attn: bool,
    /// Biases in the Linear layers (LayerNorms always have them).
    #[serde(default)]
    pub bias: bool,
    /// LayerNorm epsilon.
    #[serde(default)]
    pub layer_norm_epsilon: Option<f64>,
    /// MLP width; `None` means `4 * hidden_size`.
    #[serde(default)]
    pub ffn_hidden_size: Option<usize>,
    /// The MLP non-linearity; only `gelu` (exact) is supported.
    #[serde(default)]
    pub activation: Option<String>,
    /// Residual taken after the LayerNorm (the original code's option; not supported).
    #[serde(default)]
    pub apply_residual_connection_post_layernorm: bool,
    /// The LM head shares the word embedding.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// The training context length.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// The dtype the weights were saved in (`torch_dtype`, `dtype` in newer configs).
    #[serde(default, alias = "torch_dtype")]
    pub dtype: Option<String>,
}

/// Converts a Falcon config into the normalised [`Config`], refusing the Falcon variants that are
/// not Falcon-RW (rotary, multi-query, parallel attention, the new decoder architecture).
pub fn to_config(raw: &RawFalconConfig) -> std::result::Result<Config, String> {
    if !raw.alibi {
        return Err(
            "this Falcon uses rotary position embeddings (alibi: false), not ALiBi; alibi-explorer \
             loads ALiBi checkpoints: its own, bloom, mpt and Falcon-RW (falcon with alibi: true)"
                .to_string(),
        );
    }
    let refuse = |what: &str| {
        Err(format!(
            "Falcon with {what} is not supported (only the Falcon-RW layout: alibi: true, \
             multi_query: false, parallel_attn: false, new_decoder_architecture: false)"
        ))
    };
    if raw.new_decoder_architecture {
        return refuse("new_decoder_architecture: true (grouped K/V heads, falcon-40b's layout)");
    }
    if raw.multi_query {
        return refuse("multi_query: true (one K/V head shared by all heads)");
    }
    if raw.parallel_attn {
        return refuse("parallel_attn: true (attention and MLP side by side)");
    }
    if raw.apply_residual_connection_post_layernorm {
        return refuse("apply_residual_connection_post_layernorm: true");
    }
    if let Some(kv) = raw.num_kv_heads
        && kv != raw.num_attention_heads
    {
        return refuse(&format!(
            "num_kv_heads {kv} unlike num_attention_heads {}",
            raw.num_attention_heads
        ));
    }
    if let Some(act) = raw.activation.as_deref()
        && act != "gelu"
    {
        return refuse(&format!("activation '{act}' (only gelu)"));
    }
    let d_ff = match raw.ffn_hidden_size {
        Some(n) => n,
        None => raw.hidden_size.checked_mul(4).ok_or_else(|| {
            format!(
                "Falcon hidden_size {} is too large (the MLP width 4*hidden_size does not fit)",
                raw.hidden_size
            )
        })?,
    };
    let mut cfg = Config::ours(
        raw.vocab_size,
        raw.hidden_size,
        raw.num_hidden_layers,
        raw.num_attention_heads,
        d_ff,
        Position::Alibi,
        raw.max_position_embeddings
            .unwrap_or(FALCON_RW_TRAIN_LEN_TOKENS),
    );
    // Checked before the slopes are built: their length is the head count.
    cfg.validate_hf()?;
    cfg.arch = Arch::Falcon;
    cfg.layer_norm_eps = raw.layer_norm_epsilon.unwrap_or(1e-5);
    cfg.linear_bias = raw.bias;
    cfg.norm_bias = true;
    cfg.embed_norm = false;
    cfg.embed_scale = 1.0;
    cfg.tie_embeddings = raw.tie_word_embeddings;
    cfg.activation = Activation::GeluErf;
    cfg.slopes = Some(logit_slopes(raw.num_attention_heads, cfg.head_dim()));
    cfg.alibi_form = AlibiForm::FalconBf16;
    cfg.saved_dtype = raw.dtype.as_deref().and_then(super::family::hf_dtype_name);
    cfg.validate_hf()?;
    Ok(cfg)
}

/// Falcon-RW's slopes on the softmax logits: BLOOM's slopes divided by `sqrt(head_dim)`.
pub fn logit_slopes(n_heads: usize, head_dim: usize) -> Vec<f64> {
    let root = (head_dim as f64).sqrt();
    crate::alibi::bloom_slopes(n_heads)
        .into_iter()
        .map(|m| m / root)
        .collect()
}

/// Our tensor names and Falcon's (without the optional `transformer.` prefix); `{i}` is the block.
/// Falcon-RW names its tensors as BLOOM does, without BLOOM's embedding LayerNorm.
pub const TENSOR_NAMES: &[(&str, &str)] = super::bloom::TENSOR_NAMES.split_at(2).1;

/// Re-lays out one tensor, named with our name: the fused projection is interleaved per head
/// (`view(batch, len, heads, 3, head_dim)` in `_split_heads`), as in BLOOM.
pub fn relayout(cfg: &Config, ours: &str, t: Tensor) -> Result<Tensor> {
    super::bloom::relayout(cfg, ours, t)
}

fn unexpected_hint(name: &str) -> Option<&'static str> {
    if name.contains(".ln_attn.") || name.contains(".ln_mlp.") {
        Some("two LayerNorms per block belong to new_decoder_architecture, which is not supported")
    } else if name
        .rsplit_once('.')
        .is_some_and(|(_, last)| last == "bias")
    {
        Some("the checkpoint has Linear biases but config.json says bias: false")
    } else {
        None
    }
}

/// Falcon-RW's entry for the foreign-checkpoint loader.
pub const FAMILY: Family = Family {
    arch: Arch::Falcon,
    names: TENSOR_NAMES,
    relayout,
    unexpected_hint,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::position::{BiasForm, alibi_bias};
    use crate::model::transformer::slopes_tensor;
    use candle_core::Device;

    const RW: &str = r#""alibi":true,"multi_query":false,"parallel_attn":false,
        "new_decoder_architecture":false,"bias":true"#;

    fn raw(json: &str) -> RawFalconConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn falcon_rw_1b_shape() {
        let cfg = to_config(&raw(&format!(
            r#"{{"model_type":"falcon","hidden_size":2048,"num_attention_heads":32,
                "num_hidden_layers":24,"vocab_size":50304,{RW}}}"#
        )))
        .unwrap();
        assert_eq!((cfg.d_model, cfg.n_heads, cfg.d_ff), (2048, 32, 8192));
        assert_eq!(cfg.train_len, FALCON_RW_TRAIN_LEN_TOKENS);
        assert!(cfg.linear_bias && cfg.norm_bias && cfg.tie_embeddings);
        assert_eq!(cfg.activation, Activation::GeluErf);
        assert_eq!(cfg.alibi_form, AlibiForm::FalconBf16);
        assert_eq!(cfg.bias_form(), BiasForm::Bf16Keys { scale: 0.125 });
        // head_dim 64: the slopes on the logits are BLOOM's divided by 8.
        let s = cfg.slopes.unwrap();
        assert_eq!(s[0], crate::alibi::bloom_slopes(32)[0] / 8.0);
        // The RefinedWeb names of the sizes are read too; bias: false leaves LayerNorm biases.
        let cfg = to_config(&raw(&format!(
            r#"{{"n_embed":64,"n_head":4,"n_layer":1,{}}}"#,
            RW.replace(r#""bias":true"#, r#""bias":false"#)
        )))
        .unwrap();
        assert_eq!((cfg.d_model, cfg.n_heads, cfg.n_layers), (64, 4, 1));
        assert!(!cfg.linear_bias && cfg.norm_bias);
    }

    #[test]
    fn refuses_falcon_without_the_rw_layout() {
        let base = r#""hidden_size":64,"num_attention_heads":4,"num_hidden_layers":1"#;
        for (extra, needle) in [
            (r#""alibi":false"#, "rotary"),
            // transformers' defaults describe falcon-7b: multi-query and parallel attention.
            (r#""alibi":true"#, "multi_query"),
            (
                r#""alibi":true,"multi_query":false,"new_decoder_architecture":true"#,
                "new_decoder_architecture",
            ),
            (r#""alibi":true,"multi_query":false"#, "parallel_attn"),
            (
                r#""alibi":true,"multi_query":false,"parallel_attn":false,"activation":"relu""#,
                "relu",
            ),
            (
                r#""alibi":true,"multi_query":false,"parallel_attn":false,"num_kv_heads":1"#,
                "num_kv_heads",
            ),
            (
                r#""alibi":true,"multi_query":false,"parallel_attn":false,
                   "apply_residual_connection_post_layernorm":true"#,
                "post_layernorm",
            ),
        ] {
            let err = to_config(&raw(&format!("{{{base},{extra}}}"))).unwrap_err();
            assert!(err.contains(needle), "{extra}: {err}");
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn logit_slopes_give_back_falcons_bf16_slopes() {
        // The stored slope is M/sqrt(head_dim); the bias multiplies it back before rounding to
        // bf16. That must give bf16(M) exactly, or the bias would not be Falcon's.
        let dev = Device::Cpu;
        for head_dim in [8usize, 12, 16, 24, 32, 48, 64, 80, 96, 128, 256] {
            let form = AlibiForm::FalconBf16.bias_form(head_dim);
            let BiasForm::Bf16Keys { scale } = form else {
                unreachable!()
            };
            for heads in (1..=128).chain([160, 256]) {
                let slopes = slopes_tensor(&logit_slopes(heads, head_dim), &dev).unwrap();
                let b = alibi_bias(Some(&slopes), form, 1, 1, 2, &dev).unwrap();
                let got: Vec<f32> = b
                    .narrow(2, 1, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                for (h, m) in crate::alibi::bloom_slopes(heads).into_iter().enumerate() {
                    let want = half::bf16::from_f32(m as f32).to_f32() * scale as f32;
                    assert_eq!(got[h], want, "{heads} heads, head_dim {head_dim}, head {h}");
                }
            }
        }
    }
}
