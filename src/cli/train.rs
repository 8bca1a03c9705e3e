//! `tokenizer train` and `train`: arguments resolved into training settings.

use super::common::parse_device;
use crate::alibi::{Preset, SlopeSpec};
use crate::model::Position;
use crate::model::device::{DeviceSpec, choose_device, parse_dtype};
use crate::model::folder::load_tokenizer;
use clap::{Args, Subcommand};
use color_eyre::eyre::{Result, bail, eyre};
use std::io::Write;
use std::path::PathBuf;

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
    /// Optimiser steps (1 to 100 million).
    #[arg(long, default_value_t = 2000, value_parser = super::common::train_steps)]
    pub steps: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true, value_parser = super::common::learning_rate)]
    pub lr: f64,
    /// Warm-up steps, at most --steps [default: 100].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Gradient clipping norm (0 disables).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::common::clip)]
    pub clip: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true, value_parser = super::common::weight_decay)]
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
    /// Which trainer runs the steps: auto (the fast CPU trainer where it applies, else candle),
    /// fast, or candle (autograd; any device).
    #[arg(long, default_value = "auto")]
    pub trainer: crate::train::TrainerKind,
    /// auto | cpu | cuda[:N] | metal.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceSpec,
    /// Copy test at every validation: spans of this many validation tokens, each repeated right
    /// after itself; copy gain and the best head's induction score go to loss.csv (default:
    /// train_len / 2 - 2; 0: off).
    #[arg(long)]
    pub copy_span: Option<usize>,
    /// Spans of the copy test.
    #[arg(long, default_value_t = crate::train::COPY_SAMPLES, value_parser = copy_samples)]
    pub copy_samples: usize,
    /// The copy mix: the fraction of training windows (0 to 1) in which a span of the window
    /// recurs later in it.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub repeat_frac: f64,
    /// Shortest and longest repeated span of the copy mix, MIN..MAX tokens (default 8..train_len/2).
    #[arg(long, value_parser = parse_span_range)]
    pub repeat_span: Option<(usize, usize)>,
    /// What the copy mix repeats: `text` (a span of the window) or `random` (random tokens of the
    /// window, so only copying predicts the repeat).
    #[arg(long, default_value = "text")]
    pub repeat_kind: crate::eval::reach::SpanKind,
    /// Start from this model folder's weights (same shape and position scheme, e.g. a shipped
    /// model) instead of a random initialisation; the optimiser starts afresh.
    #[arg(long)]
    pub init: Option<PathBuf>,
}

/// Runs `tokenizer train`.
pub fn tokenizer(a: TokenizerArgs) -> Result<()> {
    let TokenizerCommand::Train {
        data,
        vocab_size,
        out,
    } = a.command;
    let tok = crate::train::tokenizer::train_tokenizer(&data, vocab_size, &out)?;
    writeln!(
        std::io::stdout(),
        "wrote {} ({})",
        out.display(),
        crate::text::count(tok.get_vocab_size(true), "token")
    )?;
    Ok(())
}

/// Runs `train`.
pub fn train(a: &TrainArgs) -> Result<()> {
    use crate::train::{TrainSettings, optim::AdamWConfig};
    let tok = load_tokenizer(&a.tokenizer)?;
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
    parse_dtype(&a.save_dtype).map_err(|e| eyre!("--save-dtype: {e}"))?;
    if let Some(w) = a.warmup
        && w > a.steps
    {
        bail!(
            "--warmup {w} is longer than the run (--steps {}): the learning rate would never reach --lr (hint: use --warmup {} or less)",
            a.steps,
            a.steps
        );
    }
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
        warmup: a.warmup.unwrap_or(DEFAULT_WARMUP),
        clip: a.clip,
        seed: a.seed,
        valid_every: a.valid_every,
        checkpoint_every: a.checkpoint_every,
        out: a.out.clone(),
        save_dtype: a.save_dtype.clone(),
        trainer: a.trainer,
        copy_span: a
            .copy_span
            .unwrap_or_else(|| crate::train::default_copy_span(a.train_len)),
        copy_samples: a.copy_samples,
        repeat_frac: a.repeat_frac,
        repeat_span: repeat_span(a)?,
        repeat_kind: a.repeat_kind,
        init: a.init.clone(),
    };
    let device = choose_device(a.device)?;
    crate::train::check(&settings, a.resume)?;
    crate::train::run(&settings, a.resume, &device.device)
}

/// `--repeat-frac`: a fraction in 0..=1.
fn fraction(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a fraction from 0 to 1")),
    }
}

/// The warm-up when `--warmup` is not given (also for runs shorter than it, as before, so their
/// recorded schedules stay reproducible; an explicit `--warmup` longer than `--steps` is refused).
pub const DEFAULT_WARMUP: usize = 100;

/// `--repeat-span MIN..MAX`.
fn parse_span_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let err = || format!("'{s}' is not a span range MIN..MAX of tokens (e.g. 8..128)");
    let (a, b) = s.split_once("..").ok_or_else(err)?;
    let (a, b) = (
        a.trim().parse::<usize>().map_err(|_| err())?,
        b.trim().parse::<usize>().map_err(|_| err())?,
    );
    if a == 0 || a > b {
        return Err(format!("'{s}': need 1 <= MIN <= MAX"));
    }
    Ok((a, b))
}

/// The copy mix's span range, checked against the window.
fn repeat_span(a: &TrainArgs) -> Result<(usize, usize)> {
    let (min, max) = a
        .repeat_span
        .unwrap_or_else(|| crate::train::default_repeat_span(a.train_len));
    if 2 * max > a.train_len + 1 {
        bail!(
            "--repeat-span {min}..{max}: two copies of {max} tokens do not fit a {}-token window (hint: keep MAX at most {})",
            a.train_len + 1,
            a.train_len.div_ceil(2)
        );
    }
    Ok((min, max))
}

/// `--copy-samples`: 1 to 1,000 spans.
fn copy_samples(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (1..=1000).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of spans from 1 to 1000")),
    }
}
