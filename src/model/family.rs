//! What a foreign checkpoint family (BLOOM, MPT) tells the loader: how its tensors map onto our
//! names. Shared by the loader and the family modules without a cycle between them.

use super::config::{Arch, Config};
use candle_core::Tensor;

/// Our name for a Hugging Face `torch_dtype` (`float32` -> `f32`), if it is one we know.
pub fn hf_dtype_name(s: &str) -> Option<String> {
    let name = match s {
        "float32" => "f32",
        "float16" => "f16",
        "bfloat16" => "bf16",
        "float64" => "f64",
        _ => return None,
    };
    Some(name.to_string())
}

/// A checkpoint family other than our own: how its tensors map onto our names.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Which architecture.
    pub arch: Arch,
    /// `(our name, checkpoint name)` pairs; `{i}` stands for the block index, and checkpoint
    /// names may carry the `transformer.` prefix or not.
    pub names: &'static [(&'static str, &'static str)],
    /// Re-lays out a tensor (given with our name) after it is read, e.g. a fused projection.
    pub relayout: fn(&Config, &str, Tensor) -> candle_core::Result<Tensor>,
    /// A hint for a checkpoint tensor (name without prefix) that the config does not call for.
    pub unexpected_hint: fn(&str) -> Option<&'static str>,
}
