//! Arguments of `slopes fit`, resolved into [`FitSettings`].

use super::common::{InputArgs, ModelArgs};
use crate::eval::parse_lengths;
use crate::train::fit::FitSettings;
use clap::Args;
use color_eyre::eyre::{Result, bail, eyre};
use std::path::PathBuf;

/// Arguments of `slopes fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// The model (ALiBi); its weights stay frozen.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// The fitting length: the loss is the mean NLL of windows of this many tokens.
    #[arg(long, conflicts_with = "lengths", required_unless_present = "lengths")]
    pub length: Option<usize>,
    /// Several fitting lengths (a list or a doubling range): the loss is the mean over them.
    #[arg(long)]
    pub lengths: Option<String>,
    /// Optimiser steps (1 to 1 million).
    #[arg(long, default_value_t = 100, value_parser = super::common::fit_steps)]
    pub steps: usize,
    /// Peak learning rate of Adam on log(slope) (cosine decay to 10%).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true, value_parser = super::common::learning_rate)]
    pub lr: f64,
    /// Fraction of the tokens (the tail) held out for the before/after perplexity.
    #[arg(long, default_value_t = 0.2, value_parser = super::common::fraction)]
    pub holdout: f64,
    /// Windows per step and length [default: 2048 tokens' worth, at least 1].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed of the window offsets.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Use only the first N tokens of the input.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// The slopes file to write (loads with `eval --slopes` and the TUI's L).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

impl FitArgs {
    /// Parses the lengths.
    pub fn settings(&self) -> Result<FitSettings> {
        let lengths = match (&self.length, &self.lengths) {
            (Some(0), _) => bail!("--length must be at least 1"),
            (Some(l), _) => vec![*l],
            (None, Some(spec)) => parse_lengths(spec).map_err(|e| eyre!(e))?,
            (None, None) => bail!("give --length L or --lengths L1,L2,.."),
        };
        Ok(FitSettings {
            model: self.model.source(),
            input: self.input.input()?,
            lengths,
            steps: self.steps,
            lr: self.lr,
            holdout: self.holdout,
            batch: self.batch,
            seed: self.seed,
            max_tokens: self.max_tokens,
            out: self.out.clone(),
        })
    }
}
