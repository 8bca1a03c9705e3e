//! Command-line definitions (clap) and the dispatch of headless commands.
//!
//! Parsing is clap's; each command then resolves its arguments into validated settings before
//! doing any work (ripgrep splits "parse" from "resolve" the same way).

use crate::alibi::{self, Preset, SlopeSpec};
use crate::model::load::{self, ChosenDevice, DeviceSpec, LoadedModel};
use crate::model::{Position, init};
use clap::{Args, Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde_json::json;
use std::path::{Path, PathBuf};

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

/// Options of the TUI (no command).
#[derive(Debug, Args, Clone)]
pub struct TuiArgs {
    /// Model folder or Hugging Face repo id [default: assets/models/alibi].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Text to evaluate [default: assets/texts/default.txt].
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Another model to plot alongside (repeatable), e.g. assets/models/sinusoidal.
    #[arg(long, value_name = "PATH")]
    pub compare: Vec<PathBuf>,
    /// auto | cpu | cuda[:N] | metal.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// f32 | f16 | bf16.
    #[arg(long, default_value = "f32", value_parser = load::parse_dtype)]
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

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print ALiBi slopes and per-head reach for a head count (no model needed).
    Slopes(SlopesArgs),
    /// Describe a model: architecture, sizes, position scheme, slopes with reach.
    Inspect(InspectArgs),
    /// Perplexity versus input length under the paper's protocols (or the one-pass sweep).
    Eval(Box<EvalArgs>),
    /// Draw several `eval --json` results into one perplexity-vs-length figure.
    Plot(PlotArgs),
    /// Measure forward speed, sweep vs non-overlapping windows, long-input memory and TUI frame time.
    Bench(BenchArgs),
    /// Tokenizer tools.
    Tokenizer(TokenizerArgs),
    /// Train a model of our own architecture.
    Train(Box<TrainArgs>),
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Evaluate this UTF-8 text file, or every .txt file of a folder (tokenized with the model's tokenizer).
    #[arg(
        long,
        conflicts_with = "token_ids",
        required_unless_present = "token_ids"
    )]
    pub text: Option<PathBuf>,
    /// Evaluate whitespace-separated integer token ids (for models without a tokenizer).
    #[arg(long)]
    pub token_ids: Option<PathBuf>,
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

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text whose tokens are used (repeated as needed).
    #[arg(
        long,
        required_unless_present = "token_ids",
        conflicts_with = "token_ids"
    )]
    pub text: Option<PathBuf>,
    /// Whitespace-separated token ids instead of a text (for models without tokenizer.json).
    #[arg(long, value_name = "FILE")]
    pub token_ids: Option<PathBuf>,
    /// Shortest forward length.
    #[arg(long, default_value_t = 128)]
    pub min_length: usize,
    /// Longest forward length.
    #[arg(long, default_value_t = 4096)]
    pub max_length: usize,
    /// Timed repeats per length (median reported).
    #[arg(long, default_value_t = 3)]
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
    /// Write the report (Markdown) here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// An `eval --json` file; repeat for several curves.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Labels for the curves, in order (default: each file's model name).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The figure: .svg or .png.
    #[arg(long)]
    pub out: PathBuf,
    /// The figure's title.
    #[arg(long, default_value = "Perplexity vs input length")]
    pub title: String,
}

/// `tokenizer` subcommands.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenizerCommand,
}

/// Tokenizer subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE tokenizer on the .txt files of a folder.
    Train {
        /// Folder of UTF-8 .txt files.
        #[arg(long)]
        data: PathBuf,
        /// Vocabulary size (including 256 byte tokens and <|endoftext|>).
        #[arg(long, default_value_t = 8192)]
        vocab_size: usize,
        /// Where to write tokenizer.json.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Arguments of `train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder of training .txt files.
    #[arg(long)]
    pub data: PathBuf,
    /// Folder of validation .txt files.
    #[arg(long)]
    pub valid: PathBuf,
    /// tokenizer.json (from `tokenizer train`).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// alibi | sinusoidal | rotary | none.
    #[arg(long)]
    pub position: Position,
    /// Training length in tokens.
    #[arg(long)]
    pub train_len: usize,
    /// Initial ALiBi slopes: a preset name (geometric, equal, linear, reversed, zero).
    #[arg(long)]
    pub slopes: Option<Preset>,
    /// Train the per-head ALiBi slopes too.
    #[arg(long)]
    pub learn_slopes: bool,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 256)]
    pub d_model: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// MLP width (default 4 x d_model).
    #[arg(long)]
    pub d_ff: Option<usize>,
    /// Vocabulary size of the model (default: the tokenizer's).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Gradient clipping norm (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Seed for initialisation and data order.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Validate every this many steps.
    #[arg(long, default_value_t = 100)]
    pub valid_every: usize,
    /// Checkpoint every this many steps.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// dtype of the final weights: f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    pub save_dtype: String,
    /// Output folder (the final checkpoint; checkpoint/ and loss.csv inside).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// auto | cpu | cuda[:N] | metal.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceSpec,
}

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
    #[arg(long, default_value = "f32", value_parser = load::parse_dtype)]
    pub dtype: candle_core::DType,
}

fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse()
}

/// Arguments of `slopes`.
#[derive(Debug, Args)]
pub struct SlopesArgs {
    /// Number of attention heads.
    #[arg(long)]
    pub heads: usize,
    /// geometric | equal | linear | reversed | zero.
    #[arg(long, default_value = "geometric")]
    pub preset: Preset,
    /// Maximum bias of the geometric sequence (the paper uses 8: slopes start at 2^(-8/n)).
    #[arg(long, default_value_t = alibi::PAPER_MAX_BIAS, allow_negative_numbers = true)]
    pub max_bias: f64,
    /// Multiply every slope by this.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub scale: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Slopes(a)) => slopes(&a),
        Some(Command::Inspect(a)) => inspect(&a),
        Some(Command::Tokenizer(TokenizerArgs {
            command:
                TokenizerCommand::Train {
                    data,
                    vocab_size,
                    out,
                },
        })) => {
            let tok = crate::train::tokenizer::train_tokenizer(&data, vocab_size, &out)?;
            println!(
                "wrote {} ({} tokens)",
                out.display(),
                tok.get_vocab_size(true)
            );
            Ok(())
        }
        Some(Command::Train(a)) => train(&a),
        Some(Command::Eval(a)) => crate::eval::command::eval(&a),
        Some(Command::Plot(a)) => crate::eval::command::plot(&a),
        Some(Command::Bench(a)) => crate::bench::run(&a),
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
            };
            crate::tui::run(&settings)
        }
    }
}

/// A reach as JSON: `null` when infinite (zero slope).
fn reach_json(r: f64) -> serde_json::Value {
    if r.is_finite() {
        json!(r)
    } else {
        serde_json::Value::Null
    }
}

fn fmt_reach(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}")
    } else {
        "inf".to_string()
    }
}

