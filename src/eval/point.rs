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
