//! The TUI's recipe and KL curves: the worker scores a recipe on exactly the windows the main
//! curve's point rests on (so at a refinement level's length it equals `eval`'s nonoverlap with
//! the recipe), skips lengths where the recipe changes nothing, gives an identical compare model
//! a KL divergence of 0; the app adds, shows and clears recipe curves and cycles `y` to KL.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::recipe::Recipe;
use alibi_explorer::eval::recipe::{Modification, evaluate_modified};
use alibi_explorer::eval::{Control, Protocol, Stats, SweepAccumulator};
use alibi_explorer::model::config::Config;
use alibi_explorer::model::device::ChosenDevice;
use alibi_explorer::model::init::random_model;
use alibi_explorer::model::load::LoadedModel;
use alibi_explorer::model::{Position, Transformer};
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, Metric, ModelInfo, variant_lengths};
use alibi_explorer::tui::event::Event;
use alibi_explorer::tui::keymap::Action;
use alibi_explorer::tui::messages::{VariantJob, VariantTarget, variant_starts};
use alibi_explorer::tui::worker::{Job, ModelSlot, WorkerMsg, refine_plan, spawn};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const VOCAB: usize = 61;
const TRAIN_LEN: usize = 32;
const LMAX: usize = 256;
const N: usize = 1025;

fn model(position: Position) -> Transformer {
    random_model(
        &Config::ours(VOCAB, 32, 2, 4, 64, position, TRAIN_LEN),
        3,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

fn stream() -> Stream {
    Stream {
        ids: (0..N as u32)
            .map(|i| (i * 7 + i / 5) % VOCAB as u32)
            .collect(),
        bytes: None,
    }
}

fn slot(position: Position) -> ModelSlot {
    ModelSlot {
        loaded: LoadedModel {
            model: model(position),
            tokenizer: None,
            folder: ".".into(),
            name: "tiny".into(),
            device: ChosenDevice {
                device: candle_core::Device::Cpu,
                note: "test".into(),
            },
        },
        stream: stream(),
    }
}

fn run(slots: Vec<ModelSlot>, job: VariantJob) -> Vec<WorkerMsg> {
    let (tx, rx): (_, Receiver<Event>) = std::sync::mpsc::channel();
    let jobs = spawn(slots, tx);
    jobs.send(Job::Variant(Box::new(job))).unwrap();
    let mut out = Vec::new();
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(3)) {
        match ev {
            Event::Worker(WorkerMsg::Error { msg, .. }) => panic!("worker error: {msg}"),
            Event::Worker(m @ WorkerMsg::Variant { .. }) => out.push(m),
            _ => {}
        }
    }
    out
}

fn job(target: VariantTarget, lengths: Vec<usize>) -> VariantJob {
    VariantJob {
        generation: 1,
        target,
        slopes: None,
        lengths,
        lmax: LMAX,
        min_len: 8,
        done: 0,
    }
}

#[test]
fn variant_starts_are_the_windows_the_main_curve_rests_on() {
    // Losses that depend on the token only: then a point is a plain mean over its windows, and
    // the accumulator's point at each length must equal the mean over `variant_starts`.
    let s = stream();
    let loss = |i: usize| ((i * 13) % 17) as f32 / 4.0;
    let mut acc = SweepAccumulator::new(LMAX);
    for w in 0..s.windows(LMAX) {
        let start = w * LMAX;
        acc.add(
            &s,
            start,
            &(0..LMAX).map(|p| loss(start + p)).collect::<Vec<_>>(),
        );
    }
    for (len, start) in refine_plan(N, LMAX, 8) {
        acc.add(
            &s,
            start,
            &(0..len).map(|p| loss(start + p)).collect::<Vec<_>>(),
        );
    }
    for len in [8, 9, 16, 31, 32, 33, 100, 128, 129, 200, 256] {
        let mut st = Stats::default();
        for start in variant_starts(N, len, LMAX, 8) {
            for p in 0..len {
                st.add(loss(start + p), None);
            }
        }
        let (want, got) = (acc.point(len), st.point(len));
        assert_eq!(want.tokens, got.tokens, "length {len}");
        assert!((want.nll - got.nll).abs() < 1e-9, "length {len}");
    }
}

#[test]
fn a_recipe_curve_equals_eval_nonoverlap_and_skips_lengths_it_does_not_change() {
    for recipe in [Recipe::InterpDynamic, Recipe::Ntk, Recipe::Window(16)] {
        let lengths = vec![16, 32, 64, 128];
        let msgs = run(
            vec![slot(Position::Alibi)],
            job(VariantTarget::Recipe { index: 0, recipe }, lengths),
        );
        let scored: Vec<usize> = msgs
            .iter()
            .map(|m| match m {
                WorkerMsg::Variant { len, .. } => *len,
                _ => 0,
            })
            .collect();
        let want: Vec<usize> = if recipe == Recipe::Window(16) {
            vec![32, 64, 128]
        } else {
            vec![64, 128]
        };
        assert_eq!(scored, want, "{recipe}");
        let m = model(Position::Alibi);
        let modification = Modification {
            slopes: None,
            recipe: Some(recipe),
        };
        for msg in msgs {
            let WorkerMsg::Variant { len, point, kl, .. } = msg else {
                unreachable!()
            };
            // 64 and 128 are refinement levels: their windows tile the text, as nonoverlap's do.
            let e = evaluate_modified(
                &m,
                &stream(),
                &[len],
                Protocol::NonOverlap,
                &modification,
                &Control::default(),
            )
            .unwrap();
            let (p, q) = (point.unwrap(), e.points[0]);
            assert_eq!(p.tokens, q.tokens, "{recipe} at {len}");
            assert!(
                (p.nll - q.nll).abs() < 1e-5,
                "{recipe} at {len}: {} vs {}",
                p.nll,
                q.nll
            );
            assert!(kl.tokens > 0 && kl.mean > 0.0, "{recipe} at {len}: {kl:?}");
        }
    }
}

#[test]
fn an_identical_compare_model_has_no_kl_divergence_and_edited_slopes_have_some() {
    let msgs = run(
        vec![slot(Position::Alibi), slot(Position::Alibi)],
        job(VariantTarget::Compare(1), vec![8, 64]),
    );
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        let WorkerMsg::Variant { point, kl, .. } = m else {
            unreachable!()
        };
        assert!(point.is_none());
        assert_eq!((kl.mean, kl.top1_agreement, kl.delta_p), (0.0, 1.0, 0.0));
    }
    let mut j = job(VariantTarget::Main, vec![64]);
    j.slopes = Some(vec![0.0; 4]);
    let msgs = run(vec![slot(Position::Alibi)], j);
    let WorkerMsg::Variant { kl, .. } = &msgs[0] else {
        unreachable!()
    };
    // A random model's distributions are near uniform: the divergence is small but not 0.
    assert!(kl.mean > 0.0 && kl.tokens == 1024, "{kl:?}");
}

