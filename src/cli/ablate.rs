//! Arguments of `ablate`, resolved into [`AblateSettings`].

use super::common::{InputArgs, ModelArgs};
use crate::eval::ablate::{AblateSettings, parse_variants};
use crate::eval::parse_lengths;
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;

/// Arguments of `ablate`.
#[derive(Debug, Args)]
pub struct AblateArgs {
    /// The model (ALiBi).
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// Input lengths: a list (128,1024) or a doubling range (128..2048).
    #[arg(long)]
    pub lengths: String,
    /// What to do to each head's slope: any of zero, half, double ("" for none).
    #[arg(long, default_value = "zero,half,double")]
    pub variants: String,
    /// Also zero each (layer, head)'s attention output in turn.
    #[arg(long)]
    pub knockout: bool,
    /// Use only the first N tokens of the input.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV line per run and length.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

impl AblateArgs {
    /// Parses the lengths and variants.
    pub fn settings(&self) -> Result<AblateSettings> {
        let variants = if self.variants.trim().is_empty() {
            Vec::new()
        } else {
            parse_variants(&self.variants).map_err(|e| eyre!(e))?
        };
        Ok(AblateSettings {
            model: self.model.source(),
            input: self.input.input()?,
            lengths: parse_lengths(&self.lengths).map_err(|e| eyre!(e))?,
            variants,
            knockout: self.knockout,
            max_tokens: self.max_tokens,
            json: self.json.clone(),
            csv: self.csv.clone(),
        })
    }
}
