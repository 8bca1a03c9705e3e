//! The perplexity engine: per-position losses over a token stream under the paper's protocols,
//! and the one-pass `sweep` that yields every length at once; [`stats`] measures attention
//! statistics of every head over the same windows.
//!
//! A window of `L` input tokens starting at `t` predicts tokens `t+1..=t+L`; position `p` of the
//! window is the prediction made with `p+1` tokens of context (as in Press et al.'s code).

pub mod ablate;
pub mod command;
pub mod console;
pub mod figures;
pub mod kl;
pub mod needle;
pub mod output;
pub mod plot;
mod point;
pub mod reach;
pub mod recipe;
pub mod stats;
pub mod stats_command;
mod sweep;

pub use point::{
    KlStats, POSITION_MIN_TOKENS, Point, PositionLoss, Stats, bin_position_stats, thin_stretch,
};
pub use sweep::SweepAccumulator;

use crate::model::transformer::{ForwardOptions, Transformer};
use crate::text::Stream;
use candle_core::{Result, Tensor};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Windows of one length are batched until a batch holds this many tokens.
pub const BATCH_TOKENS: usize = 4096;

/// How windows are laid over the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Consecutive windows of `L`; every token scored with its in-window prefix (the paper's main
    /// protocol).
    NonOverlap,
    /// Windows of `L` moved by `stride`, scoring only the last `stride` tokens of each window
    /// after the first (stride 1 is the paper's sliding evaluation; stride L is `NonOverlap`).
    Sliding {
        /// Tokens the window moves each time.
        stride: usize,
    },
    /// Windows of the largest length scored once; length `L` uses the first `L` positions of each
    /// window (exact for causal attention).
    Sweep,
}

impl Protocol {
    /// The name used on the command line and in outputs.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::NonOverlap => "nonoverlap",
            Protocol::Sliding { .. } => "sliding",
            Protocol::Sweep => "sweep",
        }
    }
}

/// Parses `64,128,256` or a doubling range `64..4096`.
pub fn parse_lengths(spec: &str) -> std::result::Result<Vec<usize>, String> {
    let bad = |what: &str| {
        format!(
            "--lengths '{spec}': {what} (expected a list like 64,128,256 or a doubling range like 64..4096)"
        )
    };
    let mut out = if let Some((a, b)) = spec.split_once("..") {
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| bad("the start is not a whole number"))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| bad("the end is not a whole number"))?;
        if a == 0 {
            return Err(bad("a length must be at least 1"));
        }
        if b < a {
            return Err(bad("the end is smaller than the start"));
        }
        // At most 64 doublings fit in a usize; stop before the doubling overflows (it would wrap
        // to 0 in release builds and loop forever).
        let mut v = Vec::new();
        let mut l = Some(a);
        while let Some(len) = l.filter(|&len| len <= b) {
            v.push(len);
            l = len.checked_mul(2);
        }
        v
    } else {
        spec.split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| bad(&format!("'{}' is not a whole number", s.trim())))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    if out.contains(&0) {
        return Err(bad("a length must be at least 1"));
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad("no lengths"));
    }
    Ok(out)
}

/// What can stop an evaluation early.
#[derive(Default)]
pub struct Control<'a> {
    /// Set to stop between batches.
    pub cancel: Option<&'a AtomicBool>,
    /// Called with (windows done, windows total).
    pub progress: Option<&'a dyn Fn(usize, usize)>,
    /// Windows per batch (default: as many as fit [`BATCH_TOKENS`]).
    pub batch: Option<usize>,
    /// Checked between layers inside a forward ([`ForwardOptions::interrupt`]): the TUI's worker
    /// sets it when a more urgent job arrives.
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// Raised when [`Control::cancel`] is set.
pub const CANCELLED: &str = "cancelled";

/// Per-position NLL for windows of `len` starting at each of `starts` (batched).
pub fn window_losses(
    model: &Transformer,
    stream: &Stream,
    starts: &[usize],
    len: usize,
    slopes: Option<&Tensor>,
    ctl: &Control,
    each: impl FnMut(usize, Vec<f32>),
) -> Result<()> {
    let opts = ForwardOptions {
        slopes: slopes.cloned(),
        ..Default::default()
    };
    window_losses_with(model, stream, starts, len, &opts, ctl, each)
}

