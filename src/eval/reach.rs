//! The copy test: can a model use a token that lies `d` tokens back? A span of held-out text is
//! placed, then repeated after a gap of filler text; a model with induction heads (Olsson et al.
//! 2022, "In-context learning and induction heads") predicts the second occurrence far better
//! than the first. The per-head scores follow TransformerLens' head detector (the fraction of a
//! query's attention on the pattern's key), measured on the second occurrence.
//!
//! Layout of one case (`k` = span, `g` = gap, distance `d = k + g`):
//!
//! ```text
//! position  0 .. k-1       k .. k+g-1      k+g .. k+g+k-1
//!           span s_0..s_k-1  filler          span s_0..s_k-1 again
//! ```
//!
//! Scored tokens are `s_1..s_{k-1}` in each occurrence (`s_0` of the second one cannot be
//! predicted by copying). The copy gain is the mean NLL of the first occurrence minus that of the
//! second, per case; its standard error is that of the paired difference over cases.

use crate::model::init::Rng;
use crate::model::transformer::{ForwardOptions, Transformer};
use candle_core::{D, DType, Result, Tensor};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Cases of one forward are batched until a batch holds this many tokens.
const BATCH_TOKENS: usize = 4096;
/// Tokens in the repeated span unless asked otherwise (`reach --span`, `bench --copy-samples`).
pub const DEFAULT_SPAN: usize = 32;
/// Distances run to this many times the training length unless asked otherwise.
pub const DEFAULT_REACH_FACTOR: usize = 16;
/// Fewer tokens than this in a span leave nothing to score.
pub const MIN_SPAN_TOKENS: usize = 2;

/// Where the spans come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// Spans of the held-out text itself.
    #[default]
    Text,
    /// Random token ids (TransformerLens' repeated random tokens), drawn from the ids the text
    /// uses.
    Random,
}

impl std::str::FromStr for SpanKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "random" => Ok(Self::Random),
            _ => Err(format!("unknown span kind '{s}' (expected text or random)")),
        }
    }
}

impl std::fmt::Display for SpanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Random => "random",
        })
    }
}

/// What the copy test measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySpec {
    /// Tokens in the repeated span.
    pub span: usize,
    /// Filler tokens between the two occurrences (0: repeated right after itself).
    pub gap: usize,
    /// Cases (different spans and fillers).
    pub samples: usize,
    /// Seed of the span and filler choice.
    pub seed: u64,
    /// Natural-text or random spans.
    pub kind: SpanKind,
}

impl CopySpec {
    /// Tokens in one case: span, gap, span.
    pub fn case_len(&self) -> usize {
        2 * self.span + self.gap
    }

    /// The distance between a token and its copy (`span + gap`).
    pub fn distance(&self) -> usize {
        self.span + self.gap
    }
}

/// Why cases cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The span is too short to score.
    #[error(
        "a span of {0} tokens leaves nothing to score (hint: use a span of at least {MIN_SPAN_TOKENS})"
    )]
    SpanTooShort(usize),
    /// No case was asked for.
    #[error("no copy cases asked for (hint: use at least 1 sample)")]
    NoSamples,
    /// The text is shorter than one span plus its filler.
    #[error(
        "the text has {have} tokens; a copy case needs {need} (hint: use a longer text or a shorter span or gap)"
    )]
    TextTooShort {
        /// Tokens in the text.
        have: usize,
        /// Tokens one span and its filler take from it.
        need: usize,
    },
}

/// One case: its tokens and where the two occurrences start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCase {
    /// `2 * span + gap` token ids.
    pub tokens: Vec<u32>,
    /// Tokens in the span.
    pub span: usize,
    /// Start of the second occurrence (`span + gap`).
    pub second: usize,
}

