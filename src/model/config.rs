//! The one normalised model configuration every architecture is read into.
//!
//! Our own checkpoints store this struct as `config.json`; BLOOM, MPT and Falcon-RW configs are
//! parsed into their own raw structs (see `bloom.rs`, `mpt.rs`, `falcon.rs`) and converted into
//! it, so the transformer knows a single shape (after candle-transformers' `Config` habit).

pub use super::position::BiasForm;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The value of `format` in our own `config.json`.
pub const OUR_FORMAT: &str = "alibi-explorer";

/// The most attention heads a config may have (the one limit of [`crate::alibi::MAX_HEADS`]). Real
/// models have at most a few hundred; the bound keeps a corrupt `config.json` from asking for a
/// slope vector of absurd size.
pub use crate::alibi::MAX_HEADS;

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Position {
    /// Attention with Linear Biases: a per-head bias `-m*(i-j)` on the attention scores.
    Alibi,
    /// Fixed sinusoidal embeddings added to the token embeddings (Vaswani et al. 2017).
    Sinusoidal,
    /// Rotary embeddings applied to queries and keys (Su et al. 2021).
    Rotary,
    /// No position information (the causal mask alone).
    None,
}

impl Position {
    /// Every scheme, in the order the docs list them.
    pub const ALL: [Position; 4] = [
        Position::Alibi,
        Position::Sinusoidal,
        Position::Rotary,
        Position::None,
    ];

    /// The name used in `config.json` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Position::Alibi => "alibi",
            Position::Sinusoidal => "sinusoidal",
            Position::Rotary => "rotary",
            Position::None => "none",
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Position::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown position scheme '{s}' (expected alibi, sinusoidal, rotary or none)"
                )
            })
    }
}

impl TryFrom<String> for Position {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Position> for String {
    fn from(p: Position) -> String {
        p.name().to_string()
    }
}

/// Which family of checkpoint the weights came from; decides tensor names and slope order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Models trained by this program.
    #[default]
    Ours,
    /// BigScience BLOOM (`model_type: bloom`).
    Bloom,
    /// MosaicML MPT (`model_type: mpt`).
    Mpt,
    /// TII Falcon-RW (`model_type: falcon` with `alibi: true`).
    Falcon,
}

impl Arch {
    /// A human name for `inspect` and the status bar.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Ours => "alibi-explorer",
            Arch::Bloom => "bloom",
            Arch::Mpt => "mpt",
            Arch::Falcon => "falcon",
        }
    }
}

/// The MLP non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU, tanh approximation (BLOOM's `bloom_gelu_forward`; also ours).
    #[default]
    GeluTanh,
    /// Exact GELU with erf (MPT).
    GeluErf,
}

/// How the ALiBi bias is built from the slopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlibiForm {
    /// `-m*(i-j)` in f32, added to the scaled scores (the paper, BLOOM, MPT, ours).
    #[default]
    Relative,
    /// Falcon-RW's `build_alibi_tensor`: the raw slope `M = m*sqrt(head_dim)` and the key position
    /// `j` are rounded to bf16, their product `M*j` is rounded to bf16, and the result is scaled by
    /// `1/sqrt(head_dim)` together with the scores. `m` is the slope on the softmax logits.
    FalconBf16,
}

impl AlibiForm {
    /// The runtime form for a head width.
    pub fn bias_form(self, head_dim: usize) -> BiasForm {
        match self {
            AlibiForm::Relative => BiasForm::Relative,
            AlibiForm::FalconBf16 => BiasForm::Bf16Keys {
                scale: 1.0 / (head_dim as f64).sqrt(),
            },
        }
    }
}

fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_rotary_base() -> f64 {
    10_000.0
}
fn default_format() -> String {
    OUR_FORMAT.to_string()
}

