//! Training tests on a tiny corpus written by the test: gradients reach every parameter,
//! the loss falls, and a resumed run ends exactly where an uninterrupted one does.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::transformer::{ForwardOptions, slopes_tensor};
use alibi_explorer::train::optim::AdamWConfig;
use alibi_explorer::train::{TrainSettings, run, tokenizer::train_tokenizer};
use candle_core::{Device, Tensor, Var};
use std::path::Path;

const TEXT: &str = "Once upon a time a small fox lived near a river. Every morning the fox walked to the \
water and counted the stones. One day the stones were gone, and the fox asked the heron where they went. ";

fn corpus(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let train = dir.join("train");
    let valid = dir.join("valid");
    std::fs::create_dir_all(&train).unwrap();
    std::fs::create_dir_all(&valid).unwrap();
    std::fs::write(train.join("a.txt"), TEXT.repeat(30)).unwrap();
    std::fs::write(valid.join("b.txt"), TEXT.repeat(4)).unwrap();
    let tok = dir.join("tokenizer.json");
    train_tokenizer(&train, 300, &tok).unwrap();
    (train, valid, tok)
}

fn settings(dir: &Path, position: Position, steps: usize, out: &str) -> TrainSettings {
    let (data, valid, tokenizer) = (
        dir.join("train"),
        dir.join("valid"),
        dir.join("tokenizer.json"),
    );
    TrainSettings {
        data,
        valid,
        tokenizer,
        model: Config::ours(300, 16, 2, 4, 32, position, 16),
        learn_slopes: position == Position::Alibi,
        steps,
        batch: 4,
        adamw: AdamWConfig {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        warmup: 2,
        clip: 1.0,
        seed: 7,
        valid_every: 3,
        checkpoint_every: 2,
        out: dir.join(out),
        save_dtype: "f32".to_string(),
        trainer: alibi_explorer::train::TrainerKind::Auto,
        // The copy test and the copy mix are on, so the exact-resume tests cover them too.
        copy_span: 6,
        copy_samples: 4,
        repeat_frac: 0.25,
        repeat_span: (2, 8),
        repeat_kind: alibi_explorer::eval::reach::SpanKind::Text,
        init: None,
    }
}

fn weights(dir: &Path) -> Vec<f32> {
    let t = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<_> = t.keys().cloned().collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| t[n].flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn every_parameter_and_the_slopes_receive_gradient() {
    for position in Position::ALL {
        let cfg = Config::ours(50, 16, 2, 4, 32, position, 8);
        let params = alibi_explorer::model::init::init_params(&cfg, 3, &Device::Cpu).unwrap();
        let vars: Vec<(String, Var)> = params
            .into_iter()
            .map(|(k, t)| (k, Var::from_tensor(&t).unwrap()))
            .collect();
        let ts = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let vb = candle_nn::VarBuilder::from_tensors(ts, candle_core::DType::F32, &Device::Cpu);
        let model = alibi_explorer::model::Transformer::new(&cfg, vb).unwrap();
        let slopes =
            Var::from_tensor(&slopes_tensor(&[0.5, 0.25, 0.125, 0.0625], &Device::Cpu).unwrap())
                .unwrap();
        let x = Tensor::from_vec(
            (0..16u32).map(|i| i * 3 % 50).collect(),
            (2, 8),
            &Device::Cpu,
        )
        .unwrap();
        let y = Tensor::from_vec(
            (0..16u32).map(|i| (i * 7 + 1) % 50).collect(),
            (2, 8),
            &Device::Cpu,
        )
        .unwrap();
        let opts = ForwardOptions {
            slopes: Some(slopes.as_tensor().clone()),
            train: true,
            ..Default::default()
        };
        let out = model.forward_hidden(&x, &opts).unwrap();
        let loss = model.nll(&out.hidden, &y).unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in &vars {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("{position}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{position}: zero gradient for {name}");
        }
        if position == Position::Alibi {
            let g = grads.get(&slopes).expect("slopes get a gradient");
            assert!(
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            );
        }
    }
}

#[test]
fn training_writes_its_record_and_learns_slopes() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let s = settings(dir.path(), Position::Alibi, 6, "full");
    run(&s, false, &Device::Cpu).unwrap();
    let log = std::fs::read_to_string(s.out.join("loss.csv")).unwrap();
    assert!(log.starts_with("step,lr,train_loss,valid_loss"), "{log}");
    assert!(log.lines().count() >= 3, "{log}");
    let record = std::fs::read_to_string(s.out.join("TRAINING.md")).unwrap();
    assert!(
        record.contains("alibi-explorer train")
            && record.contains("--position alibi --train-len 16")
    );
    assert!(record.contains("--learn-slopes") && record.contains("| a.txt |"));
    assert!(
        record.contains("logical cores")
            && record.contains("tokens/s")
            && record.contains("1 process (1 + resumes)")
            && record.contains("## Resuming"),
        "{record}"
    );
    let cfg: Config =
        serde_json::from_str(&std::fs::read_to_string(s.out.join("config.json")).unwrap()).unwrap();
    let learned = cfg.slopes.clone().unwrap();
    assert_ne!(
        learned,
        alibi_explorer::alibi::paper_slopes(4),
        "--learn-slopes changed nothing"
    );
    // The saved folder loads and runs.
    let cpu = alibi_explorer::model::device::ChosenDevice {
        device: Device::Cpu,
        note: String::new(),
    };
    let loaded =
        alibi_explorer::model::load::load_model(&s.out, cpu, candle_core::DType::F32).unwrap();
    assert!(loaded.tokenizer.is_some());
    assert_eq!(loaded.model.config().slopes, Some(learned));
    // Starting again over an existing checkpoint without --resume is refused.
    let err = run(&s, false, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let s = settings(dir.path(), Position::Rotary, 6, "run");
    run(&s, false, &Device::Cpu).unwrap();
    let straight = weights(&s.out);
    // The same schedule, stopped after 4 steps (as an interrupted run would be), then resumed.
    let s2 = settings(dir.path(), Position::Rotary, 6, "run2");
    alibi_explorer::train::run_until(&s2, false, &Device::Cpu, Some(4)).unwrap();
    assert!(
        !s2.out.join("model.safetensors").exists(),
        "stopped run must not write final weights"
    );
    run(&s2, true, &Device::Cpu).unwrap();
    assert_eq!(
        straight,
        weights(&s2.out),
        "resumed run differs from the uninterrupted one"
    );
    // A corrupt checkpoint is a clear error.
    std::fs::write(s2.out.join("checkpoint/state.safetensors"), b"garbage").unwrap();
    let err = run(&s2, true, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn loss_falls_on_repetitive_text() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let mut s = settings(dir.path(), Position::Sinusoidal, 30, "fall");
    s.valid_every = 30;
    run(&s, false, &Device::Cpu).unwrap();
    let log = std::fs::read_to_string(s.out.join("loss.csv")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(losses.last().unwrap() < &(losses[0] - 0.5), "{losses:?}");
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let mut s = settings(dir.path(), Position::Alibi, 2, "bad");
    s.data = dir.path().join("nope");
    assert!(
        run(&s, false, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    s.data = empty;
    assert!(
        run(&s, false, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("no .txt files")
    );
    // A training length the memory cannot hold is refused before any work: on the candle path
    // (len x len tensors per layer) already at a length the fast trainer holds, which needs a
    // length and batch whose activations alone do not fit.
    let mut s = settings(dir.path(), Position::Alibi, 2, "huge");
    s.model.train_len = 1 << 20;
    s.trainer = alibi_explorer::train::TrainerKind::Candle;
    let err = run(&s, false, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("--train-len"), "{err}");
    let mut s = settings(dir.path(), Position::Alibi, 2, "huge-fast");
    s.model.train_len = 1 << 16;
    s.batch = 1 << 14;
    let err = run(&s, false, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("--train-len"), "{err}");
    let mut s = settings(dir.path(), Position::Alibi, 2, "bad2");
    s.model.vocab_size = 100;
    let err = run(&s, false, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("tokenizer") && err.contains("vocab"), "{err}");
}

/// The loss log without its timing columns (tokens/s and elapsed time), line by line.
fn logged_losses(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("loss.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            // Every column but tokens_per_s and elapsed_s (the 6th and 7th).
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 10, "{l}");
            [&f[..5], &f[7..]].concat().join(",")
        })
        .collect()
}

#[test]
fn a_run_interrupted_twice_logs_exactly_what_an_uninterrupted_run_logs() {
    use alibi_explorer::train::TrainerKind;
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    for trainer in [TrainerKind::Fast, TrainerKind::Candle] {
        let mut s = settings(dir.path(), Position::Alibi, 25, &format!("{trainer:?}-a"));
        s.trainer = trainer;
        s.valid_every = 5;
        s.checkpoint_every = 100;
        run(&s, false, &Device::Cpu).unwrap();
        let mut s2 = s.clone();
        s2.out = dir.path().join(format!("{trainer:?}-b"));
        // Stopped inside logging windows (every 10 steps) and between checkpoints.
        alibi_explorer::train::run_until(&s2, false, &Device::Cpu, Some(7)).unwrap();
        alibi_explorer::train::run_until(&s2, true, &Device::Cpu, Some(16)).unwrap();
        // A process killed without saving (SIGKILL) may have logged steps past its checkpoint:
        // the resumed run drops them and logs those steps again.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(s2.out.join("loss.csv"))
            .unwrap();
        std::io::Write::write_all(&mut log, b"20,1e-3,9.9,,9.9,1,1\n").unwrap();
        run(&s2, true, &Device::Cpu).unwrap();
        let (a, b) = (logged_losses(&s.out), logged_losses(&s2.out));
        assert!(a.len() >= 6, "{a:?}");
        assert_eq!(a, b, "{trainer:?}: the resumed run's log differs");
        assert_eq!(weights(&s.out), weights(&s2.out), "{trainer:?}");
    }
}

#[test]
fn the_fast_and_candle_trainers_train_alike() {
    use alibi_explorer::train::TrainerKind;
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    for position in Position::ALL {
        let losses = |trainer: TrainerKind| -> Vec<f64> {
            let mut s = settings(dir.path(), position, 10, &format!("{position}-{trainer:?}"));
            s.trainer = trainer;
            run(&s, false, &Device::Cpu).unwrap();
            std::fs::read_to_string(s.out.join("loss.csv"))
                .unwrap()
                .lines()
                .skip(1)
                .flat_map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    [f[2].parse::<f64>().unwrap(), f[3].parse().unwrap_or(0.0)]
                })
                .collect()
        };
        let (fast, candle) = (losses(TrainerKind::Fast), losses(TrainerKind::Candle));
        assert_eq!(fast.len(), candle.len());
        for (a, b) in fast.iter().zip(&candle) {
            assert!(
                (a - b).abs() < 2e-3 * b.abs().max(1.0),
                "{position}: {fast:?} vs {candle:?}"
            );
        }
    }
}

#[test]
fn sigterm_saves_a_checkpoint_and_resume_continues_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let (data, valid, tok) = corpus(dir.path());
    let bin = env!("CARGO_BIN_EXE_alibi-explorer");
    let train = |out: &str, resume: bool| {
        let mut c = std::process::Command::new(bin);
        c.args([
            "train",
            "--position",
            "alibi",
            "--learn-slopes",
            "--train-len",
            "16",
        ])
        .args([
            "--d-model",
            "16",
            "--layers",
            "2",
            "--heads",
            "4",
            "--d-ff",
            "32",
        ])
        .args(["--vocab-size", "300", "--steps", "3000", "--batch", "4"])
        .args([
            "--valid-every",
            "500",
            "--checkpoint-every",
            "10000",
            "--save-dtype",
            "f32",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--valid")
        .arg(&valid)
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--out")
        .arg(dir.path().join(out))
        .stderr(std::process::Stdio::piped());
        if resume {
            c.arg("--resume");
        }
        c
    };
    let status = train("straight", false).status().unwrap();
    assert!(status.success());
    let log = dir.path().join("stopped/loss.csv");
    let child = train("stopped", false).spawn().unwrap();
    // Stop it once it has logged a few lines, wherever it is in its logging window.
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |l| l.lines().count()) < 4 {
        assert!(started.elapsed().as_secs() < 60, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // It finished before the signal arrived: nothing to resume (a very fast machine).
        return;
    }
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!dir.path().join("stopped/model.safetensors").exists());
    let out = train("stopped", true).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        logged_losses(&dir.path().join("straight")),
        logged_losses(&dir.path().join("stopped"))
    );
}

/// The validation losses a run logged, in order.
fn valid_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("loss.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3).and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn init_starts_from_a_finished_model_with_its_slopes_and_a_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    // The base learns its slopes, which live in config.json, not among the weights.
    let base = settings(dir.path(), Position::Alibi, 9, "base");
    run(&base, false, &Device::Cpu).unwrap();
    let base_valid = *valid_losses(&base.out).last().unwrap();
    let mut s = settings(dir.path(), Position::Alibi, 1, "cont");
    s.learn_slopes = false;
    s.init = Some(base.out.clone());
    s.adamw.lr = 1e-12;
    s.warmup = 0;
    run(&s, false, &Device::Cpu).unwrap();
    let cont = valid_losses(&s.out);
    assert!(
        (cont[0] - base_valid).abs() < 1e-4,
        "{cont:?} vs {base_valid}"
    );
    let slopes = |d: &Path| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(d.join("config.json")).unwrap(),
        )
        .unwrap()["slopes"]
            .clone()
    };
    assert!(slopes(&base.out).is_array());
    assert_eq!(
        slopes(&s.out),
        slopes(&base.out),
        "the starting model's slopes carry over"
    );
    let record = std::fs::read_to_string(s.out.join("TRAINING.md")).unwrap();
    assert!(
        record.contains("--init") && record.contains("Started from the weights"),
        "{record}"
    );
    // A fresh run of the same step is far from the trained base.
    let mut fresh = settings(dir.path(), Position::Alibi, 1, "fresh");
    fresh.learn_slopes = false;
    run(&fresh, false, &Device::Cpu).unwrap();
    let fresh_valid = valid_losses(&fresh.out)[0];
    assert!(
        fresh_valid > base_valid + 0.1,
        "{fresh_valid} vs {base_valid}"
    );
    // Another shape or scheme is refused by name, before any output.
    for (model, what) in [
        (
            Config::ours(300, 16, 2, 2, 32, Position::Alibi, 16),
            "2 heads",
        ),
        (
            Config::ours(300, 16, 2, 4, 32, Position::Rotary, 16),
            "rotary",
        ),
    ] {
        let mut bad = settings(dir.path(), Position::Alibi, 2, "bad");
        bad.model = model;
        bad.learn_slopes = false;
        bad.init = Some(base.out.clone());
        let e = format!("{:#}", run(&bad, false, &Device::Cpu).unwrap_err());
        assert!(e.contains("--init") && e.contains(what), "{e}");
        assert!(!dir.path().join("bad/loss.csv").exists());
    }
    let mut missing = settings(dir.path(), Position::Alibi, 2, "bad");
    missing.init = Some(dir.path().join("nowhere"));
    let e = format!("{:#}", run(&missing, false, &Device::Cpu).unwrap_err());
    assert!(e.contains("--init") && e.contains("nowhere"), "{e}");
}