/// [`window_losses`] with any forward options (slopes, knocked-out heads).
pub fn window_losses_with(
    model: &Transformer,
    stream: &Stream,
    starts: &[usize],
    len: usize,
    opts: &ForwardOptions,
    ctl: &Control,
    mut each: impl FnMut(usize, Vec<f32>),
) -> Result<()> {
    let batch = ctl.batch.unwrap_or(BATCH_TOKENS / len.max(1)).max(1);
    let dev = model.device();
    let mut done = 0;
    let with_interrupt;
    let opts = match (&ctl.interrupt, &opts.interrupt) {
        (Some(flag), None) => {
            with_interrupt = ForwardOptions {
                interrupt: Some(flag.clone()),
                ..opts.clone()
            };
            &with_interrupt
        }
        _ => opts,
    };
    for chunk in starts.chunks(batch) {
        if ctl.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            candle_core::bail!("{CANCELLED}");
        }
        let mut x = Vec::with_capacity(chunk.len() * len);
        let mut y = Vec::with_capacity(chunk.len() * len);
        for &s in chunk {
            x.extend_from_slice(&stream.ids[s..s + len]);
            y.extend_from_slice(&stream.ids[s + 1..=s + len]);
        }
        let x = Tensor::from_vec(x, (chunk.len(), len), dev)?;
        let y = Tensor::from_vec(y, (chunk.len(), len), dev)?;
        let out = model.forward_hidden(&x, opts)?;
        let nll = model.nll(&out.hidden, &y)?.to_vec2::<f32>()?;
        for (row, &s) in nll.into_iter().zip(chunk) {
            each(s, row);
        }
        done += chunk.len();
        if let Some(p) = ctl.progress {
            p(done, starts.len());
        }
    }
    Ok(())
}

/// One scored token, for `--per-token`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TokenLoss {
    /// Window index.
    pub window: usize,
    /// Position in the window (context = position + 1 tokens).
    pub position: usize,
    /// The predicted token id.
    pub token: u32,
    /// Its NLL in nats.
    pub nll: f32,
}

/// Everything one evaluation produces.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The protocol.
    pub protocol: Protocol,
    /// One point per length, ascending.
    pub points: Vec<Point>,
    /// Mean NLL by window position for the largest length (loss-by-position curve).
    pub position_nll: Vec<f64>,
    /// The same in log-spaced position bins, with standard errors and token counts.
    pub position_loss: Vec<PositionLoss>,
    /// Every scored token of the largest length.
    pub per_token: Vec<TokenLoss>,
    /// KL divergence from the original model per length (`eval --kl`; empty otherwise).
    pub kl: Vec<KlStats>,
}

/// Checks that every length fits the stream and the model.
pub fn check_lengths(
    stream: &Stream,
    lengths: &[usize],
    max_len: Option<usize>,
) -> std::result::Result<(), String> {
    let n = stream.ids.len();
    if n < 2 {
        return Err(format!(
            "the text has {}; at least 2 are needed to score anything",
            crate::text::count(n, "token")
        ));
    }
    let smallest = lengths.first().copied().unwrap_or(1);
    let largest = lengths.last().copied().unwrap_or(1);
    if let Some(m) = max_len
        && largest > m
    {
        return Err(format!(
            "length {largest} exceeds the model's limit of {m} tokens (hint: use lengths up to {m})"
        ));
    }
    if n <= largest {
        return Err(format!(
            "the text has {} but length {largest} needs at least {} (hint: use lengths up to {}, or a longer text; smallest asked: {smallest})",
            crate::text::count(n, "token"),
            largest + 1,
            n - 1
        ));
    }
    Ok(())
}

/// Evaluates `lengths` under `protocol`.
pub fn evaluate(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    protocol: Protocol,
    slopes: Option<&Tensor>,
    ctl: &Control,
) -> Result<Evaluation> {
    let opts = ForwardOptions {
        slopes: slopes.cloned(),
        ..Default::default()
    };
    evaluate_with(model, stream, lengths, protocol, &opts, ctl)
}

