//! KL divergence of a modified model's next-token distributions from the original's, computed on
//! the fly per length (no logits file): the statistics llama.cpp's `--kl-divergence` reports.
//!
//! For every scored position with original distribution P and modified Q over the vocabulary:
//! `KL(P || Q) = sum_v P(v) (log P(v) - log Q(v))` in nats; the top-1 agreement is whether both
//! pick the same most likely token; `delta_p = Q(target) - P(target)` is the change in the
//! probability of the correct token.

use super::recipe::Modification;
use super::{CANCELLED, Control, Protocol, first_scored, starts_for};
use crate::model::transformer::{ForwardOptions, Transformer};
use crate::text::Stream;
use candle_core::{Result, Tensor};
use std::sync::atomic::Ordering;

/// Positions of one window whose logits are computed at once (bounds the `(positions, vocab)`
/// logits: 128 x 250,680 x 4 bytes = 128 MB for BLOOM).
pub const KL_CHUNK_POSITIONS: usize = 128;

pub use super::point::KlStats;

/// Per-token comparisons, summarised by [`KlAccumulator::stats`].
#[derive(Debug, Clone, Default)]
pub struct KlAccumulator {
    kl: Vec<f64>,
    agree: usize,
    delta_p: f64,
}

/// `log sum exp` of a row.
fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let sum: f64 = row.iter().map(|&x| f64::from(x - max).exp()).sum();
    f64::from(max) + sum.ln()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

impl KlAccumulator {
    /// Adds one position: the original's logits `p`, the modified model's `q`, the target id.
    pub fn add(&mut self, p: &[f32], q: &[f32], target: usize) {
        let (lp, lq) = (log_sum_exp(p), log_sum_exp(q));
        let mut kl = 0.0;
        for (&a, &b) in p.iter().zip(q) {
            let logp = f64::from(a) - lp;
            let pv = logp.exp();
            if pv > 0.0 {
                kl += pv * (logp - (f64::from(b) - lq));
            }
        }
        self.kl.push(kl.max(0.0));
        if argmax(p) == argmax(q) {
            self.agree += 1;
        }
        let pt = (f64::from(p[target]) - lp).exp();
        let qt = (f64::from(q[target]) - lq).exp();
        self.delta_p += qt - pt;
    }

    /// The summary (zeros when nothing was added).
    pub fn stats(&self) -> KlStats {
        let n = self.kl.len();
        let nf = n.max(1) as f64;
        let mean = self.kl.iter().sum::<f64>() / nf;
        let var = if n > 1 {
            self.kl.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0)
        } else {
            0.0
        };
        let mut sorted = self.kl.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = if n == 0 {
            0.0
        } else {
            sorted[((0.99 * (n - 1) as f64).round() as usize).min(n - 1)]
        };
        KlStats {
            mean,
            stderr: (var / nf).sqrt(),
            p99,
            top1_agreement: if n == 0 { 1.0 } else { self.agree as f64 / nf },
            delta_p: self.delta_p / nf,
            tokens: n,
        }
    }
}

/// Compares windows of `len` at `starts`: original forward options `a`, modified `b`, scoring
/// positions from [`first_scored`] on, into `acc`.
#[allow(clippy::too_many_arguments)]
fn compare_windows(
    model: &Transformer,
    stream: &Stream,
    starts: &[usize],
    len: usize,
    a: &ForwardOptions,
    b: &ForwardOptions,
    ctl: &Control,
    acc: &mut KlAccumulator,
) -> Result<()> {
    let first = |s: usize| first_scored(starts, s, len);
    kl_windows_from(
        (model, a),
        (model, b),
        stream,
        starts,
        len,
        &first,
        ctl,
        acc,
    )
}

/// Compares two models (or one model under two sets of options) on windows of `len` at
/// `starts`, every position of each window scored: `original` gives P, `modified` gives Q. Both
/// models must read the same token ids (the caller checks the tokenizers agree) and share the
/// vocabulary size. Used by the TUI's KL curves.
pub fn kl_windows(
    original: (&Transformer, &ForwardOptions),
    modified: (&Transformer, &ForwardOptions),
    stream: &Stream,
    starts: &[usize],
    len: usize,
    ctl: &Control,
    acc: &mut KlAccumulator,
) -> Result<()> {
    kl_windows_from(original, modified, stream, starts, len, &|_| 0, ctl, acc)
}

