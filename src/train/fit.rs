//! `slopes fit`: gradient descent on the ALiBi slopes of a frozen model.
//!
//! Only the slopes change: they are parameterised as `m = exp(θ)` (so they stay positive) and θ
//! is the one `Var`; the weights are plain tensors, so no gradient reaches them. The loss is the
//! mean NLL of random windows of the fitting length(s), taken from the text minus a held-out tail,
//! through the differentiable attention (`ForwardOptions { train: true, .. }`; the fused ops
//! record no gradient). Perplexity before and after is measured on the held-out tail, which the
//! fit never sees (Press et al. report that trainable slopes did not extrapolate better; this lets
//! anyone measure it on their own model).

use super::batch_offsets;
use super::optim::{AdamW, AdamWConfig, lr_at};
use crate::eval::ablate::{delta, token_losses};
use crate::eval::{Control, Point, Protocol, evaluate};
use crate::files::OutputFile;
use crate::model::Position;
use crate::model::load::ModelSource;
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use crate::text::{Input, Stream};
use candle_core::{Tensor, Var};
use color_eyre::eyre::{Result, bail, eyre};
use std::io::Write;
use std::path::PathBuf;

/// Slopes below this are lifted to it before taking the logarithm (a zero slope has none).
pub const MIN_FIT_SLOPE: f64 = 1e-6;
/// Windows per step are chosen so a step holds about this many tokens per length.
pub const FIT_BATCH_TOKENS: usize = 2048;
/// The learning rate decays (cosine) to this fraction of its peak.
const MIN_LR_RATIO: f64 = 0.1;

/// What `slopes fit` does, resolved from its arguments.
#[derive(Debug, Clone)]
pub struct FitSettings {
    /// The model (ALiBi).
    pub model: ModelSource,
    /// The text or token ids.
    pub input: Input,
    /// Fitting lengths: the loss is their mean.
    pub lengths: Vec<usize>,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate of Adam on `log m`.
    pub lr: f64,
    /// Fraction of the tokens (the tail) held out for the before/after perplexity.
    pub holdout: f64,
    /// Windows per step and length [default: `FIT_BATCH_TOKENS / L`, at least 1].
    pub batch: Option<usize>,
    /// Seed of the window offsets.
    pub seed: u64,
    /// Use only the first N tokens.
    pub max_tokens: Option<usize>,
    /// The slopes file written.
    pub out: PathBuf,
}

/// Mean NLL of `batch` random windows of `len` from `ids` at `step`, with gradients.
fn step_loss(
    model: &Transformer,
    ids: &[u32],
    len: usize,
    batch: usize,
    seed: u64,
    step: usize,
    slopes: &Tensor,
) -> candle_core::Result<Tensor> {
    let offsets = batch_offsets(seed ^ len as u64, step, batch, ids.len(), len + 1);
    let mut x = Vec::with_capacity(batch * len);
    let mut y = Vec::with_capacity(batch * len);
    for &o in &offsets {
        x.extend_from_slice(&ids[o..o + len]);
        y.extend_from_slice(&ids[o + 1..=o + len]);
    }
    let dev = model.device();
    let x = Tensor::from_vec(x, (batch, len), dev)?;
    let y = Tensor::from_vec(y, (batch, len), dev)?;
    let opts = ForwardOptions {
        slopes: Some(slopes.clone()),
        train: true,
        ..Default::default()
    };
    let out = model.forward_hidden(&x, &opts)?;
    model.nll(&out.hidden, &y)?.mean_all()
}

/// Perplexity of `stream` at `lengths` (non-overlapping windows) with `slopes`.
fn measure(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    slopes: &[f64],
) -> Result<Vec<Point>> {
    let t = slopes_tensor(slopes, model.device())?;
    Ok(evaluate(
        model,
        stream,
        lengths,
        Protocol::NonOverlap,
        Some(&t),
        &Control::default(),
    )?
    .points)
}

/// The outcome of a fit.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Slopes before (the model's own).
    pub before: Vec<f64>,
    /// Slopes after.
    pub after: Vec<f64>,
    /// Fitting loss (mean NLL of the fit part at the fitting lengths, non-overlapping windows)
    /// before and after.
    pub fit_nll: (f64, f64),
    /// Loss of each step.
    pub losses: Vec<f64>,
}