/// The normalised configuration of a decoder-only, pre-LayerNorm transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Always `"alibi-explorer"` in our files.
    #[serde(default = "default_format")]
    pub format: String,
    /// Where the weights came from.
    #[serde(default)]
    pub arch: Arch,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Attention heads per block.
    pub n_heads: usize,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// How positions enter the model.
    pub position: Position,
    /// The input length the model was trained on, in tokens.
    pub train_len: usize,
    /// A hard limit on the input length, if the architecture has one (MPT's `max_seq_len`).
    #[serde(default)]
    pub max_len: Option<usize>,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Whether linear layers carry biases.
    #[serde(default = "default_true")]
    pub linear_bias: bool,
    /// Whether LayerNorms carry biases.
    #[serde(default = "default_true")]
    pub norm_bias: bool,
    /// A LayerNorm right after the token embedding (BLOOM's `word_embeddings_layernorm`).
    #[serde(default)]
    pub embed_norm: bool,
    /// Token embeddings are multiplied by this (fairseq scales by `sqrt(d_model)`).
    #[serde(default = "default_one")]
    pub embed_scale: f64,
    /// The output projection shares the token-embedding matrix.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// The MLP non-linearity.
    #[serde(default)]
    pub activation: Activation,
    /// The per-head ALiBi slopes the model was trained with (learned or preset), in head order,
    /// as slopes on the softmax logits. `None` means the paper's geometric slopes for `n_heads`.
    #[serde(default)]
    pub slopes: Option<Vec<f64>>,
    /// How the ALiBi bias is built from the slopes (Falcon-RW's own bf16 form, or the paper's).
    #[serde(default)]
    pub alibi_form: AlibiForm,
    /// Clamp q, k and v to `[-c, c]` (MPT's `clip_qkv`).
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    /// LayerNorm on queries and keys before attention (MPT's `qk_ln`).
    #[serde(default)]
    pub qk_norm: bool,
    /// Base of the rotary frequencies.
    #[serde(default = "default_rotary_base")]
    pub rotary_base: f64,
    /// The dtype the weights were saved in (informational).
    #[serde(default)]
    pub saved_dtype: Option<String>,
}

/// The largest vocabulary a config may declare (2^24 ids; BLOOM has 250,880).
pub const MAX_VOCAB: usize = 1 << 24;
/// The largest `d_model` (2^20, as many as [`crate::alibi::MAX_HEADS`] heads of width 1; BLOOM-176B
/// has 14,336); `d_ff` may be four times this.
pub const MAX_WIDTH: usize = 1 << 20;
/// The most layers (2^12; BLOOM-176B has 70).
pub const MAX_LAYERS: usize = 1 << 12;
/// The longest `train_len` or `max_len` (2^24 tokens: positions stay exact in f32).
pub const MAX_CONTEXT: usize = 1 << 24;

