//! Long forwards in pieces (`model/prefill.rs`): a window scored in chunks with a key/value cache
//! gives the losses of the whole window, for every position scheme and chunk size; attention maps
//! from kept layer inputs equal a whole forward's captures; a capture-only forward stops early
//! with the same maps; the sweep accumulator takes a window in pieces.

#![allow(clippy::unwrap_used)]

use alibi_explorer::eval::{Control, SweepAccumulator, window_losses_with};
use alibi_explorer::model::config::Config;
use alibi_explorer::model::init::random_model;
use alibi_explorer::model::prefill::{LayerInputs, Prefill, Step, chunk_tokens, token_flops};
use alibi_explorer::model::transformer::{ForwardOptions, slopes_tensor};
use alibi_explorer::model::{Position, Transformer};
use alibi_explorer::text::Stream;
use candle_core::{Device, Tensor};

fn model(position: Position, seed: u64) -> Transformer {
    random_model(
        &Config::ours(61, 32, 3, 4, 64, position, 16),
        seed,
        &Device::Cpu,
    )
    .unwrap()
}

fn stream(n: usize) -> Stream {
    Stream {
        ids: (0..n as u32).map(|i| (i * 7 + i / 3) % 61).collect(),
        bytes: Some((0..n as u32).map(|i| 1 + i % 3).collect()),
    }
}

/// The whole window's per-position losses, one forward.
fn whole(m: &Transformer, s: &Stream, start: usize, len: usize, opts: &ForwardOptions) -> Vec<f32> {
    let mut out = Vec::new();
    window_losses_with(m, s, &[start], len, opts, &Control::default(), |_, r| {
        out = r;
    })
    .unwrap();
    out
}

/// The same window through a [`Prefill`] of `chunk`, pieces concatenated; also checks the steps.
fn chunked(
    m: &Transformer,
    s: &Stream,
    start: usize,
    len: usize,
    chunk: usize,
    opts: &ForwardOptions,
) -> Vec<f32> {
    let mut p = Prefill::new(
        m,
        &s.ids[start..start + len],
        &s.ids[start + 1..=start + len],
        chunk,
        opts,
    )
    .unwrap();
    let layers = m.config().n_layers;
    let mut out = Vec::new();
    let mut steps = 0;
    let mut last_fraction = 0.0;
    while !p.is_done() {
        match p.step(m).unwrap() {
            Step::Layer => {}
            Step::Scored { offset, nll } => {
                assert_eq!(offset, out.len(), "pieces come in order");
                assert_eq!(nll.len(), chunk.min(len - offset));
                out.extend(nll);
            }
        }
        assert!(p.fraction_done() >= last_fraction);
        last_fraction = p.fraction_done();
        steps += 1;
    }
    // One step per layer of every chunk, plus its loss.
    assert_eq!(steps, len.div_ceil(chunk.min(len)) * (layers + 1));
    assert!((p.fraction_done() - 1.0).abs() < 1e-9);
    assert!(p.step(m).is_err(), "a finished window refuses more steps");
    out
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}: position {i}: {x} vs {y}");
    }
}

#[test]
fn a_window_scored_in_chunks_equals_the_whole_window_for_every_position_scheme() {
    let s = stream(200);
    for (k, position) in Position::ALL.into_iter().enumerate() {
        let m = model(position, 11 + k as u64);
        for (start, len) in [(0, 96), (37, 61)] {
            let reference = whole(&m, &s, start, len, &ForwardOptions::default());
            for chunk in [1, 7, 16, 60, len, len + 5] {
                let got = chunked(&m, &s, start, len, chunk, &ForwardOptions::default());
                assert_close(
                    &got,
                    &reference,
                    2e-5,
                    &format!("{position} start {start} len {len} chunk {chunk}"),
                );
            }
        }
    }
}

#[test]
fn chunks_honour_slope_overrides_and_knocked_out_heads() {
    let s = stream(120);
    let m = model(Position::Alibi, 3);
    let opts = ForwardOptions {
        slopes: Some(slopes_tensor(&[0.9, 0.0, 0.05, 0.3], &Device::Cpu).unwrap()),
        knockout: vec![(1, 2)],
        ..Default::default()
    };
    let reference = whole(&m, &s, 5, 100, &opts);
    let plain = whole(&m, &s, 5, 100, &ForwardOptions::default());
    assert!(
        reference
            .iter()
            .zip(&plain)
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "the options change the losses"
    );
    assert_close(
        &chunked(&m, &s, 5, 100, 9, &opts),
        &reference,
        2e-5,
        "override",
    );
}

