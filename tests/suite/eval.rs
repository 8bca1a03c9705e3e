//! Perplexity engine tests: protocol identities, the uniform-logits case, batch independence,
//! the sweep's exactness at shorter lengths, byte accounting.

#![allow(clippy::unwrap_used)]

use alibi_explorer::eval::{Control, Protocol, evaluate, parse_lengths, starts_for, window_losses};
use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::{init_params, random_model};
use alibi_explorer::text::Stream;
use candle_core::{DType, Device, Tensor};

fn stream(n: usize, vocab: u32) -> Stream {
    Stream {
        ids: (0..n as u32).map(|i| (i * 31 + i / 7) % vocab).collect(),
        bytes: Some((0..n as u32).map(|i| 1 + i % 3).collect()),
    }
}

fn model(position: Position) -> alibi_explorer::model::Transformer {
    random_model(
        &Config::ours(41, 16, 2, 4, 32, position, 8),
        11,
        &Device::Cpu,
    )
    .unwrap()
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{a} vs {b}");
}

#[test]
fn lengths_spec() {
    assert_eq!(parse_lengths("64..512").unwrap(), vec![64, 128, 256, 512]);
    assert_eq!(parse_lengths("256, 64,128,64").unwrap(), vec![64, 128, 256]);
    assert!(parse_lengths("0,4").unwrap_err().contains("at least 1"));
    assert!(parse_lengths("8..4").is_err());
    assert!(parse_lengths("a,b").is_err());
}