/// Builds `spec.samples` cases from `text` (token ids of held-out text). Case `i`'s span starts in
/// the `i`-th of `samples` equal stretches of the text (at a seeded offset inside it), so the
/// spans are spread over the whole text; its filler is the text that follows the span's stretch.
pub fn copy_cases(text: &[u32], spec: &CopySpec) -> std::result::Result<Vec<CopyCase>, CopyError> {
    if spec.span < MIN_SPAN_TOKENS {
        return Err(CopyError::SpanTooShort(spec.span));
    }
    if spec.samples == 0 {
        return Err(CopyError::NoSamples);
    }
    let need = spec.span + spec.gap;
    if text.len() < need {
        return Err(CopyError::TextTooShort {
            have: text.len(),
            need,
        });
    }
    let mut rng = Rng::new(spec.seed ^ 0xC0_4E5C_0DE5);
    let last_start = text.len() - need;
    let stretch = (last_start + 1) as f64 / spec.samples as f64;
    let mut vocab: Vec<u32> = Vec::new();
    if spec.kind == SpanKind::Random {
        vocab = text.to_vec();
        vocab.sort_unstable();
        vocab.dedup();
    }
    Ok((0..spec.samples)
        .map(|i| {
            let lo = (i as f64 * stretch) as usize;
            let hi = (((i + 1) as f64 * stretch) as usize).clamp(lo + 1, last_start + 1);
            let start = lo + rng.below((hi - lo) as u64) as usize;
            let span: Vec<u32> = match spec.kind {
                SpanKind::Text => text[start..start + spec.span].to_vec(),
                SpanKind::Random => (0..spec.span)
                    .map(|_| vocab[rng.below(vocab.len() as u64) as usize])
                    .collect(),
            };
            let filler = &text[start + spec.span..start + need];
            let mut tokens = Vec::with_capacity(spec.case_len());
            tokens.extend_from_slice(&span);
            tokens.extend_from_slice(filler);
            tokens.extend_from_slice(&span);
            CopyCase {
                tokens,
                span: spec.span,
                second: need,
            }
        })
        .collect())
}

/// A mean over cases with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanErr {
    /// The mean.
    pub mean: f64,
    /// Its standard error (0 with one case).
    pub stderr: f64,
}

impl MeanErr {
    /// The mean and standard error of `xs` (NaN for none).
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let stderr = if xs.len() > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt()
        } else {
            0.0
        };
        Self { mean, stderr }
    }
}

/// Per-head pattern scores on the second occurrence: the mean attention probability each head
/// puts on the pattern's key, `(layers * heads)` row-major (TransformerLens' definitions).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeadScores {
    /// Layers.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Query `s_j` (second occurrence) → the key after its earlier occurrence, `s_{j+1}`.
    pub induction: Vec<f64>,
    /// Query `s_j` → its earlier occurrence.
    pub duplicate: Vec<f64>,
    /// Query → the token right before it.
    pub previous: Vec<f64>,
}

impl HeadScores {
    /// The head with the largest induction score: `(layer, head, score)`.
    pub fn best_induction(&self) -> (usize, usize, f64) {
        let (i, s) =
            self.induction
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (i, s)| if s > b.1 { (i, s) } else { b },
                );
        (i / self.n_heads.max(1), i % self.n_heads.max(1), s)
    }
}

/// What the copy test measured over its cases.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CopyResult {
    /// Cases measured.
    pub samples: usize,
    /// Tokens between a token and its copy.
    pub distance: usize,
    /// Mean NLL (nats) of the first occurrence's scored tokens.
    pub first_nll: MeanErr,
    /// Mean NLL (nats) of the second occurrence's scored tokens.
    pub second_nll: MeanErr,
    /// First minus second, per case (nats): the copy gain.
    pub copy_gain: MeanErr,
    /// Fraction of the second occurrence's scored tokens whose argmax is the copied token.
    pub top1_accuracy: f64,
    /// Per-head scores (when asked for).
    pub heads: Option<HeadScores>,
}

/// A copy test's result as the loss log and the progress line show it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopyScore {
    /// Copy gain, nats (first occurrence's mean NLL minus the second's).
    pub gain: f64,
    /// Its standard error over the spans.
    pub gain_stderr: f64,
    /// The largest induction score of any head.
    pub induction: f64,
    /// That head: (layer, head).
    pub induction_head: (usize, usize),
}

impl CopyScore {
    /// The score of a copy test run with head scores.
    pub fn of(c: &CopyResult) -> Self {
        let (layer, head, induction) = c
            .heads
            .as_ref()
            .map_or((0, 0, f64::NAN), HeadScores::best_induction);
        Self {
            gain: c.copy_gain.mean,
            gain_stderr: c.copy_gain.stderr,
            induction,
            induction_head: (layer, head),
        }
    }
}