impl Config {
    /// A config for our own architecture with the given sizes.
    pub fn ours(
        vocab_size: usize,
        d_model: usize,
        n_layers: usize,
        n_heads: usize,
        d_ff: usize,
        position: Position,
        train_len: usize,
    ) -> Self {
        Self {
            format: OUR_FORMAT.to_string(),
            arch: Arch::Ours,
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            d_ff,
            position,
            train_len,
            max_len: None,
            layer_norm_eps: default_eps(),
            linear_bias: true,
            norm_bias: true,
            embed_norm: false,
            embed_scale: (d_model as f64).sqrt(),
            tie_embeddings: true,
            activation: Activation::GeluTanh,
            slopes: None,
            alibi_form: AlibiForm::Relative,
            clip_qkv: None,
            qk_norm: false,
            rotary_base: default_rotary_base(),
            saved_dtype: None,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// How attention builds the ALiBi bias for this model.
    pub fn bias_form(&self) -> BiasForm {
        self.alibi_form.bias_form(self.head_dim())
    }

    /// Checks the numbers that the transformer relies on.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("train_len", self.train_len),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.n_heads > MAX_HEADS {
            return Err(format!(
                "n_heads ({}) is more than {MAX_HEADS}; no model has that many heads",
                self.n_heads
            ));
        }
        // Sizes past these are no model anyone has (BLOOM-176B: d_model 14,336, 70 layers,
        // vocabulary 250,880); a corrupt or hand-edited config is refused before any allocation.
        let limits = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("d_model", self.d_model, MAX_WIDTH),
            ("d_ff", self.d_ff, 4 * MAX_WIDTH),
            ("n_layers", self.n_layers, MAX_LAYERS),
            ("train_len", self.train_len, MAX_CONTEXT),
            ("max_len", self.max_len.unwrap_or(1), MAX_CONTEXT),
        ];
        for (name, v, max) in limits {
            if v > max {
                return Err(format!(
                    "{name} is {v}, too large (at most {max}; no model is that large)"
                ));
            }
        }
        if self.max_len == Some(0) {
            return Err("max_len must be at least 1".to_string());
        }
        // Floats: each in the range where the model computes numbers at all.
        let eps = self.layer_norm_eps;
        if !(eps.is_finite() && eps > 0.0 && eps <= 1.0) {
            return Err(format!(
                "layer_norm_eps must be in (0, 1] (got {eps}; models use 1e-5 to 1e-12)"
            ));
        }
        let scale = self.embed_scale;
        if !(scale.is_finite() && scale > 0.0 && scale <= 1e6) {
            return Err(format!("embed_scale must be in (0, 1e6] (got {scale})"));
        }
        let base = self.rotary_base;
        if !(base.is_finite() && base > 1.0 && base <= 1e12) {
            return Err(format!(
                "rotary_base must be in (1, 1e12] (got {base}; the usual base is 10000)"
            ));
        }
        if let Some(c) = self.clip_qkv
            && !(c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "clip_qkv must be a positive, finite number or absent (got {c})"
            ));
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(format!(
                "d_model ({}) must be divisible by n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if self.position == Position::Rotary && !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "rotary needs an even head width (d_model/n_heads = {})",
                self.head_dim()
            ));
        }
        if let Some(s) = &self.slopes {
            crate::alibi::check_slopes(s, self.n_heads).map_err(|e| format!("slopes: {e}"))?;
        }
        Ok(())
    }

    /// [`Self::validate`] for a config converted from a Hugging Face `config.json`: the error
    /// names the field as that file spells it (`layer_norm_epsilon`).
    pub fn validate_hf(&self) -> Result<(), String> {
        self.validate()
            .map_err(|e| match e.strip_prefix("layer_norm_eps ") {
                Some(rest) => format!("layer_norm_epsilon {rest}"),
                None => e,
            })
    }

    /// The slopes the model uses by default: stored ones, else the architecture's formula.
    pub fn default_slopes(&self) -> Vec<f64> {
        if let Some(s) = &self.slopes {
            return s.clone();
        }
        crate::alibi::paper_slopes(self.n_heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_names() {
        let cfg = Config::ours(100, 32, 2, 4, 64, Position::Rotary, 16);
        let s = serde_json::to_string(&cfg).unwrap();
        assert!(s.contains("\"position\":\"rotary\""));
        assert!(s.contains("\"train_len\":16"));
        let back: Config = serde_json::from_str(&s).unwrap();
        assert_eq!(back, cfg);
        assert_eq!("sinusoidal".parse::<Position>(), Ok(Position::Sinusoidal));
        assert!("learned".parse::<Position>().is_err());
    }

    #[test]
    fn validation_catches_bad_shapes() {
        let mut cfg = Config::ours(100, 30, 2, 4, 64, Position::Alibi, 16);
        assert!(cfg.validate().unwrap_err().contains("divisible"));
        cfg.d_model = 32;
        assert!(cfg.validate().is_ok());
        cfg.slopes = Some(vec![0.5; 3]);
        assert!(cfg.validate().unwrap_err().contains("3 slopes for 4 heads"));
        // A model's config is checked like any other slope source.
        cfg.slopes = Some(vec![0.5, 0.25, -0.1, 0.0]);
        assert!(cfg.validate().unwrap_err().contains("negative"));
        cfg.slopes = Some(vec![0.5, 1e39, 0.1, 0.0]);
        assert!(cfg.validate().unwrap_err().contains("finite in f32"));
        cfg.slopes = None;
        cfg.n_heads = 0;
        assert!(cfg.validate().unwrap_err().contains("n_heads"));
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_the_field() {
        type Spoil = fn(&mut Config);
        let ok = Config::ours(100, 16, 2, 4, 32, Position::Alibi, 8);
        assert!(ok.validate().is_ok());
        let cases: [(&str, Spoil); 9] = [
            ("layer_norm_eps", |c| c.layer_norm_eps = -1.0),
            ("layer_norm_eps", |c| c.layer_norm_eps = f64::NAN),
            ("layer_norm_eps", |c| c.layer_norm_eps = 0.0),
            ("rotary_base", |c| c.rotary_base = 1.0),
            ("embed_scale", |c| c.embed_scale = f64::INFINITY),
            ("clip_qkv", |c| c.clip_qkv = Some(-3.0)),
            ("train_len", |c| c.train_len = MAX_CONTEXT + 1),
            ("max_len", |c| c.max_len = Some(0)),
            ("vocab_size", |c| c.vocab_size = MAX_VOCAB * 2),
        ];
        for (field, spoil) in cases {
            let mut c = ok.clone();
            spoil(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}
