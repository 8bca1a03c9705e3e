//! `tour`: the guided tour, in the TUI or exported as a lecture.

use super::common::parse_device;
use crate::model::device::{DeviceSpec, parse_dtype};
use crate::tui::tour::command::TourSettings;
use crate::tui::tour::lecture::DEFAULT_STEP_TIMEOUT_S;
use clap::Args;
use std::path::PathBuf;

/// Options of `tour`.
#[derive(Debug, Args, Clone)]
pub struct TourArgs {
    /// A tour file of your own (Markdown; see docs/tour.md) [default: the shipped assets/tour.md].
    #[arg(long = "tour", value_name = "FILE")]
    pub tour: Option<PathBuf>,
    /// Write every step as a slide (panel SVG + PNG + JSON, the card as Markdown, index.md) into
    /// this new or empty folder instead of opening the TUI.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// With --export: seconds a step waits for its numbers before it is written as it is.
    #[arg(long, default_value_t = DEFAULT_STEP_TIMEOUT_S, value_name = "SECONDS")]
    pub step_timeout: u64,
    /// Model folder or Hugging Face repo id [default: the tour's `model:`, else assets/models/alibi].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Text to evaluate [default: the tour's `text:`, else assets/texts/default.txt].
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Another model to plot alongside (repeatable); replaces the tour's `compare:`.
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
}

impl TourArgs {
    /// The settings `tour` runs with.
    pub fn settings(&self) -> TourSettings {
        let t = self;
        TourSettings {
            tour: self.tour.clone(),
            export: self.export.clone(),
            model: t.model.clone(),
            text: t.text.clone(),
            compare: t.compare.clone(),
            device: t.device,
            dtype: t.dtype,
            max_length: t.max_length,
            max_tokens: t.max_tokens,
            slopes_file: t.slopes_file.clone(),
            step_timeout_s: self.step_timeout,
        }
    }
}
