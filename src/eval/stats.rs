//! Attention statistics over a text: for each input length `L`, the non-overlapping windows of
//! `L` tokens (as in the `nonoverlap` protocol) go through the model once each with
//! [`ForwardOptions::stats`] on, so every (layer, head) is measured in the same forward that scores
//! the tokens. Per head: mean distance, entropy, normalised entropy, 90 % mass distance and sink
//! mass (means over every query of every window, see `model::attention_stats`), attention by
//! distance in log-spaced bins, and for ALiBi heads the same statistics of the bias alone
//! (`alibi::prior`). Plus the loss by position at the largest length, log-binned.

use super::{BATCH_TOKENS, CANCELLED, Control, Protocol, Stats, check_lengths, starts_for};
use crate::alibi::prior::{log_bin_range, log_bins, prior_means, prior_profile};
use crate::model::attention_stats::AttentionStats;
use crate::model::config::Position;
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use crate::text::Stream;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Everything `stats` reports, in the shape of its JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The model's name.
    pub model: String,
    /// The position scheme (`alibi`, `sinusoidal`, `rotary`, `none`).
    pub position: String,
    /// The model's training length, tokens.
    pub train_len: usize,
    /// Input lengths measured, ascending.
    pub lengths: Vec<usize>,
    /// One entry per (layer, head), layer-major.
    pub heads: Vec<HeadReport>,
    /// Attention by distance per (layer, head, length).
    pub distance_profile: Vec<DistanceProfile>,
    /// Loss by position in the window at the largest length, log-binned.
    pub position_loss: Vec<PositionLoss>,
}

/// One head's statistics at every length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// The head's ALiBi slope (`null` for other position schemes).
    pub slope: Option<f64>,
    /// One point per length, ascending.
    pub points: Vec<HeadPoint>,
}

/// One head's statistics at one length: means over every query of every window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadPoint {
    /// Input length `L`.
    pub length: usize,
    /// Queries averaged (windows x `L`).
    pub queries: u64,
    /// `sum_j p_ij (i - j)`, tokens.
    pub mean_distance: f64,
    /// `-sum_j p_ij ln p_ij`, nats.
    pub entropy: f64,
    /// Entropy over `ln(i + 1)`, queries `i >= 1` (`null` when `L < 2`).
    pub entropy_norm: Option<f64>,
    /// Smallest `d` with 90 % of the attention within `d` tokens, tokens.
    pub mass90_distance: f64,
    /// Attention on the window's first four tokens, queries `i >= 16` (`null` when `L <= 16`).
    pub sink_mass: Option<f64>,
    /// The same statistics of the ALiBi bias alone (`null` for other position schemes).
    pub prior: Option<PriorPoint>,
}

/// The ALiBi prior's statistics, averaged over the same queries as the head's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriorPoint {
    /// Tokens.
    pub mean_distance: f64,
    /// Nats.
    pub entropy: f64,
    /// Queries `i >= 1`.
    pub entropy_norm: Option<f64>,
    /// Tokens.
    pub mass90_distance: f64,
    /// Queries `i >= 16`.
    pub sink_mass: Option<f64>,
}

/// Attention by distance for one head at one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistanceProfile {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// Input length `L`.
    pub length: usize,
    /// Log-spaced bins of distance: `[0,1), [1,2), [2,4), ...`, the last cut at `L`.
    pub bins: Vec<DistanceBin>,
}

/// The mean attention at one distance `d` in `[from, to)`, over queries `i >= d`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistanceBin {
    /// First distance, tokens.
    pub from: usize,
    /// One past the last distance, tokens.
    pub to: usize,
    /// Mean attention at one distance of the bin (the bin's attention over its (query, distance)
    /// pairs).
    pub attention: f64,
    /// The same for the ALiBi bias alone (`null` for other position schemes).
    pub prior: Option<f64>,
}

pub use super::point::PositionLoss;

/// What the windows of one length produced.
#[derive(Debug, Clone)]
pub struct LengthStats {
    /// Input length `L`.
    pub length: usize,
    /// Windows run.
    pub windows: usize,
    /// Sums for every (layer, head).
    pub attention: AttentionStats,
    /// `[p]` = the losses at position `p` of every window.
    pub positions: Vec<Stats>,
    /// The slopes the windows ran with, when overridden (a `--slopes` file or a recipe's slopes
    /// at this length); the prior of each head follows them.
    pub slopes: Option<Vec<f64>>,
}

