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
}
