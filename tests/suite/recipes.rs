//! Long-context recipes and KL divergence (issue 21), checked for exactness: recipes that change
//! nothing equal the plain model, `interp:F` equals the divided slopes, `sinks:0+W` equals
//! `window:W`, and windows and sinks equal a brute-force reference (the plain model run on just
//! the kept cache, contiguous, as StreamingLLM does) on one-layer models; chunked forwards agree;
//! the unmodified model has KL 0 and top-1 agreement 1.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::recipe::Recipe;
use alibi_explorer::eval::kl::kl_by_length;
use alibi_explorer::eval::recipe::{Modification, evaluate_modified};
use alibi_explorer::eval::{Control, Protocol, window_losses_with};
use alibi_explorer::model::config::Config;
use alibi_explorer::model::init::random_model;
use alibi_explorer::model::prefill::{Prefill, Step};
use alibi_explorer::model::transformer::ForwardOptions;
use alibi_explorer::model::{Position, Transformer};
use alibi_explorer::text::Stream;
use candle_core::{Device, Tensor};

const VOCAB: usize = 61;
const TRAIN_LEN: usize = 16;

fn model(position: Position, layers: usize, seed: u64) -> Transformer {
    random_model(
        &Config::ours(VOCAB, 32, layers, 4, 64, position, TRAIN_LEN),
        seed,
        &Device::Cpu,
    )
    .unwrap()
}

fn stream(n: usize) -> Stream {
    Stream {
        ids: (0..n as u32)
            .map(|i| (i * 7 + i / 3) % VOCAB as u32)
            .collect(),
        bytes: None,
    }
}

fn losses(m: &Transformer, s: &Stream, len: usize, opts: &ForwardOptions) -> Vec<f32> {
    let mut out = Vec::new();
    window_losses_with(m, s, &[0], len, opts, &Control::default(), |_, r| out = r).unwrap();
    out
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}: position {i}: {x} vs {y}");
    }
}

fn opts_for(m: &Transformer, recipe: &str, len: usize) -> ForwardOptions {
    Modification {
        slopes: None,
        recipe: Some(recipe.parse().unwrap()),
    }
    .options_at(m, len)
    .unwrap()
}

#[test]
fn recipes_that_change_nothing_equal_the_plain_model() {
    let s = stream(200);
    for position in [
        Position::Alibi,
        Position::None,
        Position::Sinusoidal,
        Position::Rotary,
    ] {
        let m = model(position, 2, 3);
        for len in [8, TRAIN_LEN, 40] {
            let plain = losses(&m, &s, len, &ForwardOptions::default());
            let mut same = vec![format!("window:{len}"), format!("window:{}", len + 7)];
            if position == Position::Alibi {
                same.push("interp:1".into());
                if len <= TRAIN_LEN {
                    same.push("ntk".into());
                    same.push("interp:dynamic".into());
                }
            }
            for r in same {
                let got = losses(&m, &s, len, &opts_for(&m, &r, len));
                close(&got, &plain, 1e-6, &format!("{position} {r} at {len}"));
            }
        }
    }
}

#[test]
fn interp_equals_the_divided_slopes_and_sinks_zero_equals_window() {
    let s = stream(200);
    let m = model(Position::Alibi, 2, 5);
    let base: Vec<f64> = m
        .slopes()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let divided: Vec<f64> = base.iter().map(|x| x / 3.0).collect();
    let by_slopes = Modification {
        slopes: Some(divided),
        recipe: None,
    }
    .options_at(&m, 48)
    .unwrap();
    close(
        &losses(&m, &s, 48, &opts_for(&m, "interp:3", 48)),
        &losses(&m, &s, 48, &by_slopes),
        1e-6,
        "interp:3",
    );
    for position in [Position::Alibi, Position::Rotary] {
        let m = model(position, 2, 7);
        close(
            &losses(&m, &s, 48, &opts_for(&m, "sinks:0+9", 48)),
            &losses(&m, &s, 48, &opts_for(&m, "window:9", 48)),
            0.0,
            "sinks:0+9",
        );
    }
}

/// The reference: for each query `i`, the plain model run on the kept cache only (sinks, then the
/// recent window, contiguous), scored at its last position.
fn brute_force(m: &Transformer, s: &Stream, len: usize, sinks: usize, window: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let lo = (i + 1).saturating_sub(window);
            let mut cache: Vec<u32> = s.ids[..sinks.min(lo)].to_vec();
            cache.extend_from_slice(&s.ids[lo..=i]);
            let n = cache.len();
            let x = Tensor::from_vec(cache, (1, n), &Device::Cpu).unwrap();
            let y = Tensor::new(&[[s.ids[i + 1]]], &Device::Cpu).unwrap();
            let out = m.forward_hidden(&x, &ForwardOptions::default()).unwrap();
            let last = out.hidden.narrow(1, n - 1, 1).unwrap();
            m.nll(&last, &y).unwrap().to_vec2::<f32>().unwrap()[0][0]
        })
        .collect()
}