/// Fits the slopes of `model` on `fit` (the tokens the fit may see).
pub fn fit_slopes(
    model: &Transformer,
    fit: &Stream,
    s: &FitSettings,
    mut progress: impl FnMut(usize, f64),
) -> Result<Fit> {
    let cfg = model.config();
    let before = cfg.default_slopes();
    let init: Vec<f64> = before.iter().map(|m| m.max(MIN_FIT_SLOPE).ln()).collect();
    let theta = Var::from_tensor(&slopes_tensor(&init, model.device())?)?;
    let mut opt = AdamW::new(
        vec![("alibi.log_slopes".to_string(), theta.clone())],
        AdamWConfig {
            lr: s.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let mean_fit_nll = |slopes: &[f64]| -> Result<f64> {
        let pts = measure(model, fit, &s.lengths, slopes)?;
        Ok(pts.iter().map(|p| p.nll).sum::<f64>() / pts.len() as f64)
    };
    let nll_before = mean_fit_nll(&before)?;
    let mut losses = Vec::with_capacity(s.steps);
    for step in 0..s.steps {
        if crate::files::stop::should_stop() {
            return Err(crate::files::stop::Stopped {
                left: format!(
                    "no output files were written (fitting stopped at step {step} of {})",
                    s.steps
                ),
            }
            .into());
        }
        let slopes = theta.as_tensor().exp()?;
        let mut total: Option<Tensor> = None;
        for &len in &s.lengths {
            let batch = s.batch.unwrap_or(FIT_BATCH_TOKENS / len).max(1);
            let l = step_loss(model, &fit.ids, len, batch, s.seed, step, &slopes)?;
            total = Some(match total {
                Some(t) => (t + l)?,
                None => l,
            });
        }
        let Some(total) = total else {
            bail!("no fitting lengths");
        };
        let loss = (total / s.lengths.len() as f64)?;
        let v = f64::from(loss.to_scalar::<f32>()?);
        if !v.is_finite() {
            bail!("the fitting loss became {v} at step {step} (hint: lower --lr)");
        }
        let grads = loss.backward()?;
        opt.step(&grads, lr_at(step, s.steps, 0, s.lr, MIN_LR_RATIO), 1.0)?;
        losses.push(v);
        progress(step + 1, v);
    }
    let after: Vec<f64> = theta
        .as_tensor()
        .exp()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    crate::alibi::check_slopes(&after, cfg.n_heads).map_err(|e| eyre!("fitted {e}"))?;
    let nll_after = mean_fit_nll(&after)?;
    Ok(Fit {
        before,
        after,
        fit_nll: (nll_before, nll_after),
        losses,
    })
}

/// Runs `slopes fit`: fit, measure before/after on the held-out tail, write the slopes file.
pub fn run(s: &FitSettings) -> Result<()> {
    if s.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if !(s.lr.is_finite() && s.lr > 0.0) {
        bail!("--lr must be a positive number (got {})", s.lr);
    }
    if !(s.holdout > 0.0 && s.holdout < 1.0) {
        bail!(
            "--holdout must be between 0 and 1, exclusive (got {})",
            s.holdout
        );
    }
    if s.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    let out = Some(s.out.clone());
    crate::eval::command::check_outputs(Some(&s.model), Some(&s.input), None, &[("--out", &out)])?;
    let loaded = s.model.load()?;
    let model = &loaded.model;
    let cfg = model.config();
    if cfg.position != Position::Alibi {
        bail!(
            "slopes fit needs an ALiBi model; '{}' uses {} positions",
            loaded.name,
            cfg.position
        );
    }
    let stream = s.input.read(
        loaded.tokenizer.as_ref(),
        cfg.vocab_size,
        &loaded.name,
        s.max_tokens,
    )?;
    let n = stream.ids.len();
    let held_tokens = (n as f64 * s.holdout).round() as usize;
    let split = n - held_tokens;
    let mut fit = stream.clone();
    fit.truncate(split);
    let held = Stream {
        ids: stream.ids[split..].to_vec(),
        bytes: stream.bytes.as_ref().map(|b| b[split..].to_vec()),
    };
    let largest = s.lengths.last().copied().unwrap_or(1);
    let report_lengths = {
        let mut v = s.lengths.clone();
        v.push(cfg.train_len);
        v.sort_unstable();
        v.dedup();
        v
    };
    let what = |part: &str, have: usize, need: usize| {
        eyre!(
            "the {part} has {} but length {need} needs at least {} (hint: a longer text, a {} --holdout, or shorter lengths)",
            crate::text::count(have, "token"),
            need + 1,
            if part == "held-out part" {
                "larger"
            } else {
                "smaller"
            }
        )
    };
    let held_largest = report_lengths.last().copied().unwrap_or(1);
    // Random windows need a choice of offsets: one token more than a single window.
    if split <= largest + 1 {
        return Err(what("fitting part", split, largest + 1));
    }
    if held.ids.len() <= held_largest {
        return Err(what("held-out part", held.ids.len(), held_largest));
    }
    let batch = s.batch.unwrap_or(FIT_BATCH_TOKENS / largest).max(1);
    let need = crate::model::memory::train_step_bytes(
        batch,
        largest,
        cfg.n_layers,
        cfg.n_heads,
        cfg.d_model,
        cfg.d_ff,
        cfg.vocab_size,
    );
    crate::model::memory::check(
        need,
        &format!("a fitting step at length {largest}"),
        "use shorter --lengths or a smaller --batch",
    )
    .map_err(|e| eyre!(e))?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    let result = fit_slopes(model, &fit, s, |step, loss| {
        let spent = started.elapsed().as_secs_f64();
        let eta = spent / step as f64 * (s.steps - step) as f64;
        if tty {
            eprint!(
                "\r\x1b[Kfit: step {step}/{} loss {loss:.4} · ETA {eta:.0}s",
                s.steps
            );
        } else if step % 10 == 0 || step == s.steps {
            eprintln!("fit: step {step}/{} loss {loss:.4}", s.steps);
        }
    });
    if tty {
        eprint!("\r\x1b[K");
    }
    let f = result?;
    // Before and after on the same held-out tokens: the change's s.e. is the paired one.
    let mut heldout = Vec::with_capacity(report_lengths.len());
    for &len in &report_lengths {
        let losses = |slopes: &[f64]| -> Result<Vec<f32>> {
            let opts = ForwardOptions {
                slopes: Some(slopes_tensor(slopes, model.device())?),
                ..Default::default()
            };
            let batch = (crate::eval::BATCH_TOKENS / len).max(1);
            Ok(token_losses(
                model,
                &held,
                len,
                batch,
                &opts,
                &Control::default(),
            )?)
        };
        let base = losses(&f.before)?;
        heldout.push((
            delta(len, &base, &base),
            delta(len, &base, &losses(&f.after)?),
        ));
    }
    let pts = |after: bool| {
        heldout
            .iter()
            .map(|(b, a)| {
                let d = if after { a } else { b };
                let mut v = serde_json::json!({"length": d.length, "tokens": d.tokens, "ppl": d.ppl, "ppl_stderr": d.ppl_stderr});
                if after {
                    v["delta_ppl"] = d.delta_ppl.into();
                    v["delta_stderr"] = d.delta_stderr.into();
                }
                v
            })
            .collect::<Vec<_>>()
    };
    let doc = serde_json::json!({
        "heads": f.after.len(),
        "preset": "fit",
        "slopes": f.after,
        "model": loaded.name,
        "model_slopes": f.before,
        "input": s.input.path().display().to_string(),
        "fit_tokens": split,
        "heldout_tokens": held.ids.len(),
        "lengths": s.lengths,
        "steps": s.steps,
        "lr": s.lr,
        "fit_nll_before": f.fit_nll.0,
        "fit_nll_after": f.fit_nll.1,
        "heldout_before": pts(false),
        "heldout_after": pts(true),
    });
    let mut file = OutputFile::create(&s.out).map_err(|e| eyre!(e))?;
    serde_json::to_writer_pretty(file.writer(), &doc)?;
    writeln!(file.writer())?;
    file.commit().map_err(|e| eyre!(e))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "model {} · fitted {} steps on {} at lengths {:?} · held out {} · {:.0} s",
        loaded.name,
        s.steps,
        crate::text::count(split, "token"),
        s.lengths,
        crate::text::count(held.ids.len(), "token"),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "fitting loss (nll, fit part): {:.4} -> {:.4}",
        f.fit_nll.0, f.fit_nll.1
    )?;
    writeln!(
        out,
        "{:>8}  {:>20}  {:>20}  {:>18}  (held-out perplexity; change ± paired s.e.)",
        "length", "before", "after", "change"
    )?;
    for (b, a) in &heldout {
        let mark = if b.length == cfg.train_len {
            "  ← train_len"
        } else {
            ""
        };
        writeln!(
            out,
            "{:>8}  {:>20}  {:>20}  {:>18}{mark}",
            b.length,
            format!("{:.3} ± {:.3}", b.ppl, b.ppl_stderr),
            format!("{:.3} ± {:.3}", a.ppl, a.ppl_stderr),
            format!("{:+.3} ± {:.3}", a.delta_ppl, a.delta_stderr)
        )?;
    }
    writeln!(
        out,
        "{:>5}  {:>12}  {:>12}",
        "head", "slope before", "after"
    )?;
    for (h, (b, a)) in f.before.iter().zip(&f.after).enumerate() {
        writeln!(out, "{h:>5}  {b:>12.6}  {a:>12.6}")?;
    }
    writeln!(out, "wrote {}", s.out.display())?;
    Ok(())
}