#[test]
fn uniform_logits_give_perplexity_equal_to_vocab_size() {
    let cfg = Config::ours(37, 16, 1, 2, 32, Position::Alibi, 8);
    let params = init_params(&cfg, 1, &Device::Cpu).unwrap();
    let zeros = params
        .into_iter()
        .map(|(k, t)| (k, t.zeros_like().unwrap()))
        .collect();
    let m = alibi_explorer::model::Transformer::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(zeros, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let s = stream(100, 37);
    for protocol in [
        Protocol::NonOverlap,
        Protocol::Sweep,
        Protocol::Sliding { stride: 3 },
    ] {
        let e = evaluate(&m, &s, &[4, 8, 16], protocol, None, &Control::default()).unwrap();
        for p in &e.points {
            close(p.ppl, 37.0, 1e-5);
            assert!(p.ppl_stderr < 1e-3);
        }
    }
}

#[test]
fn sweep_at_lmax_equals_nonoverlap_and_sliding_with_full_stride_equals_nonoverlap() {
    for position in Position::ALL {
        let m = model(position);
        let s = stream(203, 41);
        let non = evaluate(
            &m,
            &s,
            &[5, 12, 32],
            Protocol::NonOverlap,
            None,
            &Control::default(),
        )
        .unwrap();
        let sweep = evaluate(&m, &s, &[32], Protocol::Sweep, None, &Control::default()).unwrap();
        assert_eq!(sweep.points[0].tokens, non.points[2].tokens);
        close(sweep.points[0].nll, non.points[2].nll, 1e-6);
        close(
            sweep.points[0].bits_per_byte.unwrap(),
            non.points[2].bits_per_byte.unwrap(),
            1e-6,
        );
        // Sliding with stride L is nonoverlap where no tail is left (481 = 480 targets + 1; 480 is a
        // multiple of 5, 12 and 32); with a tail it scores the tail too.
        let s = stream(481, 41);
        let non = evaluate(
            &m,
            &s,
            &[5, 12, 32],
            Protocol::NonOverlap,
            None,
            &Control::default(),
        )
        .unwrap();
        for (i, len) in [5usize, 12, 32].into_iter().enumerate() {
            assert_eq!(non.points[i].unscored, Some(0));
            let sl = evaluate(
                &m,
                &s,
                &[len],
                Protocol::Sliding { stride: len },
                None,
                &Control::default(),
            )
            .unwrap();
            assert_eq!(sl.points[0].tokens, non.points[i].tokens);
            close(sl.points[0].nll, non.points[i].nll, 1e-6);
        }
    }
}

#[test]
fn sweep_is_exact_at_shorter_lengths() {
    let m = model(Position::Alibi);
    let s = stream(161, 41);
    let sweep = evaluate(
        &m,
        &s,
        &[4, 10, 32],
        Protocol::Sweep,
        None,
        &Control::default(),
    )
    .unwrap();
    // Length 10 from the sweep: windows of 10 starting where the 32-windows start.
    let starts: Vec<usize> = (0..s.windows(32)).map(|w| w * 32).collect();
    let mut total = 0.0;
    let mut n = 0;
    window_losses(&m, &s, &starts, 10, None, &Control::default(), |_, nll| {
        total += nll.iter().map(|&x| f64::from(x)).sum::<f64>();
        n += nll.len();
    })
    .unwrap();
    assert_eq!(sweep.points[1].tokens, n);
    close(sweep.points[1].nll, total / n as f64, 1e-5);
    assert_eq!(sweep.position_nll.len(), 32);
    assert_eq!(sweep.per_token.len(), 5 * 32);
}

#[test]
fn results_do_not_depend_on_batch_size() {
    let m = model(Position::Rotary);
    let s = stream(300, 41);
    let base = evaluate(
        &m,
        &s,
        &[8, 16, 64],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    for batch in [1, 3, 7] {
        let ctl = Control {
            batch: Some(batch),
            ..Default::default()
        };
        for protocol in [Protocol::NonOverlap, Protocol::Sweep] {
            let e = evaluate(&m, &s, &[8, 16, 64], protocol, None, &ctl).unwrap();
            if protocol == Protocol::NonOverlap {
                for (a, b) in e.points.iter().zip(&base.points) {
                    close(a.nll, b.nll, 1e-5);
                }
            } else {
                close(e.points[2].nll, base.points[2].nll, 1e-5);
            }
        }
    }
}

#[test]
fn sliding_scores_every_token_once_after_the_first_window() {
    let m = model(Position::None);
    let s = stream(50, 41);
    let e = evaluate(
        &m,
        &s,
        &[8],
        Protocol::Sliding { stride: 3 },
        None,
        &Control::default(),
    )
    .unwrap();
    let starts = starts_for(&s, 8, Protocol::Sliding { stride: 3 });
    // Every target (tokens 1..=49) is scored once, the tail by a last window ending at token 49.
    assert_eq!(e.points[0].tokens, 49);
    assert_eq!(e.points[0].unscored, Some(0));
    assert_eq!(*starts.last().unwrap(), 49 - 8);
    // The scored targets are contiguous: positions 1..=last without gaps or repeats.
    let mut targets: Vec<usize> = e
        .per_token
        .iter()
        .map(|t| starts[t.window] + t.position + 1)
        .collect();
    let n = targets.len();
    targets.dedup();
    assert_eq!(targets.len(), n);
    assert_eq!(targets, (1..=n).collect::<Vec<_>>());
}

#[test]
fn every_protocol_reports_its_unscored_targets() {
    // The case: 20 ids, length 8, stride 4.
    let m = model(Position::Alibi);
    let s = stream(20, 41);
    let sliding = Protocol::Sliding { stride: 4 };
    let e = evaluate(&m, &s, &[8], sliding, None, &Control::default()).unwrap();
    assert_eq!((e.points[0].tokens, e.points[0].unscored), (19, Some(0)));
    // The tail window's scores are the scores of those targets with a full window of context.
    let tail = window_losses_at(&m, &s, 11, 8);
    let last: Vec<f32> = e.per_token.iter().rev().take(3).map(|t| t.nll).collect();
    for (a, b) in last.iter().rev().zip(&tail[5..]) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let e = evaluate(
        &m,
        &s,
        &[8],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    assert_eq!((e.points[0].tokens, e.points[0].unscored), (16, Some(3)));
    let e = evaluate(&m, &s, &[4, 8], Protocol::Sweep, None, &Control::default()).unwrap();
    assert_eq!(e.points[0].unscored, Some(19 - 8));
    assert_eq!(e.points[1].unscored, Some(3));
}

/// Per-position losses of one window of `len` at `start`.
fn window_losses_at(
    m: &alibi_explorer::model::Transformer,
    s: &Stream,
    start: usize,
    len: usize,
) -> Vec<f32> {
    let mut out = Vec::new();
    window_losses(m, s, &[start], len, None, &Control::default(), |_, nll| {
        out.clone_from(&nll);
    })
    .unwrap();
    out
}

#[test]
fn slope_override_changes_alibi_results() {
    let m = model(Position::Alibi);
    let s = stream(100, 41);
    let zero = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let a = evaluate(
        &m,
        &s,
        &[32],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    let b = evaluate(
        &m,
        &s,
        &[32],
        Protocol::NonOverlap,
        Some(&zero),
        &Control::default(),
    )
    .unwrap();
    assert!((a.points[0].nll - b.points[0].nll).abs() > 1e-6);
}

#[test]
fn lengths_that_do_not_fit_are_errors() {
    let m = model(Position::Alibi);
    let s = stream(20, 41);
    let err = evaluate(
        &m,
        &s,
        &[8, 32],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("20 tokens") && err.contains("33"), "{err}");
    // A model with a hard input limit refuses longer lengths.
    let mut cfg = Config::ours(41, 16, 2, 4, 32, Position::Alibi, 8);
    cfg.max_len = Some(16);
    let limited = random_model(&cfg, 1, &Device::Cpu).unwrap();
    let long = stream(100, 41);
    let err = evaluate(
        &limited,
        &long,
        &[8, 32],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("limit of 16"), "{err}");
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let ctl = Control {
        cancel: Some(&cancel),
        ..Default::default()
    };
    assert!(evaluate(&m, &s, &[8], Protocol::NonOverlap, None, &ctl).is_err());
}

#[test]
fn byte_counts_cover_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Héllo wörld — ünïcode text. ".repeat(20);
    std::fs::write(dir.path().join("t.txt"), &text).unwrap();
    let tok = alibi_explorer::train::tokenizer::train_tokenizer(
        dir.path(),
        280,
        &dir.path().join("tok.json"),
    )
    .unwrap();
    let s = alibi_explorer::text::tokenize(&tok, &text).unwrap();
    let total: u32 = s.bytes.as_ref().unwrap().iter().sum();
    assert_eq!(total as usize, text.len());
}

/// Texts whose characters a byte-level BPE splits into several tokens.
const MULTIBYTE_TEXTS: &[&str] = &[
    "😀",
    "😀😀 🎉",
    "日本語のテキスト",
    "中文，标点。",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "e\u{301}a\u{308} combining marks",
    "mixed 😀 text, with ASCII and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and ñ.",
    "  leading spaces\r\nand CRLF\ttabs  ",
    "\u{feff}BOM then text",
];

#[test]
fn byte_level_tokens_of_split_characters_count_their_own_bytes() {
    // The shipped byte-level tokenizer: every token's string has one character per byte, an
    // independent measure of the bytes each token covers.
    let tok = alibi_explorer::model::folder::load_tokenizer(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/models/alibi/tokenizer.json"
    )))
    .unwrap();
    for text in MULTIBYTE_TEXTS {
        let s = alibi_explorer::text::tokenize(&tok, text).unwrap();
        let bytes = s.bytes.as_ref().unwrap();
        assert_eq!(
            bytes.iter().map(|&b| b as usize).sum::<usize>(),
            text.len(),
            "{text:?}"
        );
        for (k, &id) in s.ids.iter().enumerate() {
            let t = tok.id_to_token(id).unwrap();
            assert_eq!(
                bytes[k] as usize,
                t.chars().count(),
                "{text:?} token {k} {t:?}"
            );
        }
    }
    // The case: one emoji, 4 tokens of 1 byte each.
    let s = alibi_explorer::text::tokenize(&tok, "😀").unwrap();
    assert_eq!(s.bytes.unwrap(), [1, 1, 1, 1]);
}

#[test]
fn bits_per_byte_of_an_emoji_scores_one_byte_per_token() {
    // 3 scored byte tokens of 1 byte each: bits/byte = mean nll / ln 2.
    let tok = alibi_explorer::model::folder::load_tokenizer(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/models/alibi/tokenizer.json"
    )))
    .unwrap();
    let s = alibi_explorer::text::tokenize(&tok, "😀").unwrap();
    let m = model(Position::Alibi);
    let s = Stream {
        ids: s.ids.iter().map(|&i| i % 41).collect(),
        bytes: s.bytes,
    };
    let e = evaluate(
        &m,
        &s,
        &[3],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    let p = &e.points[0];
    close(
        p.bits_per_byte.unwrap(),
        p.nll / std::f64::consts::LN_2,
        1e-9,
    );
    let e = evaluate(&m, &s, &[1, 3], Protocol::Sweep, None, &Control::default()).unwrap();
    let p1 = &e.points[0];
    close(
        p1.bits_per_byte.unwrap(),
        p1.nll / std::f64::consts::LN_2,
        1e-9,
    );
}