#[test]
fn windows_and_sinks_equal_the_kept_cache_run_alone() {
    // One layer: a query's output depends only on the keys it keeps (deeper layers mix in what
    // the kept positions saw themselves).
    let s = stream(120);
    let len = 40;
    for position in [Position::Alibi, Position::None] {
        let m = model(position, 1, 11);
        for (sinks, window) in [(0, 5), (0, 1), (2, 6), (4, 9), (1, 39)] {
            let r = if sinks == 0 {
                format!("window:{window}")
            } else {
                format!("sinks:{sinks}+{window}")
            };
            let got = losses(&m, &s, len, &opts_for(&m, &r, len));
            let want = brute_force(&m, &s, len, sinks, window);
            close(&got, &want, 2e-5, &format!("{position} {r}"));
            // Small query blocks and a chunked forward apply the mask the same way.
            let blocked = ForwardOptions {
                query_block: Some(3),
                ..opts_for(&m, &r, len)
            };
            close(
                &losses(&m, &s, len, &blocked),
                &want,
                2e-5,
                &format!("{r} blocked"),
            );
            let mut p = Prefill::new(
                &m,
                &s.ids[..len],
                &s.ids[1..=len],
                7,
                &opts_for(&m, &r, len),
            )
            .unwrap();
            let mut pieces = Vec::new();
            while !p.is_done() {
                if let Step::Scored { nll, .. } = p.step(&m).unwrap() {
                    pieces.extend(nll);
                }
            }
            close(&pieces, &want, 2e-5, &format!("{r} chunked"));
        }
    }
}