/// [`evaluate`] with any forward options (slopes, a recipe's key mask, knocked-out heads).
pub fn evaluate_with(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    protocol: Protocol,
    opts: &ForwardOptions,
    ctl: &Control,
) -> Result<Evaluation> {
    if let Err(e) = check_lengths(stream, lengths, model.config().max_len) {
        candle_core::bail!("{e}");
    }
    let lmax = lengths.last().copied().unwrap_or(1);
    let mut per_token = Vec::new();
    let mut position_nll = Vec::new();
    let mut position_loss = Vec::new();
    let mut points = Vec::with_capacity(lengths.len());
    match protocol {
        Protocol::Sweep => {
            let starts: Vec<usize> = (0..stream.windows(lmax)).map(|w| w * lmax).collect();
            let mut acc = SweepAccumulator::new(lmax);
            window_losses_with(model, stream, &starts, lmax, opts, ctl, |s, nll| {
                acc.add(stream, s, &nll);
                push_tokens(&mut per_token, stream, s / lmax, s, 0, &nll);
            })?;
            points = acc.points(lengths);
            position_nll = acc.position_nll();
            position_loss = bin_position_stats(&acc.position_stats());
        }
        Protocol::NonOverlap | Protocol::Sliding { .. } => {
            let total: usize = lengths
                .iter()
                .map(|&l| starts_for(stream, l, protocol).len())
                .sum();
            let mut done_before = 0;
            for &len in lengths {
                let starts = starts_for(stream, len, protocol);
                let mut stats = Stats::default();
                let mut positions = vec![Stats::default(); len];
                let last = len == lmax;
                let prog = |d: usize, _: usize| {
                    if let Some(p) = ctl.progress {
                        p(done_before + d, total);
                    }
                };
                let inner = Control {
                    cancel: ctl.cancel,
                    progress: Some(&prog),
                    batch: ctl.batch,
                    interrupt: ctl.interrupt.clone(),
                };
                window_losses_with(model, stream, &starts, len, opts, &inner, |s, nll| {
                    let first = first_scored(&starts, s, len);
                    for (p, &x) in nll.iter().enumerate().skip(first) {
                        stats.add(x, stream.bytes_of(s + p + 1));
                        positions[p].add(x, None);
                    }
                    if last {
                        let w = starts.iter().position(|&t| t == s).unwrap_or(0);
                        push_tokens(&mut per_token, stream, w, s, first, &nll);
                    }
                })?;
                done_before += starts.len();
                points.push(stats.point(len));
                if last {
                    position_nll = positions.iter().map(Stats::mean).collect();
                    position_loss = bin_position_stats(&positions);
                }
            }
        }
    }
    let targets = stream.ids.len().saturating_sub(1);
    for p in &mut points {
        p.unscored = Some(targets.saturating_sub(p.tokens));
    }
    Ok(Evaluation {
        protocol,
        points,
        position_nll,
        position_loss,
        per_token,
        kl: Vec::new(),
    })
}

fn push_tokens(
    out: &mut Vec<TokenLoss>,
    stream: &Stream,
    window: usize,
    start: usize,
    first: usize,
    nll: &[f32],
) {
    for (p, &x) in nll.iter().enumerate().skip(first) {
        out.push(TokenLoss {
            window,
            position: p,
            token: stream.ids[start + p + 1],
            nll: x,
        });
    }
}

/// Window starts of length `len` under `protocol` (not `Sweep`).
///
/// `Sliding` scores every target exactly once: windows move by `stride`, and when fewer than
/// `stride` targets remain after the last of them, one more window ends at the stream's last
/// token and scores just those (as in Hugging Face's strided-perplexity recipe).
pub fn starts_for(stream: &Stream, len: usize, protocol: Protocol) -> Vec<usize> {
    let n = stream.ids.len();
    let step = match protocol {
        Protocol::Sliding { stride } => stride.clamp(1, len),
        _ => len,
    };
    let mut v = Vec::new();
    let mut s = 0;
    while s + len < n {
        v.push(s);
        s += step;
    }
    if let (Protocol::Sliding { .. }, Some(&last)) = (protocol, v.last())
        && last + len < n - 1
    {
        v.push(n - 1 - len);
    }
    v
}

/// The first position a window scores: everything past the previous window's last target (all of
/// the first window; the last `stride` positions of a sliding window; the tail window's remainder).
pub fn first_scored(starts: &[usize], start: usize, len: usize) -> usize {
    match starts.binary_search(&start) {
        Ok(i) if i > 0 => len - (start - starts[i - 1]).min(len),
        _ => 0,
    }
}
