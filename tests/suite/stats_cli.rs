//! `stats` and `attention` as a user runs them: the JSON in the shape, one CSV row per
//! (layer, head, length), the figures, `attention --json` equal to a direct capture, and every
//! bad-input path (one-line error, exit code 2, no partial files).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::load::ModelSource;
use alibi_explorer::model::transformer::ForwardOptions;
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROSE: &str = "The lighthouse keeper wrote the weather in a small book each evening. \
Wind from the west, rain at dusk, a ship far out that did not signal. ";
const LAYERS: usize = 2;
const HEADS: usize = 6;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A bad-input run: exit 2, one line on stderr that contains `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
}

/// A tiny model with a tokenizer (train_len 16), and a text of a few hundred tokens.
fn setup(dir: &Path, position: Position) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text = data.join("a.txt");
    std::fs::write(&text, PROSE.repeat(20)).unwrap();
    let tok = dir.join("tokenizer.json");
    alibi_explorer::train::tokenizer::train_tokenizer(&data, 300, &tok).unwrap();
    let cfg = Config::ours(300, 24, LAYERS, HEADS, 32, position, 16);
    let params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    let out = dir.join(format!("model-{position}"));
    save_checkpoint(&out, &cfg, &params, DType::F32, Some(&tok)).unwrap();
    (out, text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p).unwrap().starts_with(b"\x89PNG\r\n\x1a\n")
}

#[test]
fn stats_json_csv_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = setup(dir.path(), Position::Alibi);
    let (json, csv, svg) = (
        dir.path().join("s.json"),
        dir.path().join("s.csv"),
        dir.path().join("s.svg"),
    );
    let out = ok(&run(&[
        "stats",
        "--model",
        s(&model),
        "--text",
        s(&text),
        "--lengths",
        "8,32",
        "--device",
        "cpu",
        "--json",
        s(&json),
        "--csv",
        s(&csv),
        "--plot",
        s(&svg),
    ]));
    // Table: a header with units, one row per (layer, head, length), the extrapolation flagged.
    assert!(out.contains("mean dist") && out.contains("(tok)"), "{out}");
    let rows = out
        .lines()
        .filter(|l| {
            l.split_whitespace().count() >= 9 && l.trim_start().starts_with(char::is_numeric)
        })
        .count();
    assert_eq!(rows, LAYERS * HEADS * 2, "{out}");
    assert!(out.contains("(extrapolation)"));
    // JSON: the shape.
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["position"], "alibi");
    assert_eq!(v["train_len"], 16);
    assert_eq!(v["lengths"], serde_json::json!([8, 32]));
    assert!(v["model"].is_string());
    let heads = v["heads"].as_array().unwrap();
    assert_eq!(heads.len(), LAYERS * HEADS);
    for h in heads {
        assert!(h["layer"].is_u64() && h["head"].is_u64() && h["slope"].is_f64());
        let points = h["points"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        for p in points {
            for k in ["length", "queries"] {
                assert!(p[k].is_u64(), "{k}: {p}");
            }
            for k in [
                "mean_distance",
                "entropy",
                "entropy_norm",
                "mass90_distance",
            ] {
                assert!(p[k].is_f64(), "{k}: {p}");
            }
            // Sink mass counts queries from position 16 on: none in a window of 8.
            let short = p["length"].as_u64().unwrap() <= 16;
            assert_eq!(p["sink_mass"].is_null(), short, "{p}");
            assert!(short || p["sink_mass"].is_f64());
            for k in ["mean_distance", "entropy", "mass90_distance"] {
                assert!(p["prior"][k].is_f64(), "prior {k}: {p}");
            }
        }
    }
    let profile = v["distance_profile"].as_array().unwrap();
    assert_eq!(profile.len(), LAYERS * HEADS * 2);
    for d in profile {
        assert!(d["layer"].is_u64() && d["head"].is_u64() && d["length"].is_u64());
        for b in d["bins"].as_array().unwrap() {
            assert!(b["from"].is_u64() && b["to"].is_u64() && b["attention"].is_f64());
        }
    }
    let loss = v["position_loss"].as_array().unwrap();
    assert!(!loss.is_empty());
    for b in loss {
        assert!(b["from"].is_u64() && b["to"].is_u64() && b["tokens"].is_u64());
        assert!(b["nll"].is_f64());
    }
    // CSV: a header and one row per (layer, head, length), the same numbers as the JSON.
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        alibi_explorer::eval::stats_command::STATS_CSV_HEADER
    );
    assert_eq!(lines.len(), 1 + LAYERS * HEADS * 2);
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[..4], ["0", "0", &heads[0]["slope"].to_string(), "8"]);
    let md: f64 = first[5].parse().unwrap();
    assert!((md - heads[0]["points"][0]["mean_distance"].as_f64().unwrap()).abs() < 1e-12);
    // The figure.
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("how far each head looks"));
}

#[test]
fn stats_of_a_model_without_alibi_has_no_prior() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = setup(dir.path(), Position::Rotary);
    let json = dir.path().join("r.json");
    let png = dir.path().join("r.png");
    ok(&run(&[
        "stats",
        "--model",
        s(&model),
        "--text",
        s(&text),
        "--lengths",
        "16",
        "--max-windows",
        "2",
        "--device",
        "cpu",
        "--json",
        s(&json),
        "--plot",
        s(&png),
    ]));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["position"], "rotary");
    assert!(v["heads"][0]["slope"].is_null());
    assert!(v["heads"][0]["points"][0]["prior"].is_null());
    assert_eq!(v["heads"][0]["points"][0]["queries"], 32);
    assert!(is_png(&png));
}

#[test]
fn stats_bad_inputs_are_one_line_errors_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = setup(dir.path(), Position::Alibi);
    let (rotary, _) = setup(dir.path(), Position::Rotary);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let json = out.join("s.json");
    let stats = |model: &Path, extra: &[&str]| {
        let base = [
            "stats",
            "--model",
            s(model),
            "--text",
            s(&text),
            "--device",
            "cpu",
        ];
        run(&[&base[..], &["--json", s(&json)], extra].concat())
    };
    fails_with(&stats(&model, &["--lengths", "8,x"]), "--lengths");
    fails_with(&stats(&model, &["--lengths", "100000"]), "length 100000");
    fails_with(
        &stats(&model, &["--lengths", "8", "--max-windows", "0"]),
        "--max-windows",
    );
    fails_with(
        &stats(&model, &["--lengths", "8", "--batch", "0"]),
        "--batch",
    );
    fails_with(
        &stats(&model, &["--lengths", "8", "--plot", "x.txt"]),
        "--plot",
    );
    fails_with(
        &stats(&model, &["--lengths", "8", "--slopes", "nope"]),
        "nope",
    );
    fails_with(
        &stats(&rotary, &["--lengths", "8", "--slopes", "geometric"]),
        "ALiBi",
    );
    fails_with(
        &stats(
            &model,
            &["--lengths", "8", "--csv", "/nonexistent/dir/x.csv"],
        ),
        "cannot write",
    );
    fails_with(
        &run(&["stats", "--model", s(&model), "--lengths", "8"]),
        "--text",
    );
    fails_with(
        &run(&[
            "stats",
            "--model",
            "/nonexistent",
            "--text",
            s(&text),
            "--lengths",
            "8",
        ]),
        "/nonexistent",
    );
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "partial files: {left:?}");
}

#[test]
fn attention_json_equals_a_direct_capture() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = setup(dir.path(), Position::Alibi);
    let (json, png, svg) = (
        dir.path().join("a.json"),
        dir.path().join("a.png"),
        dir.path().join("a.svg"),
    );
    let len = 40;
    let out = ok(&run(&[
        "attention",
        "--model",
        s(&model),
        "--text",
        s(&text),
        "--length",
        "40",
        "--layer",
        "1",
        "--head",
        "4",
        "--device",
        "cpu",
        "--json",
        s(&json),
        "--png",
        s(&png),
        "--svg",
        s(&svg),
    ]));
    assert!(out.contains("mean distance"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (v["layer"].as_u64(), v["head"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(v["length"], len);
    let slopes = alibi_explorer::alibi::paper_slopes(HEADS);
    assert!((v["slope"].as_f64().unwrap() - slopes[4]).abs() < 1e-12);
    assert_eq!(v["tokens"].as_array().unwrap().len(), len);
    assert!(v["tokens"][0].is_string());
    // The same tokens through the library, captured directly.
    let loaded = ModelSource {
        path: model.clone(),
        device: "cpu".parse().unwrap(),
        dtype: DType::F32,
    }
    .load()
    .unwrap();
    let ids: Vec<u32> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let stream = alibi_explorer::text::tokenize(
        loaded.tokenizer.as_ref().unwrap(),
        &std::fs::read_to_string(&text).unwrap(),
    )
    .unwrap();
    assert_eq!(ids, stream.ids[..len]);
    let x = Tensor::from_vec(ids, (1, len), &Device::Cpu).unwrap();
    let opts = ForwardOptions {
        capture: vec![(1, 4)],
        ..Default::default()
    };
    let fwd = loaded.model.forward_hidden(&x, &opts).unwrap();
    let direct = fwd.captured[0]
        .probs
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let map = v["map"].as_array().unwrap();
    assert_eq!(map.len(), len);
    for (row, want) in map.iter().zip(&direct) {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), len);
        for (got, want) in row.iter().zip(want) {
            assert!((got.as_f64().unwrap() - f64::from(*want)).abs() <= 1e-6);
        }
    }
    assert!(is_png(&png));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("layer 1 head 4"));
}

#[test]
fn attention_bad_inputs_are_one_line_errors_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = setup(dir.path(), Position::Alibi);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let png = out.join("a.png");
    let att = |extra: &[&str]| {
        let base = [
            "attention",
            "--model",
            s(&model),
            "--text",
            s(&text),
            "--device",
            "cpu",
        ];
        run(&[&base[..], &["--png", s(&png)], extra].concat())
    };
    let lh = |l: &'static str, h: &'static str, len: &'static str| {
        ["--layer", l, "--head", h, "--length", len]
    };
    fails_with(&att(&lh("2", "0", "8")), "--layer 2 is out of range");
    fails_with(&att(&lh("0", "6", "8")), "--head 6 is out of range");
    fails_with(&att(&lh("0", "0", "0")), "--length must be at least 1");
    fails_with(&att(&lh("0", "0", "5000")), "too long");
    fails_with(&att(&lh("0", "0", "3000")), "needs that many");
    fails_with(
        &att(&[&lh("0", "0", "8")[..], &["--svg", "x.png"]].concat()),
        "--svg",
    );
    fails_with(
        &att(&[&lh("0", "0", "8")[..], &["--json", "/nonexistent/a.json"]].concat()),
        "cannot write",
    );
    fails_with(&att(&lh("0", "x", "8")), "--head");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "partial files: {left:?}");
}
