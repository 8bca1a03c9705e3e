//! `slopes fit` on a tiny model: the fitting loss goes down, only the slopes change, and the file
//! round-trips through `eval --slopes` and `slopes check`; bad input is a one-line error without
//! a file.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .output()
        .unwrap()
}

/// A tiny random ALiBi model (no tokenizer) and a token-id file with some structure to learn.
fn tiny(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = Config::ours(64, 24, 2, 6, 32, Position::Alibi, 16);
    let params = init_params(&cfg, 11, &Device::Cpu).unwrap();
    let model = dir.join("model");
    save_checkpoint(&model, &cfg, &params, DType::F32, None).unwrap();
    let ids: Vec<String> = (0..600u32)
        .map(|i| ((i * 37 + i / 3) % 64).to_string())
        .collect();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    (model, ids_file)
}

#[test]
fn fit_lowers_the_fitting_loss_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = tiny(dir.path());
    let (m, ids) = (model.to_str().unwrap(), ids.to_str().unwrap());
    let out = dir.path().join("fit.json");
    let o = run(&[
        "slopes",
        "fit",
        "--model",
        m,
        "--token-ids",
        ids,
        "--length",
        "32",
        "--steps",
        "25",
        "--lr",
        "0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("← train_len") && stdout.contains("wrote"),
        "{stdout}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (before, after) = (
        doc["fit_nll_before"].as_f64().unwrap(),
        doc["fit_nll_after"].as_f64().unwrap(),
    );
    assert!(after < before, "fitting loss {before} -> {after}");
    let slopes: Vec<f64> = doc["slopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(slopes.len(), 6);
    assert!(slopes.iter().all(|&m| m > 0.0));
    assert_ne!(slopes, alibi_explorer::alibi::paper_slopes(6));
    // Held-out perplexity at the training length (16) and at the fitting length (32).
    let lengths: Vec<u64> = doc["heldout_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["length"].as_u64().unwrap())
        .collect();
    assert_eq!(lengths, [16, 32]);
    for (b, a) in doc["heldout_before"]
        .as_array()
        .unwrap()
        .iter()
        .zip(doc["heldout_after"].as_array().unwrap())
    {
        let d = a["ppl"].as_f64().unwrap() - b["ppl"].as_f64().unwrap();
        assert!(
            (a["delta_ppl"].as_f64().unwrap() - d).abs() < 1e-9,
            "{a} {b}"
        );
        assert!(a["delta_stderr"].as_f64().unwrap() >= 0.0);
    }
    // The file loads with `eval --slopes` and evaluates with exactly those slopes.
    let e = dir.path().join("e.json");
    let o = run(&[
        "eval",
        "--model",
        m,
        "--token-ids",
        ids,
        "--lengths",
        "16,32",
        "--slopes",
        out.to_str().unwrap(),
        "--json",
        e.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&e).unwrap()).unwrap();
    assert_eq!(eval["slopes"], doc["slopes"]);
    // And `slopes check` reads it (fitted slopes follow no formula: exit 1, not 2).
    let o = run(&["slopes", "check", "--file", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn bad_fit_input_is_one_line_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = tiny(dir.path());
    let (m, ids) = (model.to_str().unwrap(), ids.to_str().unwrap());
    let out = dir.path().join("fit.json");
    let o_str = out.to_str().unwrap();
    let rotary = format!("{}/assets/models/rotary", env!("CARGO_MANIFEST_DIR"));
    for (args, needle) in [
        (
            vec![
                "--model",
                m,
                "--token-ids",
                ids,
                "--length",
                "32",
                "--holdout",
                "1.5",
            ],
            "--holdout",
        ),
        (
            vec![
                "--model",
                m,
                "--token-ids",
                ids,
                "--length",
                "32",
                "--lr",
                "0",
            ],
            "--lr",
        ),
        (
            vec![
                "--model",
                m,
                "--token-ids",
                ids,
                "--length",
                "32",
                "--steps",
                "0",
            ],
            "--steps",
        ),
        (
            vec!["--model", m, "--token-ids", ids, "--length", "590"],
            "length",
        ),
        (
            vec!["--model", m, "--token-ids", ids, "--length", "200"],
            "held-out part",
        ),
        (
            vec!["--model", &rotary, "--token-ids", ids, "--length", "32"],
            "rotary",
        ),
        (vec!["--model", m, "--token-ids", ids], "--length"),
    ] {
        let o = run(&[&["slopes", "fit"][..], &args, &["--out", o_str]].concat());
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains(needle) && e.trim_end().lines().count() == 1,
            "{needle}: {e}"
        );
        assert!(!out.exists());
    }
}
