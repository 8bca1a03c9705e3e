//! Attention statistics on tiny models built in the test: uniform attention gives the textbook
//! values, statistics accumulated inside blocked attention (any query-block size, batched windows)
//! equal those computed from fully captured maps, the report carries the ALiBi prior, and the loss
//! by position equals the per-token mean of the same windows.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::prior::{
    MASS_THRESHOLD, SINK_MIN_QUERY, SINK_TOKENS, log_bin, log_bin_range, log_bins, prior_means,
    prior_profile,
};
use alibi_explorer::eval::stats::{attention_stats, length_stats};
use alibi_explorer::eval::{CANCELLED, Control, Protocol, evaluate};
use alibi_explorer::model::Transformer;
use alibi_explorer::model::attention_stats::HeadSums;
use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::random_model;
use alibi_explorer::model::transformer::ForwardOptions;
use alibi_explorer::text::Stream;
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::AtomicBool;

const VOCAB: usize = 37;
const LAYERS: usize = 2;
const HEADS: usize = 3;

fn tiny(position: Position) -> Config {
    Config::ours(VOCAB, 24, LAYERS, HEADS, 48, position, 8)
}

fn stream(n: usize) -> Stream {
    Stream {
        ids: (0..n).map(|i| ((i * 7 + 3) % VOCAB) as u32).collect(),
        bytes: None,
    }
}

/// A model whose weights are all zero: queries and keys vanish, so attention is uniform.
fn zero_model(position: Position) -> Transformer {
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    Transformer::new(&tiny(position), vb).unwrap()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn uniform_attention_gives_half_distance_and_log_entropy() {
    let len = 40;
    let model = zero_model(Position::None);
    let report = attention_stats(
        &model,
        "zero",
        &stream(3 * len + 1),
        &[len],
        None,
        None,
        &Control::default(),
    )
    .unwrap();
    assert_eq!(report.heads.len(), LAYERS * HEADS);
    let n = len as f64;
    // Per query: mean distance i/2, entropy ln(i+1); averaged over queries 0..len.
    let mean_distance = (0..len).map(|i| i as f64 / 2.0).sum::<f64>() / n;
    let entropy = (0..len).map(|i| ((i + 1) as f64).ln()).sum::<f64>() / n;
    let uniform = prior_means(0.0, len);
    for h in &report.heads {
        assert_eq!(h.slope, None);
        let p = &h.points[0];
        assert_eq!(p.queries, 3 * len as u64);
        close(p.mean_distance, mean_distance, 1e-5, "mean distance");
        close(p.entropy, entropy, 1e-5, "entropy");
        close(p.entropy_norm.unwrap(), 1.0, 1e-5, "entropy_norm");
        close(p.mass90_distance, uniform.mass90_distance, 1e-9, "mass90");
        close(
            p.sink_mass.unwrap(),
            uniform.sink_mass.unwrap(),
            1e-5,
            "sink",
        );
        assert!(p.prior.is_none());
    }
    // Uniform attention by distance is the zero-slope prior's curve.
    let curve = prior_profile(0.0, len);
    for d in &report.distance_profile {
        assert!(d.bins.iter().all(|b| b.prior.is_none()));
        for (b, want) in d.bins.iter().zip(&curve) {
            close(b.attention, *want, 1e-5, "profile");
        }
    }
}

/// Statistics of one head from a full `(len, len)` map, in f64, straight from the definitions.
fn reference(rows: &[Vec<f32>]) -> HeadSums {
    let mut s = HeadSums::default();
    let bins = log_bins(rows.len());
    s.profile = vec![0.0; bins];
    s.profile_pairs = vec![0; bins];
    for (i, row) in rows.iter().enumerate() {
        let p: Vec<f64> = row[..=i].iter().map(|&x| f64::from(x)).collect();
        let entropy: f64 = -p
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * x.ln())
            .sum::<f64>();
        s.queries += 1;
        s.mean_distance += (0..=i).map(|j| p[j] * (i - j) as f64).sum::<f64>();
        s.entropy += entropy;
        if i >= 1 {
            s.entropy_norm += entropy / ((i + 1) as f64).ln();
            s.norm_queries += 1;
        }
        let mut cum = 0.0;
        let mut mass = i;
        for d in 0..=i {
            cum += p[i - d];
            if cum >= MASS_THRESHOLD {
                mass = d;
                break;
            }
        }
        s.mass90_distance += mass as f64;
        if i >= SINK_MIN_QUERY {
            s.sink_mass += p[..SINK_TOKENS].iter().sum::<f64>();
            s.sink_queries += 1;
        }
        for d in 0..=i {
            s.profile[log_bin(d)] += p[i - d];
            s.profile_pairs[log_bin(d)] += 1;
        }
    }
    s
}

