//! The needle grid (issue 33): can the model retrieve one fact from anywhere in a long context?
//!
//! A short fact, " The pass key is 48213.", is placed at depth `q` (0 = the start, 1 = just before
//! the question) of `n` tokens of natural filler; the context ends with the question " The pass key
//! is" and the key's own tokens. The score of a case is the key's mean next-token NLL (nats,
//! teacher-forced, as `eval --per-token` gives it) and whether every key token is the model's
//! top-1 prediction ("retrieved"). A cell of the grid (length `n`, depth `q`) averages `samples`
//! cases with different keys and different stretches of filler (fixed seed). The forward is
//! exactly `n` tokens long: the last key token is only predicted.
//!
//! The test follows the pass-key retrieval of Mohtashami & Jaggi (2023, "Landmark Attention") and
//! the depth × length grid of the needle-in-a-haystack harnesses, scored by likelihood so a small
//! model's partial retrieval shows as a lower key NLL before it reaches top-1.

use super::reach::MeanErr;
use crate::model::init::Rng;
use crate::model::transformer::{ForwardOptions, Transformer};
use candle_core::{D, DType, Result, Tensor};

/// The question that ends every context (the fact is the question plus the key and a full stop).
pub const QUESTION: &str = " The pass key is";

/// Depths of the fact, as fractions of the filler before the question.
pub const DEFAULT_DEPTHS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// One key's token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedlePrompt {
    /// The key, as written (five digits).
    pub key: String,
    /// " The pass key is KEY."
    pub fact: Vec<u32>,
    /// " The pass key is"
    pub question: Vec<u32>,
    /// The key's tokens as they follow the question.
    pub key_ids: Vec<u32>,
}

/// The prompts of `samples` keys (five-digit numbers drawn from `seed`), tokenized with `encode`
/// (the model's tokenizer: text to ids). An error when the question's tokens are not a prefix of
/// the question followed by the key (a tokenizer that merges across the space).
pub fn prompts(
    encode: impl Fn(&str) -> std::result::Result<Vec<u32>, String>,
    samples: usize,
    seed: u64,
) -> std::result::Result<Vec<NeedlePrompt>, String> {
    let mut rng = Rng::new(seed ^ 0x4E_EED1E);
    let question = encode(QUESTION)?;
    (0..samples)
        .map(|_| {
            let key = (10_000 + rng.below(90_000)).to_string();
            let asked = encode(&format!("{QUESTION} {key}"))?;
            let key_ids = match asked.strip_prefix(question.as_slice()) {
                Some(k) if !k.is_empty() => k.to_vec(),
                _ => {
                    return Err(format!(
                        "the tokenizer does not keep '{QUESTION}' apart from the key '{key}' (needle test needs the question's tokens as a prefix)"
                    ));
                }
            };
            Ok(NeedlePrompt {
                fact: encode(&format!("{QUESTION} {key}."))?,
                question: question.clone(),
                key_ids,
                key,
            })
        })
        .collect()
}

/// One context: filler with the fact inside, the question and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedleCase {
    /// `length + 1` ids: the forward reads the first `length`, the key ends the sequence.
    pub tokens: Vec<u32>,
    /// Where the fact starts.
    pub fact_start: usize,
    /// Where the key's first token is (after the question).
    pub key_start: usize,
    /// The key's tokens.
    pub key_len: usize,
}

/// The fewest tokens a context must have for `p`: the fact, the question and the key.
pub fn min_length(p: &NeedlePrompt) -> usize {
    p.fact.len() + p.question.len() + p.key_ids.len()
}

/// The cases of one cell: for each prompt, a stretch of `filler` (spread evenly over it, one per
/// prompt) with the fact at `depth` of it, then the question and the key; `length` tokens of
/// forward. `depth` `None` is the control: the same question and key after filler alone (the fact
/// left out), what the key costs a model that retrieves nothing. Errors name what is too short.
pub fn needle_cases(
    filler: &[u32],
    prompts: &[NeedlePrompt],
    length: usize,
    depth: Option<f64>,
) -> std::result::Result<Vec<NeedleCase>, String> {
    if let Some(q) = depth
        && !(0.0..=1.0).contains(&q)
    {
        return Err(format!("depth {q} is outside 0..1"));
    }
    let n = prompts.len();
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let need = min_length(p);
            if length < need {
                return Err(format!(
                    "a needle context of {length} tokens cannot hold the fact, question and key ({need} tokens; hint: use needle lengths of at least {need})"
                ));
            }
            let fact: &[u32] = if depth.is_some() { &p.fact } else { &[] };
            let fill = length + 1 - need + p.fact.len() - fact.len();
            if filler.len() < fill {
                return Err(format!(
                    "the text has {} tokens; a needle context of {length} needs {fill} of filler (hint: use shorter needle lengths or a longer text)",
                    filler.len()
                ));
            }
            let room = filler.len() - fill;
            let start = if n > 1 { room * i / (n - 1) } else { 0 };
            let stretch = &filler[start..start + fill];
            let at = (depth.unwrap_or(0.0) * fill as f64).round() as usize;
            let mut tokens = Vec::with_capacity(length + 1);
            tokens.extend_from_slice(&stretch[..at]);
            let fact_start = tokens.len();
            tokens.extend_from_slice(fact);
            tokens.extend_from_slice(&stretch[at..]);
            tokens.extend_from_slice(&p.question);
            let key_start = tokens.len();
            tokens.extend_from_slice(&p.key_ids);
            debug_assert_eq!(tokens.len(), length + 1);
            Ok(NeedleCase {
                tokens,
                fact_start,
                key_start,
                key_len: p.key_ids.len(),
            })
        })
        .collect()
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NeedlePoint {
    /// Forward length `n`.
    pub length: usize,
    /// Depth of the fact (0 = start of the filler, 1 = just before the question); `None` for the
    /// control without the fact.
    pub depth: Option<f64>,
    /// Cases averaged.
    pub samples: usize,
    /// The key's mean NLL per token (nats), over cases.
    pub key_nll: MeanErr,
    /// Fraction of cases whose every key token was the top-1 prediction.
    pub retrieved: f64,
}

