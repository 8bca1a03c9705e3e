//! Arguments of `eval`, `plot` and `bench`, resolved into the settings their commands run with.

use super::common::{InputArgs, ModelArgs};
use crate::bench::BenchSettings;
use crate::eval::command::{EvalSettings, PlotSettings, resolve_protocol};
use crate::eval::{Protocol, parse_lengths};
use clap::Args;
use color_eyre::eyre::{Result, bail, eyre};
use std::path::PathBuf;

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// Input lengths: a list (64,128,256) or a doubling range (64..4096).
    #[arg(long)]
    pub lengths: String,
    /// nonoverlap | sliding | sweep.
    #[arg(long, default_value = "nonoverlap")]
    pub protocol: String,
    /// Tokens the window moves with --protocol sliding (1 = the paper's sliding evaluation).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Override the ALiBi slopes: a preset name or a JSON file with a "slopes" array.
    #[arg(long)]
    pub slopes: Option<String>,
    /// A long-context recipe applied at inference: interp:F, interp:dynamic, ntk, window:W or
    /// sinks:K+W (see the manual's recipes section).
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// Also compare each length's next-token distributions with the original model's (KL
    /// divergence ± s.e., 99th percentile, top-1 agreement, change in the correct token's
    /// probability); in the JSON under each point's `kl`.
    #[arg(long)]
    pub kl: bool,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per length.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write every scored token of the largest length as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub per_token: Option<PathBuf>,
    /// Draw perplexity vs length to an .svg or .png file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Windows per forward pass (default: as many as fit 4096 tokens).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Use only the first N tokens of the input (quicker runs on long texts).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Print the process's peak resident memory to stderr at the end (used by `bench`).
    #[arg(long, hide = true)]
    pub report_peak_rss: bool,
}

impl EvalArgs {
    /// Parses the lengths and protocol and checks the options against each other.
    pub fn settings(&self) -> Result<EvalSettings> {
        let lengths = parse_lengths(&self.lengths).map_err(|e| eyre!(e))?;
        let protocol = resolve_protocol(&self.protocol, self.stride)?;
        if let Protocol::Sliding { stride } = protocol
            && let Some(&small) = lengths.first()
            && stride > small
        {
            bail!("--stride {stride} is larger than the smallest length {small}");
        }
        Ok(EvalSettings {
            model: self.model.source(),
            input: self.input.input()?,
            lengths,
            protocol,
            slopes: self.slopes.clone(),
            json: self.json.clone(),
            csv: self.csv.clone(),
            per_token: self.per_token.clone(),
            plot: self.plot.clone(),
            recipe: self.recipe,
            kl: self.kl,
            batch: self.batch,
            max_tokens: self.max_tokens,
            report_peak_rss: self.report_peak_rss,
        })
    }
}

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids.
    #[command(flatten)]
    pub input: InputArgs,
    /// Shortest forward length.
    #[arg(long, default_value_t = 128)]
    pub min_length: usize,
    /// Longest forward length.
    #[arg(long, default_value_t = 4096)]
    pub max_length: usize,
    /// Timed repeats per length (median reported; 1 to 1,000).
    #[arg(long, default_value_t = 3, value_parser = super::common::repeats)]
    pub repeats: usize,
    /// Sweep comparison: shortest length.
    #[arg(long, default_value_t = 64)]
    pub sweep_min: usize,
    /// Sweep comparison: longest length (0 skips the comparison).
    #[arg(long, default_value_t = 2048)]
    pub sweep_max: usize,
    /// Sweep comparison: windows of the longest length.
    #[arg(long, default_value_t = 4)]
    pub sweep_windows: usize,
    /// Long-input memory check length (0 skips).
    #[arg(long, default_value_t = 16384)]
    pub long_length: usize,
    /// Attention statistics: one window of this length with and without statistics of every
    /// head (0 skips).
    #[arg(long, default_value_t = 2048)]
    pub stats_length: usize,
    /// Run only the attention-statistics section.
    #[arg(long)]
    pub only_stats: bool,
    /// Copy curve: `reach`'s copy test at every distance from 32 to 16 x train_len with this many
    /// spans a distance, timed (0 skips; the target is 32 spans in 10 s).
    #[arg(long, default_value_t = 0)]
    pub copy_samples: usize,
    /// Run only the live-TUI section: the TUI's worker on the model and --text, timing the first
    /// attention map, the first perplexity numbers, and the answers to a layer, head, length and
    /// slope change made while the sweep runs.
    #[arg(long, conflicts_with_all = ["only_stats", "token_ids"])]
    pub live: bool,
    /// Live section: give up waiting for an answer after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub live_timeout: u64,
    /// Write the report (Markdown) here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl BenchArgs {
    /// The settings `bench` runs with.
    pub fn settings(&self) -> Result<BenchSettings> {
        Ok(BenchSettings {
            model: self.model.source(),
            input: self.input.input()?,
            min_length: self.min_length,
            max_length: self.max_length,
            repeats: self.repeats,
            sweep_min: self.sweep_min,
            sweep_max: self.sweep_max,
            sweep_windows: self.sweep_windows,
            long_length: self.long_length,
            stats_length: self.stats_length,
            only_stats: self.only_stats,
            copy_samples: self.copy_samples,
            live: self.live,
            live_timeout_s: self.live_timeout,
            out: self.out.clone(),
        })
    }
}

/// Arguments of `plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// An `eval --json` file, or a `train` run's loss.csv (or its folder) for the training figure
    /// (loss, copy gain and induction score against tokens seen); repeat for several curves.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Labels for the curves, in order (default: each file's model name).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The figure: .svg or .png.
    #[arg(long)]
    pub out: PathBuf,
    /// The figure's title.
    #[arg(long, default_value = crate::eval::command::DEFAULT_PLOT_TITLE)]
    pub title: String,
}

impl PlotArgs {
    /// The settings `plot` runs with.
    pub fn settings(&self) -> PlotSettings {
        PlotSettings {
            inputs: self.inputs.clone(),
            labels: self.labels.clone(),
            out: self.out.clone(),
            title: self.title.clone(),
        }
    }
}