#[test]
fn a_window_reusing_another_windows_caches_scores_as_a_fresh_one() {
    let s = stream(200);
    let m = model(Position::Alibi, 4);
    let first = ForwardOptions {
        slopes: Some(slopes_tensor(&[0.5, 0.25, 0.1, 0.01], &Device::Cpu).unwrap()),
        ..Default::default()
    };
    // A longer window with other slopes fills the caches, then a shorter one takes them over.
    let mut p = Prefill::new(&m, &s.ids[0..120], &s.ids[1..=120], 16, &first).unwrap();
    while !p.is_done() {
        p.step(&m).unwrap();
    }
    let mut spare = p.into_caches();
    assert_eq!(spare.len(), m.config().n_layers);
    let opts = ForwardOptions::default();
    let mut q =
        Prefill::reusing(&m, &s.ids[30..91], &s.ids[31..=91], 8, &opts, &mut spare).unwrap();
    assert!(spare.is_empty(), "every layer took a spare cache");
    let mut got = Vec::new();
    while !q.is_done() {
        if let Step::Scored { nll, .. } = q.step(&m).unwrap() {
            got.extend(nll);
        }
    }
    assert_close(&got, &whole(&m, &s, 30, 61, &opts), 2e-5, "reused caches");
    // Caches too short for a longer window are not taken.
    let mut short = q.into_caches();
    let r = Prefill::reusing(&m, &s.ids[0..150], &s.ids[1..=150], 16, &opts, &mut short).unwrap();
    assert_eq!(
        short.len(),
        m.config().n_layers,
        "61-position caches cannot hold 150"
    );
    drop(r);
}

#[test]
fn chunked_windows_are_refused_when_inputs_and_targets_disagree() {
    let m = model(Position::Alibi, 1);
    let opts = ForwardOptions::default();
    assert!(Prefill::new(&m, &[1, 2, 3], &[2, 3], 2, &opts).is_err());
    assert!(Prefill::new(&m, &[], &[], 2, &opts).is_err());
}

#[test]
fn chunk_sizes_follow_the_model_cost() {
    // Our small models run their windows whole; a bloom-560m-shaped config runs chunks.
    let small = Config::ours(8192, 256, 4, 8, 1024, Position::Alibi, 512);
    let mut big = Config::ours(250_880, 1024, 24, 16, 4096, Position::Alibi, 2048);
    assert!(chunk_tokens(&small) >= 16 * 512);
    let c = chunk_tokens(&big);
    assert!(c.is_power_of_two() && (128..=512).contains(&c), "{c}");
    // Cost grows with the context (attention) and the vocabulary (LM head).
    assert!(token_flops(&big, 4096) > token_flops(&big, 0));
    big.vocab_size *= 2;
    assert!(chunk_tokens(&big) <= c);
}