/// Scores `cases` (one cell, all of one length) through `model` with the forward options `base`
/// (slopes replacing the model's, a recipe's key mask; captures are ignored); batched like the
/// copy test.
pub fn needle_test(
    model: &Transformer,
    base: &ForwardOptions,
    cases: &[NeedleCase],
    depth: Option<f64>,
) -> Result<NeedlePoint> {
    let Some(first) = cases.first() else {
        candle_core::bail!("no needle cases");
    };
    let len = first.tokens.len() - 1;
    if cases.iter().any(|c| c.tokens.len() != len + 1) {
        candle_core::bail!("needle cases of different lengths");
    }
    let dev = model.device();
    let mut nlls = Vec::with_capacity(cases.len());
    let mut found = 0usize;
    for batch in cases.chunks(super::reach::cases_per_batch(len)) {
        let b = batch.len();
        let inputs: Vec<u32> = batch
            .iter()
            .flat_map(|c| c.tokens[..len].iter().copied())
            .collect();
        let targets: Vec<u32> = batch
            .iter()
            .flat_map(|c| c.tokens[1..].iter().copied())
            .collect();
        let out = model.forward_hidden(
            &Tensor::from_vec(inputs, (b, len), dev)?,
            &ForwardOptions {
                capture: Vec::new(),
                capture_only: false,
                ..base.clone()
            },
        )?;
        let y = Tensor::from_vec(targets, (b, len), dev)?;
        let nll = model.nll(&out.hidden, &y)?.to_vec2::<f32>()?; // (b, len)
        for (k, c) in batch.iter().enumerate() {
            // Target t is predicted at position t - 1.
            let positions = c.key_start - 1..c.key_start - 1 + c.key_len;
            let mean =
                positions.clone().map(|t| f64::from(nll[k][t])).sum::<f64>() / c.key_len as f64;
            nlls.push(mean);
            let hidden = out.hidden.get(k)?.narrow(0, c.key_start - 1, c.key_len)?;
            let argmax = model
                .logits(&hidden.unsqueeze(0)?)?
                .argmax(D::Minus1)?
                .to_dtype(DType::U32)?
                .squeeze(0)?
                .to_vec1::<u32>()?;
            let key = &c.tokens[c.key_start..c.key_start + c.key_len];
            found += usize::from(argmax.as_slice() == key);
        }
    }
    Ok(NeedlePoint {
        length: len,
        depth,
        samples: cases.len(),
        key_nll: MeanErr::of(&nlls),
        retrieved: found as f64 / cases.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokenizer of characters: each byte is one id.
    #[allow(clippy::unnecessary_wraps)] // the shape `prompts` takes
    fn bytes(s: &str) -> std::result::Result<Vec<u32>, String> {
        Ok(s.bytes().map(u32::from).collect())
    }

    #[test]
    fn the_fact_sits_at_its_depth_and_the_key_ends_the_context() {
        let ps = prompts(bytes, 3, 7).unwrap();
        assert!(ps.iter().all(|p| p.key.len() == 5 && p.key_ids.len() == 6));
        let filler: Vec<u32> = (1000..3000).collect();
        for depth in DEFAULT_DEPTHS {
            let cases = needle_cases(&filler, &ps, 200, Some(depth)).unwrap();
            for (c, p) in cases.iter().zip(&ps) {
                assert_eq!(c.tokens.len(), 201);
                assert_eq!(
                    &c.tokens[c.fact_start..c.fact_start + p.fact.len()],
                    p.fact.as_slice()
                );
                assert_eq!(&c.tokens[c.key_start..], p.key_ids.as_slice());
                let fill = 201 - min_length(p);
                assert_eq!(c.fact_start, (depth * fill as f64).round() as usize);
                // The question sits right before the key.
                let q = &c.tokens[c.key_start - p.question.len()..c.key_start];
                assert_eq!(q, p.question.as_slice());
            }
        }
        // The control: same length, same question and key, no fact anywhere.
        for (c, p) in needle_cases(&filler, &ps, 200, None)
            .unwrap()
            .iter()
            .zip(&ps)
        {
            assert_eq!(c.tokens.len(), 201);
            assert_eq!(&c.tokens[c.key_start..], p.key_ids.as_slice());
            assert!(
                c.tokens[..c.key_start - p.question.len()]
                    .iter()
                    .all(|&t| t >= 1000)
            );
        }
    }

    #[test]
    fn contexts_too_short_or_depths_outside_are_refused() {
        let ps = prompts(bytes, 2, 1).unwrap();
        let filler: Vec<u32> = (0..100).collect();
        assert!(
            needle_cases(&filler, &ps, 20, Some(0.5))
                .unwrap_err()
                .contains("cannot hold")
        );
        assert!(
            needle_cases(&filler, &ps, 500, Some(0.5))
                .unwrap_err()
                .contains("filler")
        );
        assert!(
            needle_cases(&filler, &ps, 60, Some(1.5))
                .unwrap_err()
                .contains("outside 0..1")
        );
    }
}