/// Runs the non-overlapping windows of `len` tokens (the first `max_windows` when given) with
/// statistics on. `slopes` overrides the ALiBi slopes. Windows are batched as in
/// [`super::window_losses`]; `ctl` can cancel between batches and reports progress.
pub fn length_stats(
    model: &Transformer,
    stream: &Stream,
    len: usize,
    slopes: Option<&[f64]>,
    max_windows: Option<usize>,
    ctl: &Control,
) -> Result<LengthStats> {
    let mut starts = starts_for(stream, len, Protocol::NonOverlap);
    if let Some(n) = max_windows {
        starts.truncate(n.max(1));
    }
    let dev = model.device();
    let slopes_list = slopes;
    let slopes = slopes.map(|s| slopes_tensor(s, dev)).transpose()?;
    let cfg = model.config();
    let mut out = LengthStats {
        length: len,
        windows: 0,
        attention: AttentionStats::new(cfg.n_layers, cfg.n_heads),
        positions: vec![Stats::default(); len],
        slopes: slopes_list.map(<[f64]>::to_vec),
    };
    let batch = ctl.batch.unwrap_or(BATCH_TOKENS / len.max(1)).max(1);
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
        let opts = ForwardOptions {
            slopes: slopes.clone(),
            stats: true,
            interrupt: ctl.interrupt.clone(),
            ..Default::default()
        };
        let fwd = model.forward_hidden(&x, &opts)?;
        for row in model.nll(&fwd.hidden, &y)?.to_vec2::<f32>()? {
            for (p, &nll) in row.iter().enumerate() {
                out.positions[p].add(nll, None);
            }
        }
        if let Some(s) = &fwd.stats {
            out.attention.merge(s);
        }
        out.windows += chunk.len();
        if let Some(p) = ctl.progress {
            p(out.windows, starts.len());
        }
    }
    Ok(out)
}

/// The statistics of `model` (called `name` in the report) over `stream` at every length of
/// `lengths` (ascending), at most `max_windows` windows each. `slopes` overrides the ALiBi slopes
/// (the prior uses the same ones). Progress counts windows over all lengths.
pub fn attention_stats(
    model: &Transformer,
    name: &str,
    stream: &Stream,
    lengths: &[usize],
    slopes: Option<&[f64]>,
    max_windows: Option<usize>,
    ctl: &Control,
) -> Result<StatsReport> {
    attention_stats_with(model, name, stream, lengths, slopes, None, max_windows, ctl)
}

/// [`attention_stats`] under a slope recipe (`interp:F`, `interp:dynamic`, `ntk`): each length
/// runs with the recipe's slopes at that length, and each head's prior follows them. Mask recipes
/// (`window`, `sinks`) are refused: the prior assumes full causal attention.
#[allow(clippy::too_many_arguments)]
pub fn attention_stats_with(
    model: &Transformer,
    name: &str,
    stream: &Stream,
    lengths: &[usize],
    slopes: Option<&[f64]>,
    recipe: Option<crate::alibi::recipe::Recipe>,
    max_windows: Option<usize>,
    ctl: &Control,
) -> Result<StatsReport> {
    let cfg = model.config();
    if let Some(r) = recipe {
        if r.key_mask().is_some() {
            candle_core::bail!(
                "stats --recipe {r}: window and sinks recipes are not measured against the prior (it assumes full causal attention); use `eval --recipe {r}` or `attention --recipe {r}`"
            );
        }
        if cfg.position != Position::Alibi {
            candle_core::bail!(
                "stats --recipe {r} changes ALiBi slopes; '{name}' uses {} positions",
                cfg.position
            );
        }
    }
    let base = slopes.map_or_else(|| cfg.default_slopes(), <[f64]>::to_vec);
    if let Err(e) = check_lengths(stream, lengths, cfg.max_len) {
        candle_core::bail!("{e}");
    }
    let windows_of = |len: usize| {
        let n = stream.windows(len);
        max_windows.map_or(n, |m| n.min(m.max(1)))
    };
    let total: usize = lengths.iter().map(|&l| windows_of(l)).sum();
    let mut done_before = 0;
    let mut runs = Vec::with_capacity(lengths.len());
    for &len in lengths {
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
        let at_len = recipe.map(|r| r.slopes(&base, len, cfg.train_len));
        let run = length_stats(
            model,
            stream,
            len,
            at_len.as_deref().or(slopes),
            max_windows,
            &inner,
        )?;
        done_before += run.windows;
        runs.push(run);
    }
    let head_slopes = (cfg.position == Position::Alibi)
        .then(|| slopes.map_or_else(|| cfg.default_slopes(), <[f64]>::to_vec));
    Ok(report(
        name,
        cfg.position,
        cfg.train_len,
        &runs,
        head_slopes.as_deref(),
    ))
}

