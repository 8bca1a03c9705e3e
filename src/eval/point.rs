//! A point of a perplexity curve and the running sums behind it.

/// Summary statistics of a set of per-token losses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Input length `L`.
    pub length: usize,
    /// Tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood, nats per token.
    pub nll: f64,
    /// Token perplexity `exp(nll)`.
    pub ppl: f64,
    /// Standard error of the perplexity (delta method: `ppl * sd(nll)/sqrt(tokens)`).
    pub ppl_stderr: f64,
    /// Bits per UTF-8 byte of the scored text, when the text is known.
    pub bits_per_byte: Option<f64>,
    /// Targets of the stream (every token after the first) not scored at this length: the tail
    /// shorter than one window under `nonoverlap`, also the window positions past `length` under
    /// `sweep`; always 0 under `sliding`, which scores every target once. Set by [`evaluate`];
    /// `None` where only windows are known (the TUI's running curves).
    pub unscored: Option<usize>,
}

/// Running sums for a [`Point`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    n: usize,
    sum: f64,
    sum_sq: f64,
    bytes: u64,
    has_bytes: bool,
}

impl Stats {
    /// Adds one token's loss and its byte count.
    pub fn add(&mut self, nll: f32, bytes: Option<u32>) {
        let x = f64::from(nll);
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
        if let Some(b) = bytes {
            self.bytes += u64::from(b);
            self.has_bytes = true;
        }
    }

    /// The mean loss (0 when empty).
    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    /// Tokens added.
    pub fn count(&self) -> usize {
        self.n
    }

    /// The standard error of the mean loss, `sd / sqrt(n)` (0 below two tokens).
    pub fn stderr(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        let var = ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
        (var / n).sqrt()
    }

    /// Adds another set of sums to this one.
    pub fn merge(&mut self, other: &Self) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.bytes += other.bytes;
        self.has_bytes |= other.has_bytes;
    }

    /// The summary for length `length`.
    pub fn point(&self, length: usize) -> Point {
        let n = self.n.max(1) as f64;
        let mean = self.sum / n;
        let var = if self.n > 1 {
            ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
        } else {
            0.0
        };
        let ppl = mean.exp();
        Point {
            length,
            tokens: self.n,
            nll: mean,
            ppl,
            ppl_stderr: ppl * (var / n).sqrt(),
            unscored: None,
            bits_per_byte: (self.has_bytes && self.bytes > 0)
                .then(|| self.sum / std::f64::consts::LN_2 / self.bytes as f64),
        }
    }
}

/// The KL divergence of a modified model from the original at one length (see `eval::kl`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct KlStats {
    /// Mean KL divergence, nats per token.
    pub mean: f64,
    /// Its standard error (`sd / sqrt(tokens)`).
    pub stderr: f64,
    /// 99th percentile of the per-token KL divergence.
    pub p99: f64,
    /// Share of positions where both models pick the same most likely token.
    pub top1_agreement: f64,
    /// Mean change in the probability of the correct token (modified minus original).
    pub delta_p: f64,
    /// Tokens compared.
    pub tokens: usize,
}

/// A loss-by-position bin resting on fewer tokens than this is marked (`few_tokens`): its mean is
/// noise a reader could take for a finding.
pub const POSITION_MIN_TOKENS: usize = 100;

/// The mean loss at positions `[from, to)` of the window.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PositionLoss {
    /// First position (0 = predicted from one token of context).
    pub from: usize,
    /// One past the last position.
    pub to: usize,
    /// Tokens scored in the bin.
    pub tokens: usize,
    /// Mean NLL, nats per token.
    pub nll: f64,
    /// Standard error of `nll` (`sd / sqrt(tokens)`).
    #[serde(default)]
    pub stderr: f64,
    /// Whether the bin rests on fewer than [`POSITION_MIN_TOKENS`] tokens.
    #[serde(default)]
    pub few_tokens: bool,
}

/// Log-bins per-position loss sums (`[p]` = every loss scored at window position `p`, from
/// however many windows and passes) into [`PositionLoss`] bins: each bin is the mean over all its
/// tokens, with its standard error; bins without tokens are left out.
pub fn bin_position_stats(positions: &[Stats]) -> Vec<PositionLoss> {
    use crate::alibi::prior::{log_bin, log_bin_range, log_bins};
    let len = positions.len();
    let mut bins = vec![Stats::default(); log_bins(len)];
    for (p, s) in positions.iter().enumerate() {
        bins[log_bin(p)].merge(s);
    }
    bins.iter()
        .enumerate()
        .filter(|(_, s)| s.count() > 0)
        .map(|(bin, s)| {
            let (from, to) = log_bin_range(bin);
            PositionLoss {
                from,
                to: to.min(len),
                tokens: s.count(),
                nll: s.mean(),
                stderr: s.stderr(),
                few_tokens: s.count() < POSITION_MIN_TOKENS,
            }
        })
        .collect()
}

/// The bins to draw as "thin": those on fewer than [`POSITION_MIN_TOKENS`] tokens and their
/// neighbours (so the thin stretch joins the solid line); empty when no bin is thin.
pub fn thin_stretch(bins: &[PositionLoss]) -> Vec<&PositionLoss> {
    if !bins.iter().any(|b| b.few_tokens) {
        return Vec::new();
    }
    bins.iter()
        .enumerate()
        .filter(|(k, b)| {
            b.few_tokens
                || bins.get(k + 1).is_some_and(|n| n.few_tokens)
                || (*k > 0 && bins[k - 1].few_tokens)
        })
        .map(|(_, b)| b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_pool_tokens_and_mark_thin_ones() {
        // Positions 0..8: bins [0,1) [1,2) [2,4) [4,8). Position 0 has 200 tokens of loss 1 and 3
        // alternately; the others 10 tokens of 2.
        let mut positions = vec![Stats::default(); 8];
        for i in 0..200 {
            positions[0].add(if i % 2 == 0 { 1.0 } else { 3.0 }, None);
        }
        for s in &mut positions[1..] {
            for _ in 0..10 {
                s.add(2.0, None);
            }
        }
        let b = bin_position_stats(&positions);
        assert_eq!(b.len(), 4);
        assert_eq!((b[0].tokens, b[0].nll, b[0].few_tokens), (200, 2.0, false));
        // sd of {1, 3} x 100 each = sqrt(200/199); s.e. = that / sqrt(200).
        let want = (200.0f64 / 199.0).sqrt() / 200f64.sqrt();
        assert!((b[0].stderr - want).abs() < 1e-12);
        assert_eq!((b[3].from, b[3].to, b[3].tokens), (4, 8, 40));
        assert!(b[3].few_tokens && b[3].stderr == 0.0);
    }
}
