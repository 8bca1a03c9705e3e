//! Transformer engine tests on tiny models built in the test: every position scheme, blocked vs
//! full attention, capture, causality, slope override, batch independence, save/load, and an
//! independent plain-Rust reference forward.

#![allow(clippy::unwrap_used, clippy::unreadable_literal)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::device::ChosenDevice;
use alibi_explorer::model::init::{init_params, random_model};
use alibi_explorer::model::load::load_model;
use alibi_explorer::model::transformer::{ForwardOptions, slopes_tensor};
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device, IndexOp, Tensor};
use std::collections::HashMap;

fn tiny(position: Position) -> Config {
    Config::ours(37, 24, 2, 6, 48, position, 8)
}

fn tokens(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn batch2(a: &[u32], b: &[u32]) -> Tensor {
    let mut v = a.to_vec();
    v.extend_from_slice(b);
    Tensor::from_vec(v, (2, a.len()), &Device::Cpu).unwrap()
}

fn ids(n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7 + 3) % 37) as u32).collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn every_position_scheme_runs_and_blocked_equals_full_attention() {
    for position in Position::ALL {
        let cfg = tiny(position);
        let model = random_model(&cfg, 1, &Device::Cpu).unwrap();
        let x = tokens(&ids(21));
        let logits = model.forward(&x).unwrap();
        assert_eq!(logits.dims(), &[1, 21, 37]);
        let full = model
            .forward_hidden(
                &x,
                &ForwardOptions {
                    train: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .hidden;
        for block in [1, 4, 16, 64] {
            let blocked = model
                .forward_hidden(
                    &x,
                    &ForwardOptions {
                        query_block: Some(block),
                        ..Default::default()
                    },
                )
                .unwrap()
                .hidden;
            let d = max_abs_diff(&full, &blocked);
            assert!(d < 1e-4, "{position} block {block}: {d}");
        }
    }
}

#[test]
fn outputs_are_causal() {
    for position in Position::ALL {
        let model = random_model(&tiny(position), 2, &Device::Cpu).unwrap();
        let a = ids(12);
        let mut b = a.clone();
        b[9] = (b[9] + 5) % 37;
        let la = model.forward(&tokens(&a)).unwrap();
        let lb = model.forward(&tokens(&b)).unwrap();
        let early = max_abs_diff(&la.i((.., ..9, ..)).unwrap(), &lb.i((.., ..9, ..)).unwrap());
        let late = max_abs_diff(&la.i((.., 9.., ..)).unwrap(), &lb.i((.., 9.., ..)).unwrap());
        assert!(
            early < 1e-6,
            "{position}: future token changed the past ({early})"
        );
        assert!(late > 1e-4, "{position}: the changed token had no effect");
    }
}

#[test]
fn capture_returns_requested_heads_with_stochastic_causal_rows() {
    let model = random_model(&tiny(Position::Alibi), 3, &Device::Cpu).unwrap();
    let x = batch2(&ids(10), &ids(10).into_iter().rev().collect::<Vec<_>>());
    let plain = model
        .forward_hidden(&x, &ForwardOptions::default())
        .unwrap();
    let opts = ForwardOptions {
        capture: vec![(1, 5), (0, 2)],
        query_block: Some(3),
        ..Default::default()
    };
    let out = model.forward_hidden(&x, &opts).unwrap();
    assert!(
        max_abs_diff(&plain.hidden, &out.hidden) < 1e-5,
        "capture changed the output"
    );
    assert_eq!(out.captured.len(), 2);
    assert_eq!((out.captured[0].layer, out.captured[0].head), (1, 5));
    assert_eq!((out.captured[1].layer, out.captured[1].head), (0, 2));
    for c in &out.captured {
        assert_eq!(c.probs.dims(), &[2, 10, 10]);
        let p = c.probs.to_vec3::<f32>().unwrap();
        for batch in &p {
            for (i, row) in batch.iter().enumerate() {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
                assert!(
                    row[i + 1..].iter().all(|&v| v == 0.0),
                    "row {i} attends to the future"
                );
            }
        }
    }
}

#[test]
fn slope_override_is_used_and_zero_slopes_equal_no_position() {
    let alibi_cfg = tiny(Position::Alibi);
    let params = init_params(&alibi_cfg, 4, &Device::Cpu).unwrap();
    let build = |cfg: &Config| {
        let vb = candle_nn::VarBuilder::from_tensors(params.clone(), DType::F32, &Device::Cpu);
        alibi_explorer::model::Transformer::new(cfg, vb).unwrap()
    };
    let alibi = build(&alibi_cfg);
    let none = build(&tiny(Position::None));
    let x = tokens(&ids(15));
    let zero = slopes_tensor(&[0.0; 6], &Device::Cpu).unwrap();
    let h_zero = alibi
        .forward_hidden(
            &x,
            &ForwardOptions {
                slopes: Some(zero),
                ..Default::default()
            },
        )
        .unwrap()
        .hidden;
    let h_none = none
        .forward_hidden(&x, &ForwardOptions::default())
        .unwrap()
        .hidden;
    assert!(max_abs_diff(&h_zero, &h_none) < 1e-5);
    let h_default = alibi
        .forward_hidden(&x, &ForwardOptions::default())
        .unwrap()
        .hidden;
    assert!(max_abs_diff(&h_zero, &h_default) > 1e-3);
}

#[test]
fn batching_does_not_change_results() {
    let model = random_model(&tiny(Position::Rotary), 5, &Device::Cpu).unwrap();
    let a = ids(9);
    let b: Vec<u32> = a.iter().map(|t| (t + 11) % 37).collect();
    let both = model.forward(&batch2(&a, &b)).unwrap();
    let la = model.forward(&tokens(&a)).unwrap();
    let lb = model.forward(&tokens(&b)).unwrap();
    assert!(max_abs_diff(&both.i(0..1).unwrap(), &la) < 1e-5);
    assert!(max_abs_diff(&both.i(1..2).unwrap(), &lb) < 1e-5);
}

#[test]
fn nll_matches_log_softmax_of_logits() {
    let model = random_model(&tiny(Position::Sinusoidal), 6, &Device::Cpu).unwrap();
    let seq = ids(13);
    let x = tokens(&seq[..12]);
    let y = tokens(&seq[1..]);
    let out = model
        .forward_hidden(&x, &ForwardOptions::default())
        .unwrap();
    let nll = model
        .nll(&out.hidden, &y)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let logits = model.logits(&out.hidden).unwrap().to_vec3::<f32>().unwrap();
    for p in 0..12 {
        let row = &logits[0][p];
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        let want = lse - row[seq[p + 1] as usize];
        assert!((nll[0][p] - want).abs() < 1e-4, "{} vs {want}", nll[0][p]);
    }
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for position in Position::ALL {
        let mut cfg = tiny(position);
        if position == Position::Alibi {
            cfg.slopes = Some(vec![0.5, 0.25, 0.1, 0.05, 0.01, 0.0]);
        }
        let params = init_params(&cfg, 8, &Device::Cpu).unwrap();
        let vb = candle_nn::VarBuilder::from_tensors(params.clone(), DType::F32, &Device::Cpu);
        let model = alibi_explorer::model::Transformer::new(&cfg, vb).unwrap();
        let x = tokens(&ids(11));
        let want = model.forward(&x).unwrap();
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::F16, 2e-2)] {
            let folder = dir.path().join(format!("{position}-{dtype:?}"));
            save_checkpoint(&folder, &cfg, &params, dtype, None).unwrap();
            let cpu = ChosenDevice {
                device: Device::Cpu,
                note: String::new(),
            };
            let loaded = load_model(&folder, cpu, DType::F32).unwrap();
            assert_eq!(loaded.model.config().position, position);
            assert_eq!(loaded.model.config().slopes, cfg.slopes);
            let got = loaded.model.forward(&x).unwrap();
            let d = max_abs_diff(&want, &got);
            assert!(d <= tol, "{position} {dtype:?}: {d}");
        }
    }
}