fn assert_same(got: &HeadSums, want: &HeadSums, what: &str) {
    let (g, w) = (got.means(), want.means());
    assert_eq!(g.queries, w.queries, "{what}");
    close(g.mean_distance, w.mean_distance, 1e-5, what);
    close(g.entropy, w.entropy, 1e-5, what);
    close(g.entropy_norm.unwrap(), w.entropy_norm.unwrap(), 1e-5, what);
    close(g.mass90_distance, w.mass90_distance, 1e-9, what);
    close(g.sink_mass.unwrap(), w.sink_mass.unwrap(), 1e-5, what);
    assert_eq!(got.profile_pairs, want.profile_pairs, "{what}");
    for (a, b) in g.profile.iter().zip(&w.profile) {
        close(*a, *b, 1e-5, what);
    }
}

#[test]
fn blocked_statistics_equal_statistics_of_captured_maps() {
    let len = 37;
    for position in [Position::Alibi, Position::Rotary] {
        let model = random_model(&tiny(position), 5, &Device::Cpu).unwrap();
        let s = stream(2 * len + 1);
        // Two windows as the two rows of one batch.
        let x = Tensor::from_vec(s.ids[..2 * len].to_vec(), (2, len), &Device::Cpu).unwrap();
        let capture: Vec<(usize, usize)> = (0..LAYERS)
            .flat_map(|l| (0..HEADS).map(move |h| (l, h)))
            .collect();
        let full = model
            .forward_hidden(
                &x,
                &ForwardOptions {
                    capture: capture.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        for (block, train) in [
            (None, false),
            (Some(1), false),
            (Some(5), false),
            (Some(16), false),
            (None, true),
        ] {
            let out = model
                .forward_hidden(
                    &x,
                    &ForwardOptions {
                        stats: true,
                        query_block: block,
                        train,
                        ..Default::default()
                    },
                )
                .unwrap();
            let stats = out.stats.unwrap();
            assert_eq!((stats.n_layers(), stats.n_heads()), (LAYERS, HEADS));
            for c in &full.captured {
                let maps = c.probs.to_vec3::<f32>().unwrap(); // (batch, len, len)
                let mut want = reference(&maps[0]);
                want.merge(&reference(&maps[1]));
                let what = format!(
                    "{position} block {block:?} train {train} layer {} head {}",
                    c.layer, c.head
                );
                assert_same(stats.head(c.layer, c.head), &want, &what);
            }
        }
        // Without the option there are no statistics.
        assert!(full.stats.is_none());
    }
}

#[test]
fn report_carries_the_alibi_prior_and_slopes() {
    let len = 20;
    let model = random_model(&tiny(Position::Alibi), 3, &Device::Cpu).unwrap();
    let slopes = [0.5, 0.0, 1.0 / 16.0];
    let report = attention_stats(
        &model,
        "tiny",
        &stream(100),
        &[8, len],
        Some(&slopes),
        Some(2),
        &Control::default(),
    )
    .unwrap();
    assert_eq!(report.lengths, vec![8, len]);
    assert_eq!(report.position, "alibi");
    assert_eq!(report.distance_profile.len(), LAYERS * HEADS * 2);
    for h in &report.heads {
        let m = slopes[h.head];
        assert_eq!(h.slope, Some(m));
        for p in &h.points {
            assert_eq!(
                p.queries,
                2 * p.length as u64,
                "max_windows caps the windows"
            );
            let prior = p.prior.unwrap();
            let want = prior_means(m, p.length);
            assert_eq!(prior.mean_distance, want.mean_distance);
            assert_eq!(prior.mass90_distance, want.mass90_distance);
            assert_eq!(prior.sink_mass, want.sink_mass);
        }
    }
    let d = report
        .distance_profile
        .iter()
        .find(|d| d.length == len && d.head == 0)
        .unwrap();
    let edges: Vec<_> = d.bins.iter().map(|b| (b.from, b.to)).collect();
    assert_eq!(edges, [(0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 20)]);
    let curve = prior_profile(0.5, len);
    for (b, want) in d.bins.iter().zip(&curve) {
        assert_eq!(b.prior, Some(*want));
    }
    // The JSON has the documented shape.
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "model",
        "position",
        "train_len",
        "lengths",
        "heads",
        "distance_profile",
        "position_loss",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let point = &json["heads"][0]["points"][0];
    for key in [
        "length",
        "queries",
        "mean_distance",
        "entropy",
        "entropy_norm",
        "mass90_distance",
        "sink_mass",
    ] {
        assert!(point.get(key).is_some(), "missing {key}");
    }
    assert!(point["prior"]["entropy"].is_number());
    assert!(
        json["heads"][0]["points"][0]["sink_mass"].is_null(),
        "no query >= 16 at length 8"
    );
}

#[test]
fn loss_by_position_is_the_per_token_mean() {
    let len = 24;
    let model = random_model(&tiny(Position::Alibi), 9, &Device::Cpu).unwrap();
    let s = stream(5 * len + 3);
    let report =
        attention_stats(&model, "tiny", &s, &[len], None, None, &Control::default()).unwrap();
    let eval = evaluate(
        &model,
        &s,
        &[len],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    assert_eq!(report.position_loss.len(), log_bins(len));
    for (bin, got) in report.position_loss.iter().enumerate() {
        let (from, to) = log_bin_range(bin);
        assert_eq!((got.from, got.to), (from, to.min(len)));
        let tokens: Vec<f64> = eval
            .per_token
            .iter()
            .filter(|t| (from..to).contains(&t.position))
            .map(|t| f64::from(t.nll))
            .collect();
        assert_eq!(got.tokens, tokens.len());
        close(
            got.nll,
            tokens.iter().sum::<f64>() / tokens.len() as f64,
            1e-5,
            "nll",
        );
    }
    let all: usize = report.position_loss.iter().map(|b| b.tokens).sum();
    assert_eq!(all, 5 * len);
}

#[test]
fn cancellation_and_progress() {
    let model = random_model(&tiny(Position::Alibi), 1, &Device::Cpu).unwrap();
    let s = stream(200);
    let cancel = AtomicBool::new(true);
    let ctl = Control {
        cancel: Some(&cancel),
        ..Default::default()
    };
    let err = length_stats(&model, &s, 16, None, None, &ctl).unwrap_err();
    assert!(err.to_string().contains(CANCELLED), "{err}");
    let seen = std::cell::RefCell::new(Vec::new());
    let progress = |d: usize, t: usize| seen.borrow_mut().push((d, t));
    let ctl = Control {
        progress: Some(&progress),
        batch: Some(4),
        ..Default::default()
    };
    attention_stats(&model, "tiny", &s, &[16, 32], None, None, &ctl).unwrap();
    // 12 windows of 16 (batches of 4) then 6 of 32.
    assert_eq!(
        seen.into_inner(),
        [(4, 18), (8, 18), (12, 18), (16, 18), (18, 18)]
    );
}
