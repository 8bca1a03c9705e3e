//! Arguments several commands share: which model (folder or repo id, device, dtype), which input
//! (text or token ids), and how reach is printed.

use crate::model::device::{DeviceSpec, parse_dtype};
use crate::model::load::ModelSource;
use crate::text::Input;
use clap::Args;
use color_eyre::eyre::{Result, bail};
use serde_json::json;
use std::path::PathBuf;

/// Which model to load and where.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A checkpoint folder (config.json, model.safetensors, tokenizer.json) or a Hugging Face repo id in the local cache.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// auto | cpu | cuda[:N] | metal. auto picks a GPU when built with one and present.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// f32 | f16 | bf16: the dtype the weights are converted to.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
}

pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse()
}

/// A finite number (NaN and infinities refused): clap's parser for float options.
pub fn finite(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("'{s}' is not a finite number"))
    }
}

/// A finite number above zero.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be above 0"))
    }
}

/// A finite number of at least zero.
pub fn non_negative(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be 0 or more"))
    }
}

/// A finite number in the range `lo..=hi` (above `lo` when `open_lo`), refused outside it with
/// the range named.
fn within(s: &str, lo: f64, hi: f64, open_lo: bool) -> Result<f64, String> {
    let v = finite(s)?;
    let above = if open_lo { v > lo } else { v >= lo };
    if above && v <= hi {
        Ok(v)
    } else {
        let low = if open_lo { "above" } else { "at least" };
        Err(format!(
            "'{s}' is out of range: it must be {low} {lo} and at most {hi}"
        ))
    }
}

/// An ALiBi slope per token of distance: 0 to 1,000 (the paper's are at most 1/2).
pub fn slope(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1000.0, false)
}

/// A positive kernel parameter (KERPLE's r1, r2 and a): above 0, at most 1,000.
pub fn kernel_param(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1000.0, true)
}

/// KERPLE's power p: above 0, at most 2 (the kernel is conditionally positive definite there).
pub fn kernel_power(s: &str) -> Result<f64, String> {
    within(s, 0.0, 2.0, true)
}

/// A rotary base: above 1 (a base of 1 or less makes every frequency 1 or grow), at most 1e12.
pub fn rotary_base(s: &str) -> Result<f64, String> {
    within(s, 1.0, 1e12, true)
}

/// A learning rate: above 0, at most 10.
pub fn learning_rate(s: &str) -> Result<f64, String> {
    within(s, 0.0, 10.0, true)
}

/// The geometric sequence's maximum bias: above 0, at most 1,000 (the paper uses 8).
pub fn max_bias(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1000.0, true)
}

/// A factor applied to every slope: 0 to 1,000.
pub fn slope_scale(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1000.0, false)
}

/// A gradient-norm clip: 0 (off) to 1e6.
pub fn clip(s: &str) -> Result<f64, String> {
    within(s, 0.0, 1e6, false)
}

/// AdamW's decoupled weight decay: 0 to 10.
pub fn weight_decay(s: &str) -> Result<f64, String> {
    within(s, 0.0, 10.0, false)
}

/// A count from 1 to `max`, refused outside it with the range named.
fn count_within(s: &str, max: usize) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if (1..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("'{s}' is out of range: it must be from 1 to {max}"))
    }
}

/// Optimiser steps of `train`: 1 to 100 million (4e11 tokens at the shipped batch).
pub fn train_steps(s: &str) -> Result<usize, String> {
    count_within(s, 100_000_000)
}

/// Fitting steps of `slopes fit`: 1 to 1 million.
pub fn fit_steps(s: &str) -> Result<usize, String> {
    count_within(s, 1_000_000)
}

/// Timed repeats of `bench`: 1 to 1,000.
pub fn repeats(s: &str) -> Result<usize, String> {
    count_within(s, 1000)
}

/// A fraction strictly between 0 and 1.
pub fn fraction(s: &str) -> Result<f64, String> {
    let v = finite(s)?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' must be between 0 and 1 (exclusive)"))
    }
}

impl ModelArgs {
    /// Where the model comes from, for the commands below `cli`.
    pub fn source(&self) -> ModelSource {
        ModelSource {
            path: self.model.clone(),
            device: self.device,
            dtype: self.dtype,
        }
    }
}

/// `--text FILE|DIR` or `--token-ids FILE`: what a command reads tokens from.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// A UTF-8 text file, or every .txt file of a folder (tokenized with the model's tokenizer).
    #[arg(
        long,
        conflicts_with = "token_ids",
        required_unless_present = "token_ids"
    )]
    pub text: Option<PathBuf>,
    /// Whitespace-separated integer token ids instead (for models without a tokenizer).
    #[arg(long, value_name = "FILE")]
    pub token_ids: Option<PathBuf>,
}

impl InputArgs {
    /// The input the command reads.
    pub fn input(&self) -> Result<Input> {
        match (&self.text, &self.token_ids) {
            (Some(t), _) => Ok(Input::Text(t.clone())),
            (None, Some(f)) => Ok(Input::TokenIds(f.clone())),
            (None, None) => bail!("give --text FILE or --token-ids FILE"),
        }
    }
}

/// A reach as JSON: `null` when infinite (zero slope).
pub fn reach_json(r: f64) -> serde_json::Value {
    if r.is_finite() {
        json!(r)
    } else {
        serde_json::Value::Null
    }
}

/// A reach for tables: one decimal, `inf` for a zero slope.
pub fn fmt_reach(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}")
    } else {
        "inf".to_string()
    }
}

/// Options of the TUI (no command).
#[derive(Debug, Args, Clone)]
pub struct TuiArgs {
    /// Model folder or Hugging Face repo id [default: assets/models/alibi; for `tour`, the tour's `model:` first].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Text to evaluate [default: assets/texts/default.txt; for `tour`, the tour's `text:` first].
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Another model to plot alongside (repeatable), e.g. assets/models/sinusoidal (for `tour`, it
    /// replaces the tour's `compare:`).
    #[arg(long, value_name = "PATH")]
    pub compare: Vec<PathBuf>,
    /// auto | cpu | cuda[:N] | metal.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// f32 | f16 | bf16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
    /// The longest input length on the chart [default: 16 x the training length, bounded by the text].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Use only the first N tokens of the text (quicker sweeps on long texts).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Where S/L save and load slopes.
    #[arg(long, default_value = "alibi-slopes.json", value_name = "FILE")]
    pub slopes_file: PathBuf,
    /// A long-context recipe drawn as an extra curve (repeatable): interp:F, interp:dynamic, ntk,
    /// window:W or sinks:K+W; `c` adds more in the TUI.
    #[arg(long, value_name = "NAME")]
    pub recipe: Vec<crate::alibi::recipe::Recipe>,
}
