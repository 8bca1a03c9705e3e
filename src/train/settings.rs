//! What a training run needs, stored in its checkpoints so `--resume` can check it.

use super::optim::AdamWConfig;
use crate::model::config::Config;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything a training run needs; stored in the checkpoint so `--resume` can check it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainSettings {
    /// Folder of training `.txt` files.
    pub data: PathBuf,
    /// Folder of validation `.txt` files.
    pub valid: PathBuf,
    /// tokenizer.json.
    pub tokenizer: PathBuf,
    /// The model to train (sizes, position, train_len, initial slopes).
    pub model: Config,
    /// Whether ALiBi slopes are trained.
    pub learn_slopes: bool,
    /// Optimiser steps.
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// AdamW hyper-parameters.
    pub adamw: AdamWConfig,
    /// Warm-up steps.
    pub warmup: usize,
    /// Gradient clipping norm (0 disables).
    pub clip: f64,
    /// Seed for initialisation and data order.
    pub seed: u64,
    /// Validate every this many steps.
    pub valid_every: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Output folder.
    pub out: PathBuf,
    /// dtype of the final weights.
    pub save_dtype: String,
    /// Which trainer runs the steps (not part of what a resume must match: checkpoints are the
    /// same for both).
    #[serde(default)]
    pub trainer: TrainerKind,
    /// Tokens of each span of the copy test run at every validation (0: no copy test).
    #[serde(default)]
    pub copy_span: usize,
    /// Spans of the copy test (held-out text, repeated right after themselves).
    #[serde(default)]
    pub copy_samples: usize,
    /// The copy mix: the fraction of training windows in which a span of the window recurs
    /// later in it (0: plain text). Part of the data, so a resume must match it.
    #[serde(default)]
    pub repeat_frac: f64,
    /// Shortest and longest repeated span of the copy mix, in tokens.
    #[serde(default)]
    pub repeat_span: (usize, usize),
    /// Whether the copy mix repeats spans of the text or of random tokens.
    #[serde(default)]
    pub repeat_kind: crate::eval::reach::SpanKind,
    /// A model folder whose weights the run starts from instead of a random initialisation (same
    /// shape and position scheme; the optimiser starts afresh).
    #[serde(default)]
    pub init: Option<PathBuf>,
}

/// Which trainer runs the steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainerKind {
    /// The fast CPU trainer where it applies (CPU, a config it implements), else candle.
    #[default]
    Auto,
    /// The fast CPU f32 trainer (an error where it does not apply).
    Fast,
    /// candle autograd (any device).
    Candle,
}

impl std::str::FromStr for TrainerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "fast" => Ok(Self::Fast),
            "candle" => Ok(Self::Candle),
            _ => Err(format!(
                "unknown trainer '{s}' (expected auto, fast or candle)"
            )),
        }
    }
}