/// The attention one head puts on each pattern's key, summed over the second occurrence's
/// scored queries: `[induction, duplicate, previous]`. `rows[j]` is the attention row (over
/// keys `0..`) of query `second + j`, for `j` in `0..span - 1`; query `second + j` holds `s_j`, so
/// its earlier occurrence is key `j`, the token after it key `j + 1`, and the token before the
/// query key `second + j - 1`. Divide by the number of rows for TransformerLens' scores.
pub fn pattern_sums(rows: &[Vec<f32>], second: usize) -> [f64; 3] {
    let mut sums = [0f64; 3];
    for (j, row) in rows.iter().enumerate() {
        sums[0] += f64::from(row[j + 1]);
        sums[1] += f64::from(row[j]);
        sums[2] += f64::from(row[second + j - 1]);
    }
    sums
}

/// Cases of `len` tokens one forward of [`copy_test`] takes (the memory a caller checks).
pub fn cases_per_batch(len: usize) -> usize {
    (BATCH_TOKENS / len.max(1)).max(1)
}

/// How [`copy_test`] runs.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Per-head pattern scores too.
    pub heads: bool,
    /// Checked between layers: when set, the test stops with an error.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// The bytes of attention maps one forward may keep (default [`CAPTURE_BYTES`]).
    pub capture_bytes: Option<usize>,
    /// A window or sinks recipe's key mask for every forward (`eval --recipe`'s masks).
    pub key_mask: Option<crate::alibi::recipe::KeyMask>,
}

/// Attention maps of one forward are kept to this many bytes: past it, per-head scores capture
/// one layer at a time (`(len, len)` f32 per head: 64 MiB a head at 4,096 tokens).
const CAPTURE_BYTES: usize = 512 << 20;