/// A plain-Rust, f64 forward pass of a one-layer ALiBi model, written from the equations rather
/// than from the candle code, to check the engine end to end.
fn reference_logits(cfg: &Config, p: &HashMap<String, Tensor>, seq: &[u32]) -> Vec<Vec<f64>> {
    let get = |n: &str| -> Vec<f64> {
        p[n].flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let d = cfg.d_model;
    let (h, hd) = (cfg.n_heads, cfg.head_dim());
    let matvec = |w: &[f64], b: &[f64], x: &[f64], out: usize| -> Vec<f64> {
        (0..out)
            .map(|o| b[o] + (0..x.len()).map(|i| w[o * x.len() + i] * x[i]).sum::<f64>())
            .collect()
    };
    let ln = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - mean) / (var + cfg.layer_norm_eps).sqrt() * w[i] + b[i])
            .collect()
    };
    let gelu = |x: f64| {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
    };
    let emb = get("tok_emb.weight");
    let slopes = alibi_explorer::alibi::paper_slopes(h);
    let mut xs: Vec<Vec<f64>> = seq
        .iter()
        .map(|&t| {
            emb[t as usize * d..(t as usize + 1) * d]
                .iter()
                .map(|v| v * cfg.embed_scale)
                .collect()
        })
        .collect();
    let pre = "blocks.0";
    let a_in: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| {
            ln(
                x,
                &get(&format!("{pre}.ln1.weight")),
                &get(&format!("{pre}.ln1.bias")),
            )
        })
        .collect();
    let qkv: Vec<Vec<f64>> = a_in
        .iter()
        .map(|x| {
            matvec(
                &get(&format!("{pre}.attn.qkv.weight")),
                &get(&format!("{pre}.attn.qkv.bias")),
                x,
                3 * d,
            )
        })
        .collect();
    let n = seq.len();
    let mut attn_out = vec![vec![0.0; d]; n];
    for head in 0..h {
        for i in 0..n {
            let q = &qkv[i][head * hd..(head + 1) * hd];
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    let k = &qkv[j][d + head * hd..d + (head + 1) * hd];
                    q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                        - slopes[head] * (i - j) as f64
                })
                .collect();
            let w = alibi_explorer::alibi::softmax(&scores);
            for (j, wj) in w.iter().enumerate() {
                for c in 0..hd {
                    attn_out[i][head * hd + c] += wj * qkv[j][2 * d + head * hd + c];
                }
            }
        }
    }
    for i in 0..n {
        let o = matvec(
            &get(&format!("{pre}.attn.out.weight")),
            &get(&format!("{pre}.attn.out.bias")),
            &attn_out[i],
            d,
        );
        for c in 0..d {
            xs[i][c] += o[c];
        }
        let m_in = ln(
            &xs[i],
            &get(&format!("{pre}.ln2.weight")),
            &get(&format!("{pre}.ln2.bias")),
        );
        let up: Vec<f64> = matvec(
            &get(&format!("{pre}.mlp.up.weight")),
            &get(&format!("{pre}.mlp.up.bias")),
            &m_in,
            cfg.d_ff,
        )
        .into_iter()
        .map(gelu)
        .collect();
        let down = matvec(
            &get(&format!("{pre}.mlp.down.weight")),
            &get(&format!("{pre}.mlp.down.bias")),
            &up,
            d,
        );
        for c in 0..d {
            xs[i][c] += down[c];
        }
    }
    xs.iter()
        .map(|x| {
            let f = ln(x, &get("ln_f.weight"), &get("ln_f.bias"));
            matvec(&emb, &vec![0.0; cfg.vocab_size], &f, cfg.vocab_size)
        })
        .collect()
}

#[test]
fn matches_an_independent_reference_forward() {
    let cfg = Config::ours(19, 12, 1, 3, 20, Position::Alibi, 4);
    let mut params = init_params(&cfg, 9, &Device::Cpu).unwrap();
    // Make biases and norm parameters non-trivial so they are checked too.
    let mut rng = alibi_explorer::model::init::Rng::new(99);
    for t in params.values_mut() {
        let noise: Vec<f32> = (0..t.elem_count())
            .map(|_| (rng.normal() * 0.3) as f32)
            .collect();
        *t = (&*t + Tensor::from_vec(noise, t.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    let vb = candle_nn::VarBuilder::from_tensors(params.clone(), DType::F32, &Device::Cpu);
    let model = alibi_explorer::model::Transformer::new(&cfg, vb).unwrap();
    let seq = [3u32, 17, 0, 5, 5, 12, 1];
    let got = model
        .forward(&tokens(&seq))
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let want = reference_logits(&cfg, &params, &seq);
    for (g, w) in got[0].iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-3 * b.abs().max(1.0),
                "{a} vs {b}"
            );
        }
    }
}