/// [`kl_windows`] scoring each window from position `first(start)` on.
#[allow(clippy::too_many_arguments)]
fn kl_windows_from(
    original: (&Transformer, &ForwardOptions),
    modified: (&Transformer, &ForwardOptions),
    stream: &Stream,
    starts: &[usize],
    len: usize,
    first: &dyn Fn(usize) -> usize,
    ctl: &Control,
    acc: &mut KlAccumulator,
) -> Result<()> {
    let (pm, a) = original;
    let (qm, b) = modified;
    let batch = ctl.batch.unwrap_or(super::BATCH_TOKENS / len.max(1)).max(1);
    let with = |o: &ForwardOptions| ForwardOptions {
        interrupt: ctl.interrupt.clone().or_else(|| o.interrupt.clone()),
        ..o.clone()
    };
    let (a, b) = (with(a), with(b));
    for chunk in starts.chunks(batch) {
        if ctl.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            candle_core::bail!("{CANCELLED}");
        }
        let mut x = Vec::with_capacity(chunk.len() * len);
        for &s in chunk {
            x.extend_from_slice(&stream.ids[s..s + len]);
        }
        let hp = pm
            .forward_hidden(
                &Tensor::from_vec(x.clone(), (chunk.len(), len), pm.device())?,
                &a,
            )?
            .hidden;
        let hq = qm
            .forward_hidden(&Tensor::from_vec(x, (chunk.len(), len), qm.device())?, &b)?
            .hidden;
        for (w, &s) in chunk.iter().enumerate() {
            let mut p0 = first(s);
            while p0 < len {
                let n = KL_CHUNK_POSITIONS.min(len - p0);
                let lp = pm
                    .logits(&hp.narrow(0, w, 1)?.narrow(1, p0, n)?)?
                    .squeeze(0)?
                    .to_vec2::<f32>()?;
                let lq = qm
                    .logits(&hq.narrow(0, w, 1)?.narrow(1, p0, n)?)?
                    .squeeze(0)?
                    .to_vec2::<f32>()?;
                for (k, (rp, rq)) in lp.iter().zip(&lq).enumerate() {
                    if rp.len() != rq.len() {
                        candle_core::bail!(
                            "the models' vocabularies differ ({} vs {} tokens): no KL divergence",
                            rp.len(),
                            rq.len()
                        );
                    }
                    let target = stream.ids[s + p0 + k + 1] as usize;
                    acc.add(rp, rq, target.min(rp.len().saturating_sub(1)));
                }
                p0 += n;
            }
        }
    }
    Ok(())
}

/// The KL statistics of the modified model against the original, per length, over the windows
/// `protocol` lays (a sweep compares non-overlapping windows of each length).
pub fn kl_by_length(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    protocol: Protocol,
    m: &Modification,
    ctl: &Control,
) -> Result<Vec<KlStats>> {
    let protocol = match protocol {
        Protocol::Sweep => Protocol::NonOverlap,
        p => p,
    };
    let original = ForwardOptions::default();
    let mut out = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let starts = starts_for(stream, len, protocol);
        let modified = m.options_at(model, len)?;
        let mut acc = KlAccumulator::default();
        compare_windows(
            model, stream, &starts, len, &original, &modified, ctl, &mut acc,
        )?;
        out.push(acc.stats());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_give_zero() {
        let mut acc = KlAccumulator::default();
        acc.add(&[1.0, 2.0, 0.5], &[1.0, 2.0, 0.5], 1);
        let s = acc.stats();
        assert!(s.mean.abs() < 1e-12 && s.top1_agreement == 1.0 && s.delta_p.abs() < 1e-12);
    }

    #[test]
    fn kl_by_hand() {
        // P = (1/2, 1/2), Q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3).
        let mut acc = KlAccumulator::default();
        let q = [0.25f32.ln(), 0.75f32.ln()];
        acc.add(&[0.0, 0.0], &q, 0);
        let s = acc.stats();
        let want = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((s.mean - want).abs() < 1e-6, "{} vs {want}", s.mean);
        assert!((s.delta_p - (0.25 - 0.5)).abs() < 1e-6);
        // Argmax of P is 0 (ties keep the first), of Q is 1.
        assert_eq!(s.top1_agreement, 0.0);
    }

    #[test]
    fn p99_and_stderr() {
        let acc = KlAccumulator {
            kl: (0..100).map(f64::from).collect(),
            ..Default::default()
        };
        let s = acc.stats();
        assert_eq!(s.p99, 98.0);
        assert!((s.mean - 49.5).abs() < 1e-12);
        assert!(s.stderr > 2.8 && s.stderr < 2.95, "{}", s.stderr);
    }
}
