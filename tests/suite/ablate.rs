//! `ablate` as a user runs it: the zero variant equals `eval --slopes` with that slope set to 0,
//! the baseline equals `eval`, knock-outs change perplexity, outputs are complete, bad input is a
//! one-line error.

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

/// A tiny random ALiBi model (no tokenizer) and a token-id file for it.
pub fn tiny(dir: &Path) -> (PathBuf, PathBuf) {
    let cfg = Config::ours(64, 24, 2, 6, 32, Position::Alibi, 16);
    let params = init_params(&cfg, 7, &Device::Cpu).unwrap();
    let model = dir.join("model");
    save_checkpoint(&model, &cfg, &params, DType::F32, None).unwrap();
    let ids: Vec<String> = (0..400u32)
        .map(|i| ((i * 37 + i / 3) % 64).to_string())
        .collect();
    let ids_file = dir.join("ids.txt");
    std::fs::write(&ids_file, ids.join(" ")).unwrap();
    (model, ids_file)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn zero_variant_equals_eval_with_that_slope_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = tiny(dir.path());
    let (m, ids) = (model.to_str().unwrap(), ids.to_str().unwrap());
    let out = dir.path().join("a.json");
    let csv = dir.path().join("a.csv");
    let o = run(&[
        "ablate",
        "--model",
        m,
        "--token-ids",
        ids,
        "--lengths",
        "16,64",
        "--knockout",
        "--json",
        out.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.lines().nth(2).unwrap().starts_with("baseline"),
        "{stdout}"
    );
    let doc = json(&out);
    let rows = doc["rows"].as_array().unwrap();
    // 6 heads x 3 variants, then 2 layers x 6 heads knocked out.
    assert_eq!(rows.len(), 6 * 3 + 2 * 6);
    assert_eq!(stdout.lines().count(), 3 + rows.len());
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 1 + 2 * (1 + rows.len()));
    let ppl = |v: &serde_json::Value, i: usize| v["points"][i]["ppl"].as_f64().unwrap();
    // The baseline is `eval` with the model's slopes.
    let e = dir.path().join("e.json");
    let base = run(&[
        "eval",
        "--model",
        m,
        "--token-ids",
        ids,
        "--lengths",
        "16,64",
        "--json",
        e.to_str().unwrap(),
    ]);
    assert!(base.status.success());
    let eval = json(&e);
    for i in 0..2 {
        let b = doc["baseline"][i]["ppl"].as_f64().unwrap();
        assert!(
            (b - ppl(&eval, i)).abs() <= 1e-9 * b,
            "{b} vs {}",
            ppl(&eval, i)
        );
    }
    let slopes = alibi_explorer::alibi::paper_slopes(6);
    for head in [0, 3, 5] {
        let mut s = slopes.clone();
        s[head] = 0.0;
        let f = dir.path().join(format!("s{head}.json"));
        alibi_explorer::alibi::file::write_slopes(&f, &s).unwrap();
        let o = run(&[
            "eval",
            "--model",
            m,
            "--token-ids",
            ids,
            "--lengths",
            "16,64",
            "--slopes",
            f.to_str().unwrap(),
            "--json",
            e.to_str().unwrap(),
        ]);
        assert!(o.status.success());
        let eval = json(&e);
        let row = rows
            .iter()
            .find(|r| r["variant"] == "zero" && r["head"] == head)
            .unwrap();
        assert_eq!(row["slope"], 0.0);
        for i in 0..2 {
            let (a, b) = (ppl(row, i), ppl(&eval, i));
            assert!((a - b).abs() <= 1e-9 * b, "head {head}: {a} vs {b}");
            let base = doc["baseline"][i]["ppl"].as_f64().unwrap();
            let d = row["points"][i]["delta_ppl"].as_f64().unwrap();
            assert!((d - (a - base)).abs() < 1e-9 * base);
        }
    }
    // Halving and doubling change the slope; every knock-out changes perplexity.
    let half = rows
        .iter()
        .find(|r| r["variant"] == "half" && r["head"] == 1)
        .unwrap();
    assert!((half["slope"].as_f64().unwrap() - slopes[1] / 2.0).abs() < 1e-12);
    for r in rows.iter().filter(|r| r["variant"] == "knockout") {
        assert!(r["layer"].is_u64());
        assert!(
            r["points"][1]["delta_ppl"].as_f64().unwrap().abs() > 0.0,
            "{r}"
        );
        assert!(r["points"][1]["delta_stderr"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bad_ablate_input_is_one_line_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let (model, ids) = tiny(dir.path());
    let (m, ids) = (model.to_str().unwrap(), ids.to_str().unwrap());
    let out = dir.path().join("x.json");
    let o_str = out.to_str().unwrap();
    let rotary = format!("{}/assets/models/rotary", env!("CARGO_MANIFEST_DIR"));
    for (args, needle) in [
        (
            vec![
                "--model",
                m,
                "--token-ids",
                ids,
                "--lengths",
                "16",
                "--variants",
                "triple",
            ],
            "triple",
        ),
        (
            vec!["--model", m, "--token-ids", ids, "--lengths", "4000"],
            "length 4000",
        ),
        (
            vec![
                "--model",
                m,
                "--token-ids",
                ids,
                "--lengths",
                "16",
                "--variants",
                "",
            ],
            "nothing to run",
        ),
        (
            vec!["--model", &rotary, "--text", ids, "--lengths", "16"],
            "rotary",
        ),
    ] {
        let o = run(&[&["ablate"][..], &args, &["--json", o_str]].concat());
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(
            e.contains(needle) && e.trim_end().lines().count() == 1,
            "{e}"
        );
        assert!(!out.exists());
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty());
    }
}