#[test]
fn a_resume_with_another_copy_mix_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let s = settings(dir.path(), Position::Alibi, 8, "mix");
    alibi_explorer::train::run_until(&s, false, &Device::Cpu, Some(4)).unwrap();
    let mut other = s.clone();
    other.repeat_frac = 0.5;
    other.seed = 8;
    let e = format!("{:#}", run(&other, true, &Device::Cpu).unwrap_err());
    assert!(e.contains("--repeat-frac") && e.contains("--seed"), "{e}");
    let mut kind = s.clone();
    kind.repeat_kind = alibi_explorer::eval::reach::SpanKind::Random;
    let e = format!("{:#}", run(&kind, true, &Device::Cpu).unwrap_err());
    assert!(e.contains("--repeat-kind") && !e.contains("--seed"), "{e}");
    // The copy test is a measurement, not the data: changing it resumes.
    let mut measured = s.clone();
    measured.copy_samples = 2;
    run(&measured, true, &Device::Cpu).unwrap();
    let log = std::fs::read_to_string(s.out.join("loss.csv")).unwrap();
    assert!(
        log.lines()
            .next()
            .unwrap()
            .ends_with("copy_gain,induction,tokens")
    );
    // Every validation line has a copy gain and an induction score.
    let valid_lines: Vec<&str> = log
        .lines()
        .skip(1)
        .filter(|l| !l.split(',').nth(3).unwrap().is_empty())
        .collect();
    assert!(!valid_lines.is_empty());
    for l in valid_lines {
        let f: Vec<&str> = l.split(',').collect();
        let (gain, ind): (f64, f64) = (f[7].parse().unwrap(), f[8].parse().unwrap());
        assert!(gain.is_finite() && (0.0..=1.0).contains(&ind), "{l}");
    }
}