/// Runs `cases` through `model` (with `slopes` replacing its own, if given) and measures the
/// copy gain, the top-1 copy accuracy and, with `opts.heads`, every head's pattern scores.
/// Cases are batched up to [`BATCH_TOKENS`] tokens; attention maps for the head scores come
/// from a forward of one case at a time, one layer at a time when all of them would exceed
/// [`CAPTURE_BYTES`].
pub fn copy_test(
    model: &Transformer,
    slopes: Option<&Tensor>,
    cases: &[CopyCase],
    opts: &CopyOptions,
) -> Result<CopyResult> {
    let Some(first) = cases.first() else {
        candle_core::bail!("no copy cases");
    };
    let len = first.tokens.len();
    if cases
        .iter()
        .any(|c| c.tokens.len() != len || c.span < MIN_SPAN_TOKENS || c.second != first.second)
    {
        candle_core::bail!("copy cases of different shapes");
    }
    let cfg = model.config();
    let (n_layers, n_heads) = (cfg.n_layers, cfg.n_heads);
    let forward = |tokens: Tensor, capture: Vec<(usize, usize)>, capture_only: bool| {
        model.forward_hidden(
            &tokens,
            &ForwardOptions {
                slopes: slopes.cloned(),
                key_mask: opts.key_mask,
                capture,
                capture_only,
                interrupt: opts.interrupt.clone(),
                ..Default::default()
            },
        )
    };
    let mut first_nll = Vec::with_capacity(cases.len());
    let mut second_nll = Vec::with_capacity(cases.len());
    let mut gains = Vec::with_capacity(cases.len());
    let (mut hits, mut scored) = (0usize, 0usize);
    let dev = model.device();
    let (second, span) = (first.second, first.span);
    for batch in cases.chunks(cases_per_batch(len)) {
        let b = batch.len();
        let inputs: Vec<u32> = batch
            .iter()
            .flat_map(|c| c.tokens[..len - 1].iter().copied())
            .collect();
        let targets: Vec<u32> = batch
            .iter()
            .flat_map(|c| c.tokens[1..].iter().copied())
            .collect();
        let out = forward(
            Tensor::from_vec(inputs, (b, len - 1), dev)?,
            Vec::new(),
            false,
        )?;
        let y = Tensor::from_vec(targets, (b, len - 1), dev)?;
        let nll = model.nll(&out.hidden, &y)?.to_vec2::<f32>()?; // (b, len - 1)
        for row in &nll {
            // Target index t (token t predicted at position t - 1).
            let mean = |from: usize| {
                (from + 1..from + span)
                    .map(|t| f64::from(row[t - 1]))
                    .sum::<f64>()
                    / (span - 1) as f64
            };
            let (a, s) = (mean(0), mean(second));
            first_nll.push(a);
            second_nll.push(s);
            gains.push(a - s);
        }
        // Top-1 on the second occurrence: predictions at positions second..second+span-2.
        let logits = model.logits(&out.hidden.narrow(1, second, span - 1)?)?; // (b, span-1, vocab)
        let argmax = logits
            .argmax(D::Minus1)?
            .to_dtype(DType::U32)?
            .to_vec2::<u32>()?;
        for (c, row) in batch.iter().zip(&argmax) {
            for (j, &p) in row.iter().enumerate() {
                hits += usize::from(p == c.tokens[second + j + 1]);
                scored += 1;
            }
        }
    }
    let heads = if opts.heads {
        // All layers in one forward when their maps fit, else one layer per forward.
        let all = n_layers * n_heads * (len - 1) * (len - 1) * 4
            <= opts.capture_bytes.unwrap_or(CAPTURE_BYTES);
        let groups: Vec<Vec<usize>> = if all {
            vec![(0..n_layers).collect()]
        } else {
            (0..n_layers).map(|l| vec![l]).collect()
        };
        let mut sums = vec![[0f64; 3]; n_layers * n_heads];
        for c in cases {
            for layers in &groups {
                let capture: Vec<(usize, usize)> = layers
                    .iter()
                    .flat_map(|&l| (0..n_heads).map(move |h| (l, h)))
                    .collect();
                let x = Tensor::from_slice(&c.tokens[..len - 1], (1, len - 1), dev)?;
                let out = forward(x, capture, true)?;
                for cap in &out.captured {
                    let probs = cap.probs.to_dtype(DType::F32)?.squeeze(0)?; // (q, k)
                    let rows = probs.narrow(0, second, span - 1)?.to_vec2::<f32>()?;
                    let got = pattern_sums(&rows, second);
                    let slot = &mut sums[cap.layer * n_heads + cap.head];
                    for (s, g) in slot.iter_mut().zip(got) {
                        *s += g;
                    }
                }
            }
        }
        let q = (cases.len() * (span - 1)) as f64;
        let col = |k: usize| sums.iter().map(|s| s[k] / q).collect();
        Some(HeadScores {
            n_layers,
            n_heads,
            induction: col(0),
            duplicate: col(1),
            previous: col(2),
        })
    } else {
        None
    };
    Ok(CopyResult {
        samples: cases.len(),
        distance: second,
        first_nll: MeanErr::of(&first_nll),
        second_nll: MeanErr::of(&second_nll),
        copy_gain: MeanErr::of(&gains),
        top1_accuracy: hits as f64 / scored.max(1) as f64,
        heads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(span: usize, gap: usize, samples: usize) -> CopySpec {
        CopySpec {
            span,
            gap,
            samples,
            seed: 7,
            kind: SpanKind::Text,
        }
    }

    #[test]
    fn a_case_is_span_filler_span() {
        let text: Vec<u32> = (0..1000).collect();
        let cases = copy_cases(&text, &spec(5, 3, 4)).unwrap();
        assert_eq!(cases.len(), 4);
        for c in &cases {
            assert_eq!(c.tokens.len(), 13);
            assert_eq!(c.second, 8);
            assert_eq!(c.tokens[..5], c.tokens[8..]);
            // The filler is the text right after the span.
            assert_eq!(c.tokens[5], c.tokens[4] + 1);
        }
        // Spread over the text: one span in each quarter.
        for (i, c) in cases.iter().enumerate() {
            let q = c.tokens[0] as usize * 4 / 993;
            assert_eq!(q, i, "case {i} starts at {}", c.tokens[0]);
        }
    }

    #[test]
    fn cases_are_a_function_of_the_seed() {
        let text: Vec<u32> = (0..5000).map(|i| (i * 7919) % 311).collect();
        let a = copy_cases(&text, &spec(30, 0, 20)).unwrap();
        assert_eq!(a, copy_cases(&text, &spec(30, 0, 20)).unwrap());
        let other = CopySpec {
            seed: 8,
            ..spec(30, 0, 20)
        };
        assert_ne!(a, copy_cases(&text, &other).unwrap());
    }

    #[test]
    fn random_spans_use_the_texts_ids() {
        let text: Vec<u32> = (0..400).map(|i| 100 + i % 17).collect();
        let s = CopySpec {
            kind: SpanKind::Random,
            ..spec(20, 10, 3)
        };
        for c in copy_cases(&text, &s).unwrap() {
            assert!(c.tokens.iter().all(|t| (100..117).contains(t)));
            assert_eq!(c.tokens[..20], c.tokens[30..]);
        }
    }

    #[test]
    fn bad_specs_are_refused_by_name() {
        let text: Vec<u32> = (0..50).collect();
        assert_eq!(
            copy_cases(&text, &spec(1, 0, 3)),
            Err(CopyError::SpanTooShort(1))
        );
        assert_eq!(copy_cases(&text, &spec(5, 0, 0)), Err(CopyError::NoSamples));
        assert_eq!(
            copy_cases(&text, &spec(40, 20, 3)),
            Err(CopyError::TextTooShort { have: 50, need: 60 })
        );
    }

    #[test]
    fn mean_and_paired_stderr_by_hand() {
        let m = MeanErr::of(&[1.0, 2.0, 3.0, 6.0]);
        assert_eq!(m.mean, 3.0);
        // sample sd = sqrt(14/3); s.e. = sd / 2
        assert!((m.stderr - (14.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-12);
        assert_eq!(MeanErr::of(&[2.5]).stderr, 0.0);
    }

    /// Attention rows for the second occurrence of a case, every query putting all its mass on
    /// the key `key(j, i)` (query `i = second + j`).
    fn one_hot_rows(
        span: usize,
        second: usize,
        key: impl Fn(usize, usize) -> usize,
    ) -> Vec<Vec<f32>> {
        (0..span - 1)
            .map(|j| {
                let i = second + j;
                let mut row = vec![0f32; i + 1];
                row[key(j, i)] = 1.0;
                row
            })
            .collect()
    }

    #[test]
    fn each_pattern_scores_one_on_itself_and_zero_on_the_others() {
        let (span, second) = (6, 10);
        let q = (span - 1) as f64;
        let score = |rows: &[Vec<f32>]| pattern_sums(rows, second).map(|s| s / q);
        assert_eq!(
            score(&one_hot_rows(span, second, |j, _| j + 1)),
            [1.0, 0.0, 0.0]
        );
        assert_eq!(
            score(&one_hot_rows(span, second, |j, _| j)),
            [0.0, 1.0, 0.0]
        );
        assert_eq!(
            score(&one_hot_rows(span, second, |_, i| i - 1)),
            [0.0, 0.0, 1.0]
        );
        // Attending to itself (or to the first token) avoids all three patterns.
        assert_eq!(
            score(&one_hot_rows(span, second, |_, i| i)),
            [0.0, 0.0, 0.0]
        );
        // Half on the induction key, half on the previous token.
        let mixed: Vec<Vec<f32>> = (0..span - 1)
            .map(|j| {
                let i = second + j;
                let mut row = vec![0f32; i + 1];
                row[j + 1] = 0.5;
                row[i - 1] = 0.5;
                row
            })
            .collect();
        assert_eq!(score(&mixed), [0.5, 0.0, 0.5]);
    }

    proptest::proptest! {
        /// Whatever the span, gap, samples and seed: every case is `span, filler, span`, the
        /// second occurrence starts `distance` tokens after the first, and the span and its
        /// filler are a contiguous stretch of the text.
        #[test]
        fn the_second_occurrence_starts_distance_tokens_after_the_first(
            span in 2usize..40,
            gap in 0usize..80,
            samples in 1usize..12,
            seed in 0u64..1000,
            len in 0usize..300,
        ) {
            let text: Vec<u32> = (0..(span + gap + len) as u32).collect();
            let s = CopySpec { span, gap, samples, seed, kind: SpanKind::Text };
            let cases = copy_cases(&text, &s).unwrap();
            proptest::prop_assert_eq!(cases.len(), samples);
            for c in &cases {
                proptest::prop_assert_eq!(c.tokens.len(), s.case_len());
                proptest::prop_assert_eq!(c.second, s.distance());
                proptest::prop_assert_eq!(&c.tokens[..span], &c.tokens[c.second..]);
                // The text is 0, 1, 2, ...: a contiguous stretch counts up by one.
                let start = c.tokens[0];
                for (k, &t) in c.tokens[..c.second].iter().enumerate() {
                    proptest::prop_assert_eq!(t, start + k as u32);
                }
            }
        }
    }
}