#[test]
fn attention_from_kept_layer_inputs_equals_a_whole_forward_in_any_order() {
    let s = stream(40);
    for position in [Position::Alibi, Position::Rotary] {
        let m = model(position, 21);
        let n = 33;
        let x = Tensor::from_vec(s.ids[..n].to_vec(), (1, n), &Device::Cpu).unwrap();
        let pairs: Vec<(usize, usize)> = vec![(2, 3), (0, 1), (1, 0), (2, 0), (0, 3)];
        let full = m
            .forward_hidden(
                &x,
                &ForwardOptions {
                    capture: pairs.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        let mut inputs = LayerInputs::new(&m, &s.ids[..n], &ForwardOptions::default()).unwrap();
        assert_eq!(inputs.known(), 1);
        for (i, &(layer, head)) in pairs.iter().enumerate() {
            while inputs.known() <= layer {
                assert!(inputs.advance(&m).unwrap());
            }
            let got = inputs.attention(&m, layer, head).unwrap();
            let want = full.captured[i]
                .probs
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_close(
                &got,
                &want,
                1e-6,
                &format!("{position} layer {layer} head {head}"),
            );
        }
        assert_eq!(inputs.known(), 3);
        assert!(!inputs.advance(&m).unwrap(), "every layer's input is known");
        assert!(inputs.attention(&m, 5, 0).is_err());
    }
}

#[test]
fn a_capture_only_forward_stops_at_the_captured_layer_with_the_same_map() {
    let s = stream(30);
    let m = model(Position::Alibi, 8);
    let x = Tensor::from_vec(s.ids[..24].to_vec(), (1, 24), &Device::Cpu).unwrap();
    let opts = ForwardOptions {
        capture: vec![(1, 2)],
        ..Default::default()
    };
    let full = m.forward_hidden(&x, &opts).unwrap();
    let early = m
        .forward_hidden(
            &x,
            &ForwardOptions {
                capture_only: true,
                ..opts
            },
        )
        .unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(
        flat(&full.captured[0].probs),
        flat(&early.captured[0].probs)
    );
    // It stopped after layer 1 of 3: its hidden state is not the final one.
    assert_ne!(flat(&full.hidden), flat(&early.hidden));
}

#[test]
fn an_interrupted_forward_stops_with_the_interrupted_error() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let m = model(Position::Alibi, 2);
    let x = Tensor::from_vec(vec![1u32, 2, 3, 4], (1, 4), &Device::Cpu).unwrap();
    let flag = Arc::new(AtomicBool::new(true));
    let e = m
        .forward_hidden(
            &x,
            &ForwardOptions {
                interrupt: Some(flag.clone()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        alibi_explorer::model::transformer::is_interrupted(&e),
        "{e}"
    );
    flag.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        m.forward_hidden(
            &x,
            &ForwardOptions {
                interrupt: Some(flag),
                ..Default::default()
            }
        )
        .is_ok()
    );
}

#[test]
fn the_sweep_accumulator_takes_a_window_in_pieces() {
    let s = stream(300);
    let nll: Vec<f32> = (0..128).map(|i| 1.0 + (i % 13) as f32 * 0.1).collect();
    let second: Vec<f32> = (0..128).map(|i| 2.0 + (i % 5) as f32 * 0.2).collect();
    let lengths = [8, 32, 64, 100, 128];
    let mut whole = SweepAccumulator::new(128);
    whole.add(&s, 0, &nll);
    let mut parts = SweepAccumulator::new(128);
    assert!(!parts.has_data());
    parts.add_part(&s, 0, 128, 0, &nll[..40]);
    assert!(parts.has_data());
    assert_eq!(parts.partial_positions(128), 40);
    assert_eq!(parts.windows_of(128), 0, "not a window until complete");
    // Covered lengths are exact already; longer ones have no tokens yet.
    let early = parts.points(&lengths);
    let want = whole.points(&lengths);
    for (g, w) in early.iter().zip(&want) {
        if g.length <= 40 {
            assert_eq!(g.tokens, w.tokens);
            assert!((g.nll - w.nll).abs() < 1e-12);
            assert_eq!(g.bits_per_byte, w.bits_per_byte);
        } else {
            assert_eq!(g.tokens, 0, "length {} is not covered yet", g.length);
        }
    }
    // A piece out of order is dropped.
    parts.add_part(&s, 0, 128, 90, &nll[90..]);
    assert_eq!(parts.partial_positions(128), 40);
    parts.add_part(&s, 0, 128, 40, &nll[40..100]);
    parts.add_part(&s, 0, 128, 100, &nll[100..]);
    assert_eq!(parts.windows_of(128), 1);
    assert_eq!(parts.partial_positions(128), 0);
    for (g, w) in parts.points(&lengths).iter().zip(&want) {
        assert_eq!(g.tokens, w.tokens);
        assert!((g.nll - w.nll).abs() < 1e-12 && (g.ppl_stderr - w.ppl_stderr).abs() < 1e-9);
    }
    // A second window in pieces counts where it covers the length, on top of the first.
    whole.add(&s, 128, &second);
    parts.add_part(&s, 128, 128, 0, &second[..64]);
    let mid = parts.points(&[32, 64, 100]);
    let both = whole.points(&[32, 64]);
    assert_eq!(mid[0].tokens, both[0].tokens);
    assert!((mid[1].nll - both[1].nll).abs() < 1e-12);
    assert_eq!(mid[2].tokens, 100, "only the complete window covers 100");
    // A piece at offset 0 of another start restarts the partial window.
    parts.add_part(&s, 256, 128, 0, &second[..10]);
    assert_eq!(parts.partial_positions(128), 10);
}