fn info(position: Position) -> ModelInfo {
    ModelInfo {
        name: "tiny".into(),
        arch: "ours".into(),
        position,
        train_len: TRAIN_LEN,
        n_layers: 2,
        n_heads: 4,
        device: "cpu".into(),
        device_note: String::new(),
        dtype: "f32".into(),
        slopes: (position == Position::Alibi).then(|| alibi_explorer::alibi::paper_slopes(4)),
    }
}

fn app(position: Position) -> App {
    let s = stream();
    App::new(
        info(position),
        Vec::new(),
        vec![s],
        (0..N).map(|i| format!("t{i}")).collect(),
        LMAX,
        "slopes.json".into(),
    )
}

fn variant_jobs(fx: &[alibi_explorer::tui::app::Effect]) -> Vec<VariantJob> {
    fx.iter()
        .filter_map(|e| match e {
            alibi_explorer::tui::app::Effect::Job(Job::Variant(j)) => Some((**j).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn c_adds_recipes_in_order_and_capital_c_clears_them() {
    let mut a = app(Position::Alibi);
    let fx = a.update(Action::NextRecipe);
    let jobs = variant_jobs(&fx);
    // The main curve's KL job is empty (own slopes); the recipe's lengths are those it changes.
    assert_eq!(jobs.len(), 2);
    assert!(jobs[0].lengths.is_empty());
    assert_eq!(
        jobs[1].target,
        VariantTarget::Recipe {
            index: 0,
            recipe: Recipe::Interp(2.0)
        }
    );
    assert_eq!(jobs[1].lengths, variant_lengths(&a.grid, TRAIN_LEN));
    let fx = a.update(Action::NextRecipe);
    let jobs = variant_jobs(&fx);
    let dynamic = &jobs[2];
    assert!(
        dynamic.lengths.iter().all(|&l| l > TRAIN_LEN),
        "{:?}",
        dynamic.lengths
    );
    // Up to train_len the dynamic recipe's curve is the main curve's points.
    let generation = a.sweep_gen;
    a.on_worker(WorkerMsg::Window {
        generation,
        curve: 0,
        start: 0,
        nll: vec![2.0; LMAX],
        done: 1,
        total: 4,
        refine: false,
    });
    let pts = a.recipe_points(1);
    assert!(
        !pts.is_empty()
            && pts
                .iter()
                .all(|p| p.length <= TRAIN_LEN && (p.nll - 2.0).abs() < 1e-9)
    );
    for _ in 0..3 {
        a.update(Action::NextRecipe);
    }
    assert_eq!(a.recipes.len(), 5);
    a.update(Action::NextRecipe);
    assert!(a.message.contains("every recipe preset"), "{}", a.message);
    let fx = a.update(Action::ClearRecipes);
    assert!(a.recipes.is_empty());
    // The empty main job supersedes the recipes' stale jobs in the worker.
    assert_eq!(variant_jobs(&fx).len(), 1);
}

#[test]
fn non_alibi_models_get_only_mask_recipes() {
    let mut a = app(Position::Sinusoidal);
    a.update(Action::NextRecipe);
    assert_eq!(a.recipes[0].recipe, Recipe::Window(TRAIN_LEN));
    a.add_recipe(Recipe::Ntk);
    assert!(a.error.as_deref().unwrap().contains("changes ALiBi slopes"));
    assert_eq!(a.recipes.len(), 1);
}

#[test]
fn y_cycles_to_kl_and_stale_kl_is_dropped() {
    let mut a = app(Position::Alibi);
    assert_eq!(a.metric, Metric::TokenPpl);
    a.update(Action::ToggleMetric);
    a.update(Action::ToggleMetric);
    assert_eq!(a.metric, Metric::Kl);
    a.update(Action::ToggleMetric);
    assert_eq!(a.metric, Metric::TokenPpl);
    // The first preset (geometric) is the model's own; the second (equal) is an edit.
    a.update(Action::NextPreset);
    assert!(!a.slopes_edited());
    a.update(Action::NextPreset);
    assert!(a.slopes_edited());
    let stale = a.variant_gen - 1;
    let kl = alibi_explorer::eval::KlStats {
        mean: 0.5,
        stderr: 0.01,
        p99: 2.0,
        top1_agreement: 0.8,
        delta_p: -0.01,
        tokens: 100,
    };
    a.on_worker(WorkerMsg::Variant {
        generation: stale,
        target: VariantTarget::Main,
        len: 64,
        point: None,
        kl,
        progress: (1, 1),
    });
    assert!(a.curves[0].kl.is_empty());
    a.on_worker(WorkerMsg::Variant {
        generation: a.variant_gen,
        target: VariantTarget::Main,
        len: 64,
        point: None,
        kl,
        progress: (1, 1),
    });
    assert_eq!(a.curves[0].kl.get(&64), Some(&kl));
}

#[test]
fn a_variant_curve_and_the_sensitivity_view_both_finish() {
    // The sensitivity job gives way to more urgent jobs only; a variant curve (least urgent)
    // waiting beside it must not make the two yield to each other forever.
    use alibi_explorer::tui::worker::SensitivityJob;
    let (tx, rx): (_, Receiver<Event>) = std::sync::mpsc::channel();
    let jobs = spawn(vec![slot(Position::Alibi), slot(Position::Alibi)], tx);
    jobs.send(Job::Variant(Box::new(job(
        VariantTarget::Compare(1),
        vec![8, 16, 32, 64, 128],
    ))))
    .unwrap();
    jobs.send(Job::Sensitivity(Box::new(SensitivityJob {
        generation: 1,
        slopes: alibi_explorer::alibi::paper_slopes(4),
        lengths: vec![32, 64],
        done: 0,
        baseline: None,
    })))
    .unwrap();
    let (mut variants, mut runs) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (variants < 5 || runs < 12) && std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Worker(WorkerMsg::Variant { .. })) => variants += 1,
            Ok(Event::Worker(WorkerMsg::Sensitivity { head: Some(_), .. })) => runs += 1,
            Ok(Event::Worker(WorkerMsg::Error { msg, .. })) => panic!("worker error: {msg}"),
            _ => {}
        }
    }
    // 4 heads x 3 variants of the slope.
    assert_eq!((variants, runs), (5, 12));
}