#[test]
fn length_dependent_recipes_score_each_length_with_its_own_slopes() {
    let s = stream(300);
    let m = model(Position::Alibi, 2, 13);
    let md = Modification {
        slopes: None,
        recipe: Some(Recipe::Ntk),
    };
    let lengths = [8, 16, 64];
    let e = evaluate_modified(&m, &s, &lengths, Protocol::Sweep, &md, &Control::default()).unwrap();
    assert_eq!(e.protocol, Protocol::NonOverlap);
    for (p, &len) in e.points.iter().zip(&lengths) {
        let one = alibi_explorer::eval::evaluate_with(
            &m,
            &s,
            &[len],
            Protocol::NonOverlap,
            &md.options_at(&m, len).unwrap(),
            &Control::default(),
        )
        .unwrap();
        assert!((p.nll - one.points[0].nll).abs() < 1e-9, "length {len}");
    }
    // Past train_len the recipe changes the result.
    let plain = alibi_explorer::eval::evaluate(
        &m,
        &s,
        &[64],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    assert!((e.points[2].nll - plain.points[0].nll).abs() > 1e-6);
}

#[test]
fn kl_is_zero_for_the_original_and_positive_for_a_change() {
    let s = stream(200);
    let m = model(Position::Alibi, 2, 17);
    let ctl = Control::default();
    let none = kl_by_length(
        &m,
        &s,
        &[8, 32],
        Protocol::NonOverlap,
        &Modification::default(),
        &ctl,
    )
    .unwrap();
    for k in &none {
        assert!(k.mean.abs() < 1e-9 && k.p99.abs() < 1e-9, "{k:?}");
        assert_eq!(k.top1_agreement, 1.0);
        assert!(k.delta_p.abs() < 1e-9);
        assert!(k.tokens > 0);
    }
    let changed = Modification {
        slopes: None,
        recipe: Some(Recipe::Window(4)),
    };
    let k = kl_by_length(&m, &s, &[32], Protocol::NonOverlap, &changed, &ctl).unwrap();
    assert!(k[0].mean > 0.0 && k[0].top1_agreement <= 1.0, "{k:?}");
    assert_eq!(k[0].tokens, none[1].tokens);
}

#[test]
fn attention_maps_under_a_recipe_mask_the_dropped_keys() {
    use alibi_explorer::eval::stats::attention_map_with;
    let m = model(Position::Alibi, 2, 5);
    let s = stream(40);
    let len = 24;
    let ids = &s.ids[..len];
    // window:5: query i sees keys i-4..=i; sinks:2+5 also keys 0 and 1.
    for (recipe, sinks) in [("window:5", 0), ("sinks:2+5", 2)] {
        let probs = attention_map_with(&m, ids, 1, 2, opts_for(&m, recipe, len)).unwrap();
        for i in 0..len {
            let row = &probs[i * len..(i + 1) * len];
            for (j, &p) in row.iter().enumerate() {
                let kept = j <= i && (i - j < 5 || j < sinks);
                assert_eq!(p > 0.0, kept, "{recipe}: query {i} key {j}: {p}");
            }
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{recipe}: row {i} sums to {sum}");
        }
    }
}

#[test]
fn stats_follow_a_slope_recipe_per_length_and_refuse_masks() {
    use alibi_explorer::eval::stats::{attention_stats, attention_stats_with};
    let m = model(Position::Alibi, 2, 5);
    let s = stream(200);
    let ctl = Control::default();
    let lengths = [16, 64];
    let ntk = attention_stats_with(
        &m,
        "tiny",
        &s,
        &lengths,
        None,
        Some(Recipe::Ntk),
        None,
        &ctl,
    )
    .unwrap();
    // ntk's slopes at 64 (a = 4): head h divided by 4^(h/3); the prior follows them.
    let own = m.config().default_slopes();
    let at64 = Recipe::Ntk.slopes(&own, 64, TRAIN_LEN);
    let plain = attention_stats(&m, "tiny", &s, &lengths, None, None, &ctl).unwrap();
    let direct = attention_stats(&m, "tiny", &s, &[64], Some(&at64), None, &ctl).unwrap();
    for h in 0..4 {
        let head = |r: &alibi_explorer::eval::stats::StatsReport, len| {
            r.heads
                .iter()
                .find(|x| x.layer == 1 && x.head == h)
                .unwrap()
                .points
                .iter()
                .find(|p| p.length == len)
                .unwrap()
                .clone()
        };
        // Up to train_len ntk is the plain model; at 64 it is the model with ntk's slopes.
        assert_eq!(head(&ntk, 16), head(&plain, 16));
        assert_eq!(head(&ntk, 64), head(&direct, 64));
    }
    let e = attention_stats_with(
        &m,
        "tiny",
        &s,
        &lengths,
        None,
        Some(Recipe::Window(8)),
        None,
        &ctl,
    )
    .unwrap_err();
    assert!(e.to_string().contains("eval --recipe window:8"), "{e}");
}

#[test]
fn recipes_apply_to_bloom_mpt_and_falcon_checkpoints() {
    use alibi_explorer::model::load::load_model;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cpu = alibi_explorer::model::device::ChosenDevice {
        device: Device::Cpu,
        note: "test".into(),
    };
    for name in ["bloom-h6", "mpt-h6", "falcon-h6"] {
        let m = load_model(&root.join(name), cpu.clone(), candle_core::DType::F32)
            .unwrap()
            .model;
        let vocab = m.config().vocab_size as u32;
        let s = Stream {
            ids: (0..80u32).map(|i| (i * 7 + i / 3) % vocab).collect(),
            bytes: None,
        };
        let len = 40;
        let plain = losses(&m, &s, len, &ForwardOptions::default());
        // A window as long as the input and ntk within train_len change nothing.
        close(
            &losses(&m, &s, len, &opts_for(&m, "window:40", len)),
            &plain,
            1e-6,
            name,
        );
        close(
            &losses(&m, &s, len, &opts_for(&m, "ntk", len)),
            &plain,
            1e-6,
            name,
        );
        // A real window changes the losses, the same way whole, in small query blocks and chunked.
        for r in ["window:8", "sinks:2+6"] {
            let whole = losses(&m, &s, len, &opts_for(&m, r, len));
            assert!(
                whole.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-4),
                "{name} {r} changed nothing"
            );
            let blocked = ForwardOptions {
                query_block: Some(3),
                ..opts_for(&m, r, len)
            };
            close(
                &losses(&m, &s, len, &blocked),
                &whole,
                2e-5,
                &format!("{name} {r} blocked"),
            );
            let mut p =
                Prefill::new(&m, &s.ids[..len], &s.ids[1..=len], 7, &opts_for(&m, r, len)).unwrap();
            let mut pieces = Vec::new();
            while !p.is_done() {
                if let Step::Scored { nll, .. } = p.step(&m).unwrap() {
                    pieces.extend(nll);
                }
            }
            close(&pieces, &whole, 2e-5, &format!("{name} {r} chunked"));
        }
    }
}