#[test]
fn refinement_windows_make_short_lengths_exactly_nonoverlap() {
    use alibi_explorer::eval::SweepAccumulator;
    let m = model(Position::Alibi);
    let s = stream(161, 41);
    let mut acc = SweepAccumulator::new(32);
    let add = |acc: &mut SweepAccumulator, len: usize| {
        let starts: Vec<usize> = (0..s.windows(len)).map(|w| w * len).collect();
        window_losses(
            &m,
            &s,
            &starts,
            len,
            None,
            &Control::default(),
            |start, nll| {
                acc.add(&s, start, &nll);
            },
        )
        .unwrap();
    };
    add(&mut acc, 32);
    let coarse = acc.points(&[8, 16, 32]);
    assert_eq!(coarse[0].tokens, 5 * 8, "lmax windows only: 5 windows");
    // Refine with windows of 16 and 8 (the TUI's levels below lmax), in that order.
    add(&mut acc, 16);
    add(&mut acc, 8);
    assert_eq!(acc.windows(), 5 + 10 + 20);
    assert_eq!(acc.windows_of(16), 10);
    let fine = acc.points(&[4, 8, 12, 16, 32]);
    let non = evaluate(
        &m,
        &s,
        &[8, 16, 32],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    // Lengths with a level of their own are exactly the non-overlapping protocol.
    for (f, n) in [
        (&fine[1], &non.points[0]),
        (&fine[3], &non.points[1]),
        (&fine[4], &non.points[2]),
    ] {
        assert_eq!(f.tokens, n.tokens, "length {}", f.length);
        close(f.nll, n.nll, 1e-5);
        close(f.bits_per_byte.unwrap(), n.bits_per_byte.unwrap(), 1e-5);
    }
    // Length 12 takes the first 12 positions of each 16-window (the level with most windows >= 12).
    assert_eq!(fine[2].tokens, 10 * 12);
    // Length 4 takes the 8-windows: 20 of them.
    assert_eq!(fine[0].tokens, 20 * 4);
    // point() agrees with points(), and the loss-by-position curve stays the lmax windows'.
    assert_eq!(acc.point(12).tokens, fine[2].tokens);
    close(acc.point(12).nll, fine[2].nll, 1e-12);
    assert_eq!(acc.position_nll().len(), 32);
}

/// The ALiBi prior's probability from query `i` to key `j` (`j <= i`) of a head with slope `m`:
/// what attention is when queries and keys carry nothing.
fn prior(m: f64, i: usize, j: usize) -> f64 {
    let z: f64 = (0..=i).map(|t| (-m * t as f64).exp()).sum();
    (-m * (i - j) as f64).exp() / z
}

#[test]
fn copy_test_head_scores_are_the_alibi_prior_when_queries_and_keys_are_zero() {
    use alibi_explorer::eval::reach::{CopyOptions, CopySpec, SpanKind, copy_cases, copy_test};
    let cfg = Config::ours(41, 16, 2, 4, 32, Position::Alibi, 64);
    let mut params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    for l in 0..cfg.n_layers {
        let name = format!("blocks.{l}.attn.qkv.weight");
        let w = params[&name].to_vec2::<f32>().unwrap();
        let zeroed: Vec<f32> = w
            .iter()
            .enumerate()
            .flat_map(|(r, row)| row.iter().map(move |&x| if r < 2 * 16 { 0.0 } else { x }))
            .collect();
        params.insert(
            name,
            Tensor::from_vec(zeroed, (48, 16), &Device::Cpu).unwrap(),
        );
    }
    let vb = candle_nn::VarBuilder::from_tensors(params, DType::F32, &Device::Cpu);
    let model = alibi_explorer::model::Transformer::new(&cfg, vb).unwrap();
    let text: Vec<u32> = (0..600).map(|i| (i * 17 + i / 5) % 41).collect();
    let spec = CopySpec {
        span: 9,
        gap: 4,
        samples: 3,
        seed: 1,
        kind: SpanKind::Text,
    };
    let cases = copy_cases(&text, &spec).unwrap();
    let opts = CopyOptions {
        heads: true,
        ..CopyOptions::default()
    };
    let r = copy_test(&model, None, &cases, &opts).unwrap();
    // One layer a forward (what long inputs use) gives the same scores.
    let per_layer = CopyOptions {
        capture_bytes: Some(1),
        ..opts.clone()
    };
    let r1 = copy_test(&model, None, &cases, &per_layer).unwrap();
    assert_eq!(r1.heads, r.heads);
    let h = r.heads.unwrap();
    let slopes = cfg.default_slopes();
    for l in 0..2 {
        for (head, &m) in slopes.iter().enumerate() {
            let (mut ind, mut dup, mut prev) = (0.0, 0.0, 0.0);
            for j in 0..8 {
                let i = 13 + j;
                ind += prior(m, i, j + 1) / 8.0;
                dup += prior(m, i, j) / 8.0;
                prev += prior(m, i, i - 1) / 8.0;
            }
            let k = l * 4 + head;
            close(h.induction[k], ind, 1e-4);
            close(h.duplicate[k], dup, 1e-4);
            close(h.previous[k], prev, 1e-4);
        }
    }
    assert_eq!(r.distance, 13);
    assert_eq!(r.samples, 3);
}

#[test]
fn a_model_that_sees_only_the_current_token_gains_nothing_from_a_copy() {
    use alibi_explorer::eval::reach::{CopyOptions, CopySpec, SpanKind, copy_cases, copy_test};
    // Attention's output projection zeroed: a bigram model, so both occurrences score alike.
    let cfg = Config::ours(41, 16, 2, 4, 32, Position::Alibi, 64);
    let mut params = init_params(&cfg, 9, &Device::Cpu).unwrap();
    for l in 0..cfg.n_layers {
        params.insert(
            format!("blocks.{l}.attn.out.weight"),
            Tensor::zeros((16, 16), DType::F32, &Device::Cpu).unwrap(),
        );
    }
    let vb = candle_nn::VarBuilder::from_tensors(params, DType::F32, &Device::Cpu);
    let model = alibi_explorer::model::Transformer::new(&cfg, vb).unwrap();
    let text: Vec<u32> = (0..900).map(|i| (i * 13 + i / 3) % 41).collect();
    for kind in [SpanKind::Text, SpanKind::Random] {
        let spec = CopySpec {
            span: 12,
            gap: 0,
            samples: 6,
            seed: 3,
            kind,
        };
        let r = copy_test(
            &model,
            None,
            &copy_cases(&text, &spec).unwrap(),
            &CopyOptions::default(),
        )
        .unwrap();
        assert!(r.copy_gain.mean.abs() < 1e-5, "{:?}", r.copy_gain);
        assert!(r.first_nll.mean > 1.0);
        close(r.first_nll.mean, r.second_nll.mean, 1e-5);
        assert!(r.heads.is_none());
    }
}
