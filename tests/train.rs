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
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
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