/// Builds the report from the runs of each length (ascending). `slopes` (ALiBi models) adds the
/// prior to every head.
pub fn report(
    name: &str,
    position: Position,
    train_len: usize,
    runs: &[LengthStats],
    slopes: Option<&[f64]>,
) -> StatsReport {
    let (n_layers, n_heads) = runs
        .first()
        .map_or((0, 0), |r| (r.attention.n_layers(), r.attention.n_heads()));
    let slope_of = |head: usize| slopes.and_then(|s| s.get(head).copied());
    let mut heads = Vec::with_capacity(n_layers * n_heads);
    let mut distance_profile = Vec::with_capacity(n_layers * n_heads * runs.len());
    for layer in 0..n_layers {
        for head in 0..n_heads {
            let slope = slope_of(head);
            let mut points = Vec::with_capacity(runs.len());
            for run in runs {
                let len = run.length;
                let means = run.attention.head(layer, head).means();
                // The prior of the slope this length ran with (a recipe's changes with the length).
                let slope = run
                    .slopes
                    .as_ref()
                    .and_then(|s| s.get(head).copied())
                    .or(slope);
                let prior = slope.map(|m| prior_means(m, len));
                points.push(HeadPoint {
                    length: len,
                    queries: means.queries,
                    mean_distance: means.mean_distance,
                    entropy: means.entropy,
                    entropy_norm: means.entropy_norm,
                    mass90_distance: means.mass90_distance,
                    sink_mass: means.sink_mass,
                    prior: prior.map(|p| PriorPoint {
                        mean_distance: p.mean_distance,
                        entropy: p.entropy,
                        entropy_norm: p.entropy_norm,
                        mass90_distance: p.mass90_distance,
                        sink_mass: p.sink_mass,
                    }),
                });
                let prior_curve = slope.map(|m| prior_profile(m, len));
                let bins = (0..log_bins(len))
                    .map(|bin| {
                        let (from, to) = log_bin_range(bin);
                        DistanceBin {
                            from,
                            to: to.min(len),
                            attention: means.profile.get(bin).copied().unwrap_or(0.0),
                            prior: prior_curve.as_ref().map(|c| c[bin]),
                        }
                    })
                    .collect();
                distance_profile.push(DistanceProfile {
                    layer,
                    head,
                    length: len,
                    bins,
                });
            }
            heads.push(HeadReport {
                layer,
                head,
                slope,
                points,
            });
        }
    }
    StatsReport {
        model: name.to_string(),
        position: position.name().to_string(),
        train_len,
        lengths: runs.iter().map(|r| r.length).collect(),
        heads,
        distance_profile,
        position_loss: runs.last().map(position_loss).unwrap_or_default(),
    }
}

/// The loss by position of one run's windows, in log-spaced bins of position.
pub fn position_loss(run: &LengthStats) -> Vec<PositionLoss> {
    super::bin_position_stats(&run.positions)
}

/// One head's attention over `ids` (a single window), row-major `len x len`, rows = queries
/// (the masked future is 0). `slopes` overrides the ALiBi slopes.
pub fn attention_map(
    model: &Transformer,
    ids: &[u32],
    layer: usize,
    head: usize,
    slopes: Option<&[f64]>,
) -> candle_core::Result<Vec<f32>> {
    let opts = ForwardOptions {
        slopes: slopes
            .map(|s| slopes_tensor(s, model.device()))
            .transpose()?,
        ..Default::default()
    };
    attention_map_with(model, ids, layer, head, opts)
}

/// [`attention_map`] under any forward options (a recipe's slopes and key mask: masked keys
/// come out as 0).
pub fn attention_map_with(
    model: &Transformer,
    ids: &[u32],
    layer: usize,
    head: usize,
    opts: ForwardOptions,
) -> candle_core::Result<Vec<f32>> {
    let dev = model.device();
    let x = Tensor::from_vec(ids.to_vec(), (1, ids.len()), dev)?;
    let opts = ForwardOptions {
        capture: vec![(layer, head)],
        capture_only: true,
        ..opts
    };
    let out = model.forward_hidden(&x, &opts)?;
    out.captured
        .first()
        .ok_or_else(|| candle_core::Error::Msg("no attention captured".into()))?
        .probs
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}