#[test]
fn a_copy_span_longer_than_half_the_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let mut s = settings(dir.path(), Position::Alibi, 2, "long");
    s.copy_span = 12;
    let e = format!("{:#}", run(&s, false, &Device::Cpu).unwrap_err());
    assert!(e.contains("--copy-span 12") && e.contains("hint"), "{e}");
}

#[test]
fn out_folders_with_other_work_or_another_writer_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    // A folder holding a model (any file a run did not write before its first checkpoint).
    let s = settings(dir.path(), Position::Alibi, 2, "model");
    std::fs::create_dir_all(&s.out).unwrap();
    std::fs::write(s.out.join("config.json"), "{}").unwrap();
    let e = format!("{:#}", run(&s, false, &Device::Cpu).unwrap_err());
    assert!(
        e.contains("already holds 1 file ('config.json')") && e.contains("hint"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(s.out.join("config.json")).unwrap(),
        "{}"
    );
    // A folder another live process writes: refused naming it, resume or not.
    let s = settings(dir.path(), Position::Alibi, 4, "busy");
    alibi_explorer::train::run_until(&s, false, &Device::Cpu, Some(2)).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(s.out.join("write.lock"), format!("{}\n", child.id())).unwrap();
    let e = format!("{:#}", run(&s, true, &Device::Cpu).unwrap_err());
    assert!(e.contains(&format!("pid {}", child.id())), "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
    // Its process gone, the lock is stale: the resume goes on and removes it at the end.
    run(&s, true, &Device::Cpu).unwrap();
    assert!(!s.out.join("write.lock").exists());
    // What a run leaves before its first checkpoint does not block a fresh start.
    let s = settings(dir.path(), Position::Alibi, 2, "early");
    std::fs::create_dir_all(&s.out).unwrap();
    std::fs::write(s.out.join("loss.csv"), "step\n").unwrap();
    run(&s, false, &Device::Cpu).unwrap();
}

#[test]
fn a_resume_with_another_schedule_is_refused_naming_each_setting() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let s = settings(dir.path(), Position::Alibi, 8, "sched");
    alibi_explorer::train::run_until(&s, false, &Device::Cpu, Some(4)).unwrap();
    let mut other = s.clone();
    other.steps = 2;
    other.adamw.lr = 0.5;
    other.warmup = 9;
    let e = format!("{:#}", run(&other, true, &Device::Cpu).unwrap_err());
    for name in ["--steps", "--lr", "--warmup"] {
        assert!(e.contains(name), "{name}: {e}");
    }
    assert!(!e.contains("--seed"), "{e}");
}
