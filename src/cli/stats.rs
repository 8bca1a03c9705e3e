//! Arguments of `stats` and `attention`, resolved into the settings their commands run with.

use super::common::{InputArgs, ModelArgs};
use crate::eval::parse_lengths;
use crate::eval::stats_command::{AttentionSettings, StatsSettings};
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use std::path::PathBuf;

/// Arguments of `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// Input lengths: a list (128,2048) or a doubling range (128..2048).
    #[arg(long)]
    pub lengths: String,
    /// Use only the first N tokens of the input.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// At most N non-overlapping windows per length (default: every window of the input).
    #[arg(long, value_name = "N")]
    pub max_windows: Option<usize>,
    /// Override the ALiBi slopes: a preset name or a JSON file with a "slopes" array.
    #[arg(long)]
    pub slopes: Option<String>,
    /// A slope recipe applied at each length (interp:F, interp:dynamic, ntk); each head's prior
    /// follows the recipe's slopes.
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per (layer, head, length).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw mean distance and 90% mass distance vs length for every head (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Windows per forward pass (default: as many as fit 4096 tokens).
    #[arg(long)]
    pub batch: Option<usize>,
}

impl StatsArgs {
    /// Parses the lengths.
    pub fn settings(&self) -> Result<StatsSettings> {
        Ok(StatsSettings {
            model: self.model.source(),
            input: self.input.input()?,
            lengths: parse_lengths(&self.lengths).map_err(|e| eyre!(e))?,
            max_tokens: self.max_tokens,
            max_windows: self.max_windows,
            slopes: self.slopes.clone(),
            recipe: self.recipe,
            json: self.json.clone(),
            csv: self.csv.clone(),
            plot: self.plot.clone(),
            batch: self.batch,
        })
    }
}

/// Arguments of `attention`.
#[derive(Debug, Args)]
pub struct AttentionArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// Input length L: the map is L x L.
    #[arg(long)]
    pub length: usize,
    /// Layer index (0-based).
    #[arg(long)]
    pub layer: usize,
    /// Head index (0-based).
    #[arg(long)]
    pub head: usize,
    /// Override the ALiBi slopes: a preset name or a JSON file with a "slopes" array.
    #[arg(long)]
    pub slopes: Option<String>,
    /// A long-context recipe applied at this length (interp:F, interp:dynamic, ntk, window:W,
    /// sinks:K+W): masked keys show as 0.
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// Write the heatmap as PNG.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Write the heatmap as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the map, tokens, layer, head, length and slope as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl AttentionArgs {
    /// The settings `attention` runs with.
    pub fn settings(&self) -> Result<AttentionSettings> {
        Ok(AttentionSettings {
            model: self.model.source(),
            input: self.input.input()?,
            length: self.length,
            layer: self.layer,
            head: self.head,
            slopes: self.slopes.clone(),
            recipe: self.recipe,
            png: self.png.clone(),
            svg: self.svg.clone(),
            json: self.json.clone(),
        })
    }
}