fn slopes(a: &SlopesArgs) -> Result<()> {
    let spec = SlopeSpec {
        preset: a.preset,
        max_bias: a.max_bias,
        scale: a.scale,
    };
    let slopes = spec.slopes(a.heads)?;
    let reach: Vec<f64> = slopes.iter().map(|&m| alibi::reach(m)).collect();
    if a.json {
        let out = json!({
            "heads": a.heads,
            "preset": a.preset.name(),
            "slopes": slopes,
            "reach": reach.iter().map(|&r| reach_json(r)).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "{} heads, preset {}, max bias {}, scale {}",
            a.heads, a.preset, a.max_bias, a.scale
        );
        println!(
            "reach = ln(100)/slope: the distance at which the bias alone divides attention by 100"
        );
        println!("{:>5}  {:>14}  {:>10}", "head", "slope", "reach");
        for (h, (m, r)) in slopes.iter().zip(&reach).enumerate() {
            println!("{h:>5}  {m:>14.8}  {:>10}", fmt_reach(*r));
        }
    }
    Ok(())
}

/// Loads the model named by `args`, with the error's context naming the folder.
pub fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    let device: ChosenDevice = load::choose_device(args.device)?;
    Ok(load::load_model(&args.model, device, args.dtype)?)
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let loaded = load_model(&a.model)?;
    let cfg = loaded.model.config();
    let params = init::param_count(cfg);
    let slopes = cfg.default_slopes();
    let alibi = cfg.position == Position::Alibi;
    let device = load::device_name(&loaded.device.device);
    let dtype = load::dtype_name(loaded.model.dtype());
    if a.json {
        let heads: Vec<_> = slopes
            .iter()
            .enumerate()
            .map(|(h, &m)| json!({"head": h, "slope": m, "reach": reach_json(alibi::reach(m))}))
            .collect();
        let out = json!({
            "model": loaded.name,
            "folder": loaded.folder,
            "architecture": cfg.arch.name(),
            "layers": cfg.n_layers,
            "heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_ff": cfg.d_ff,
            "parameters": params,
            "position": cfg.position.name(),
            "train_len": cfg.train_len,
            "max_len": cfg.max_len,
            "vocab_size": cfg.vocab_size,
            "dtype": dtype,
            "saved_dtype": cfg.saved_dtype,
            "device": device,
            "device_note": loaded.device.note,
            "tokenizer": loaded.tokenizer.is_some(),
            "slopes": if alibi { json!(heads) } else { serde_json::Value::Null },
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "model         {} ({})",
        loaded.name,
        loaded.folder.display()
    );
    println!("architecture  {}", cfg.arch.name());
    println!(
        "size          {} layers, {} heads, d_model {}, d_ff {}, {} parameters ({:.2} M)",
        cfg.n_layers,
        cfg.n_heads,
        cfg.d_model,
        cfg.d_ff,
        params,
        params as f64 / 1e6
    );
    println!("position      {}", cfg.position);
    println!("train_len     {} tokens", cfg.train_len);
    if let Some(m) = cfg.max_len {
        println!("max_len       {m} tokens (hard limit)");
    }
    println!(
        "vocab         {} ({})",
        cfg.vocab_size,
        if loaded.tokenizer.is_some() {
            "tokenizer.json present"
        } else {
            "no tokenizer: use --token-ids"
        }
    );
    println!(
        "dtype         {dtype} (saved as {})",
        cfg.saved_dtype.as_deref().unwrap_or("unknown")
    );
    println!("device        {device} ({})", loaded.device.note);
    if alibi {
        println!(
            "slopes        head  slope         reach (tokens until the bias divides attention by 100)"
        );
        for (h, m) in slopes.iter().enumerate() {
            println!(
                "              {h:>4}  {m:<12.8}  {}",
                fmt_reach(alibi::reach(*m))
            );
        }
    }
    Ok(())
}

/// Reads a slope override: a preset name or a JSON file with a `slopes` array (such as the output
/// of `slopes --json`). The count must match the model's heads.
pub fn resolve_slopes(spec: &str, heads: usize) -> Result<Vec<f64>> {
    if let Ok(preset) = spec.parse::<Preset>() {
        return Ok(SlopeSpec {
            preset,
            ..SlopeSpec::default()
        }
        .slopes(heads)?);
    }
    let path = Path::new(spec);
    if !path.is_file() {
        bail!(
            "--slopes '{spec}' is neither a preset (geometric, equal, linear, reversed, zero) nor a file"
        );
    }
    let text = std::fs::read_to_string(path).wrap_err_with(|| format!("cannot read '{spec}'"))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        eyre!(
            "'{spec}' is not valid JSON: {} (expected {{\"slopes\": [..]}})",
            load::one_line(e)
        )
    })?;
    let arr = value
        .get("slopes")
        .and_then(|s| s.as_array())
        .ok_or_else(|| eyre!("'{spec}' has no \"slopes\" array (expected {{\"slopes\": [..]}})"))?;
    let slopes: Vec<f64> = arr
        .iter()
        .map(|v| v.as_f64().filter(|x| x.is_finite()))
        .collect::<Option<_>>()
        .ok_or_else(|| eyre!("'{spec}': every slope must be a finite number"))?;
    if slopes.len() != heads {
        bail!(
            "'{spec}' has {} slopes but the model has {heads} heads",
            slopes.len()
        );
    }
    Ok(slopes)
}

fn train(a: &TrainArgs) -> Result<()> {
    use crate::train::{TrainSettings, optim::AdamWConfig};
    let tok = load::load_tokenizer(&a.tokenizer)?;
    let vocab = a.vocab_size.unwrap_or_else(|| tok.get_vocab_size(true));
    let mut model = crate::model::Config::ours(
        vocab,
        a.d_model,
        a.layers,
        a.heads,
        a.d_ff.unwrap_or(4 * a.d_model),
        a.position,
        a.train_len,
    );
    let spec = a.slopes.map(|preset| SlopeSpec {
        preset,
        ..SlopeSpec::default()
    });
    model.slopes = crate::train::preset_slopes(a.position, a.heads, spec.as_ref())?;
    if a.learn_slopes && a.position != Position::Alibi {
        bail!("--learn-slopes only applies to --position alibi");
    }
    load::parse_dtype(&a.save_dtype).map_err(|e| eyre!("--save-dtype: {e}"))?;
    if a.valid_every == 0 || a.checkpoint_every == 0 {
        bail!("--valid-every and --checkpoint-every must be at least 1");
    }
    let settings = TrainSettings {
        data: a.data.clone(),
        valid: a.valid.clone(),
        tokenizer: a.tokenizer.clone(),
        model,
        learn_slopes: a.learn_slopes,
        steps: a.steps,
        batch: a.batch,
        adamw: AdamWConfig {
            lr: a.lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
        warmup: a.warmup,
        clip: a.clip,
        seed: a.seed,
        valid_every: a.valid_every,
        checkpoint_every: a.checkpoint_every,
        out: a.out.clone(),
        save_dtype: a.save_dtype.clone(),
    };
    let device = load::choose_device(a.device)?;
    eprintln!(
        "training on {} ({})",
        load::device_name(&device.device),
        device.note
    );
    crate::train::run(&settings, a.resume, &device.device)
}
