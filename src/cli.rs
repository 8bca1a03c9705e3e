//! Command-line definitions (clap) and the dispatch of headless commands.
//!
//! Parsing is clap's; each command then resolves its arguments into validated settings before
//! doing any work (ripgrep splits "parse" from "resolve" the same way). Nothing imports this
//! module but `main`: the settings types live with the commands that run them.
//!
//! - [`ablate`]: the `ablate` command (per-head sensitivity).
//! - [`common`]: the model and input arguments several commands share.
//! - [`inspect`]: the `slopes` table and `inspect`.
//! - [`slopes`]: `slopes` with its subcommands `check` and `fit`.
//! - [`eval`]: `eval`, `plot`, `bench`.
//! - [`family`]: `family` (ALiBi beside KERPLE, T5 buckets, NoPE and rotary's decay).
//! - [`stats`]: `stats`, `attention`.
//! - [`fit`]: `slopes fit`.
//! - [`train`]: `tokenizer train`, `train`.
//! - [`tour`]: `tour` (the guided tour, or its lecture export).

pub mod ablate;
pub mod common;
pub mod eval;
pub mod family;
pub mod fit;
pub mod inspect;
pub mod reach;
pub mod slopes;
pub mod stats;
pub mod tour;
pub mod train;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{Result, eyre};
pub use common::TuiArgs;
use eval::{BenchArgs, EvalArgs, PlotArgs};
use inspect::InspectArgs;
use slopes::SlopesArgs;
use stats::{AttentionArgs, StatsArgs};
use train::{TokenizerArgs, TrainArgs};

/// Exit code for bad input (files, arguments): the same code clap uses for usage errors.
pub const EXIT_BAD_INPUT: i32 = 2;

/// Explore ALiBi (Attention with Linear Biases) language models in the terminal.
///
/// Without a command the TUI opens on the default model and text in assets/.
#[derive(Debug, Parser)]
#[command(name = "alibi-explorer", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The command; without one the TUI opens.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TUI options.
    #[command(flatten)]
    pub tui: TuiArgs,
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print ALiBi slopes and per-head reach for a head count (no model needed); `check` a slope
    /// list against the known formulas and faults; `fit` slopes to a frozen model.
    Slopes(SlopesArgs),
    /// ALiBi beside KERPLE (log, power), T5's buckets, NoPE and rotary's decay: each scheme's
    /// number at a few distances and its prior's mean distance (no model needed).
    Family(family::FamilyArgs),
    /// Describe a model: architecture, sizes, position scheme, slopes with reach.
    Inspect(InspectArgs),
    /// Perplexity versus input length under the paper's protocols (or the one-pass sweep).
    Eval(Box<EvalArgs>),
    /// Per-head sensitivity: the change in perplexity when each head's slope is set to 0, halved
    /// or doubled, or (--knockout) each (layer, head)'s output zeroed.
    Ablate(Box<ablate::AblateArgs>),
    /// What a model can retrieve, and from how far back: the copy test at doubling distances
    /// past train_len (copy gain, top-1, per-head induction scores), for several models.
    Reach(Box<reach::ReachArgs>),
    /// Draw several `eval --json` results into one perplexity-vs-length figure.
    Plot(PlotArgs),
    /// Attention statistics of every head vs input length, with the ALiBi prior (bias alone).
    Stats(Box<StatsArgs>),
    /// One head's attention map over the first L tokens: heatmap (PNG/SVG) and JSON.
    Attention(Box<AttentionArgs>),
    /// Measure forward speed, sweep vs non-overlapping windows, long-input memory and TUI frame time.
    Bench(BenchArgs),
    /// Tokenizer tools.
    Tokenizer(TokenizerArgs),
    /// Train a model of our own architecture.
    Train(Box<TrainArgs>),
    /// A guided tour of ALiBi on the live model (the TUI with a narrative card), or with --export
    /// every step written as a slide.
    Tour(Box<tour::TourArgs>),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if cli.command.is_some() {
        crate::tui::inject_fault()?;
    }
    // The long headless commands stop on SIGINT/SIGTERM/SIGHUP between blocks of work and exit
    // with 128 + signal (see `files::stop`); the TUI and `tour` turn them into events of their own.
    let long = match &cli.command {
        Some(
            Command::Train(_)
            | Command::Eval(_)
            | Command::Ablate(_)
            | Command::Reach(_)
            | Command::Stats(_)
            | Command::Attention(_)
            | Command::Bench(_),
        ) => true,
        Some(Command::Slopes(a)) => matches!(a.command, Some(slopes::SlopesCommand::Fit(_))),
        _ => false,
    };
    if long {
        crate::files::stop::flag();
    }
    match cli.command {
        Some(Command::Slopes(a)) => slopes::run(&a),
        Some(Command::Family(a)) => family::run(&a),
        Some(Command::Inspect(a)) => inspect::inspect(&a),
        Some(Command::Tokenizer(a)) => train::tokenizer(a),
        Some(Command::Train(a)) => train::train(&a),
        Some(Command::Eval(a)) => crate::eval::command::eval(&a.settings()?),
        Some(Command::Ablate(a)) => crate::eval::ablate::command(&a.settings()?),
        Some(Command::Reach(a)) => reach::run(&a),
        Some(Command::Plot(a)) => crate::eval::command::plot(&a.settings()),
        Some(Command::Stats(a)) => crate::eval::stats_command::stats(&a.settings()?),
        Some(Command::Attention(a)) => crate::eval::stats_command::attention(&a.settings()?),
        Some(Command::Bench(a)) => crate::bench::run(&a.settings()?),
        Some(Command::Tour(a)) => crate::tui::tour::command::run(&a.settings()),
        None => {
            let t = cli.tui;
            let cache = crate::embedded::cache_dir();
            let unpack = |e: std::io::Error| {
                eyre!(
                    "cannot unpack the built-in default model into '{}': {e}",
                    cache.display()
                )
            };
            let model = match t.model {
                Some(m) => m,
                None => crate::embedded::default_model_dir(&cache).map_err(unpack)?,
            };
            let text = match t.text {
                Some(p) => p,
                None => crate::embedded::default_text(&cache).map_err(unpack)?,
            };
            let settings = crate::tui::TuiSettings {
                model,
                text,
                compare: t.compare,
                device: t.device,
                dtype: t.dtype,
                max_length: t.max_length,
                max_tokens: t.max_tokens,
                slopes_file: t.slopes_file,
                recipes: t.recipe,
            };
            crate::tui::run(&settings)
        }
    }
}
