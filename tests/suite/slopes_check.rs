//! `slopes check` as a user runs it (exit 0 on a match, 1 on a fault, 2 on bad input; the old
//! `slopes --heads N` form still works), and its verdict in the TUI's Slopes panel.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::check::{CheckOptions, Fault, Formula, Verdict, check, infer_max_bias};
use alibi_explorer::alibi::{bloom_slopes, mpt_slopes, paper_slopes};
use alibi_explorer::model::Position;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, ModelInfo};
use alibi_explorer::tui::keymap::Action;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .output()
        .unwrap()
}

fn values(v: &[f64]) -> String {
    v.iter()
        .map(|m| format!("{m:e}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `slopes check --values .. --json`: the exit code and the JSON.
fn check_json(v: &[f64], extra: &[&str]) -> (i32, serde_json::Value) {
    let vals = values(v);
    let o = run(&[&["slopes", "check", "--json", "--values", &vals][..], extra].concat());
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), doc)
}

#[test]
fn formulas_pass_and_faults_are_named_with_exit_1() {
    for n in [1, 3, 8, 12, 40, 128] {
        let (code, doc) = check_json(&paper_slopes(n), &[]);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["formula"], "geometric");
    }
    for b in [4.0, 12.0] {
        let (code, doc) = check_json(&mpt_slopes(12, b), &["--max-bias", &b.to_string()]);
        assert_eq!((code, doc["formula"].as_str()), (0, Some("mpt")), "{doc}");
        // Without the maximum bias it is named, and not accepted.
        let (code, doc) = check_json(&mpt_slopes(12, b), &[]);
        assert_eq!(
            (code, doc["fault"]["kind"].as_str()),
            (1, Some("other_max_bias"))
        );
    }
    let p12 = paper_slopes(12);
    let neg: Vec<f64> = p12.iter().map(|m| -m).collect();
    let scaled: Vec<f64> = p12.iter().map(|m| m * 1.25).collect();
    let rev: Vec<f64> = p12.iter().rev().copied().collect();
    let plain: Vec<f64> = (1..=12)
        .map(|i| 2f64.powf(-8.0 * f64::from(i) / 12.0))
        .collect();
    let obo: Vec<f64> = (0..8).map(|i| 2f64.powf(-f64::from(i))).collect();
    let cases: Vec<(Vec<f64>, &[&str], &str)> = vec![
        (paper_slopes(8), &["--heads", "12"], "count"),
        (neg, &[], "flipped_sign"),
        (vec![0.5, 0.0, 0.1], &[], "zero"),
        (vec![0.5, -0.2, 0.1], &[], "negative"),
        (scaled, &[], "constant_factor"),
        (rev, &[], "reversed"),
        (plain, &[], "power_of_two_formula"),
        (obo, &[], "off_by_one"),
        (paper_slopes(32)[8..16].to_vec(), &[], "slice"),
        (
            [paper_slopes(4), paper_slopes(4)].concat(),
            &[],
            "rank_local",
        ),
    ];
    for (v, extra, kind) in cases {
        let (code, doc) = check_json(&v, extra);
        assert_eq!(code, 1, "{doc}");
        assert_eq!(doc["fault"]["kind"], kind, "{doc}");
        assert_eq!(doc["match"], false);
    }
    let (_, doc) = check_json(&p12.iter().map(|m| m * 1.25).collect::<Vec<_>>(), &[]);
    assert!((doc["fault"]["factor"].as_f64().unwrap() - 1.25).abs() < 1e-9);
    let (_, doc) = check_json(&paper_slopes(32)[8..16], &[]);
    assert_eq!(
        (doc["fault"]["of"].as_u64(), doc["fault"]["start"].as_u64()),
        (Some(32), Some(8))
    );
    // NaN from the command line is a fault, not bad input.
    let o = run(&["slopes", "check", "--values", "0.5,nan"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: non-finite"));
}

#[test]
fn models_and_files_are_checked_and_bad_input_exits_2() {
    let root = env!("CARGO_MANIFEST_DIR");
    let alibi = format!("{root}/assets/models/alibi");
    let o = run(&["slopes", "check", "--model", &alibi]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict: matches geometric"));
    // MPT: the config's alibi_bias_max is the reference.
    let dir = tempfile::tempdir().unwrap();
    let mpt = dir.path().join("mpt");
    std::fs::create_dir(&mpt).unwrap();
    let cfg = std::fs::read_to_string(format!("{root}/tests/fixtures/mpt-h6/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    for (bias_max, formula) in [(8, "geometric"), (4, "mpt")] {
        cfg["attn_config"]["alibi_bias_max"] = bias_max.into();
        std::fs::write(mpt.join("config.json"), cfg.to_string()).unwrap();
        let o = run(&[
            "slopes",
            "check",
            "--json",
            "--model",
            mpt.to_str().unwrap(),
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (o.status.code(), doc["formula"].as_str()),
            (Some(0), Some(formula))
        );
    }
    // A model whose config has negative slopes (refused everywhere else) is named, not a crash.
    let copy = dir.path().join("m");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(format!("{alibi}/{f}"), copy.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(copy.join("config.json")).unwrap()).unwrap();
    cfg["slopes"] = serde_json::json!(paper_slopes(8).iter().map(|m| -m).collect::<Vec<_>>());
    std::fs::write(copy.join("config.json"), cfg.to_string()).unwrap();
    let o = run(&["slopes", "check", "--model", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("flipped sign"));
    // A file written by `slopes --json` round-trips.
    let table = run(&["slopes", "--heads", "6", "--json"]);
    let file = dir.path().join("s.json");
    std::fs::write(&file, &table.stdout).unwrap();
    let o = run(&["slopes", "check", "--file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    // Bad input: one line, exit 2.
    for args in [
        &["slopes", "check"][..],
        &["slopes", "check", "--values", "0.5,abc"],
        &["slopes", "check", "--file", "/nonexistent.json"],
        &["slopes", "check", "--model", "/nonexistent"],
        &[
            "slopes",
            "check",
            "--model",
            &format!("{root}/assets/models/rotary"),
        ],
        &["slopes", "check", "--values", "0.5", "--max-bias", "-1"],
    ] {
        let o = run(args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    // The old form still works.
    assert_eq!(run(&["slopes", "--heads", "4"]).status.code(), Some(0));
}

fn app(slopes: Vec<f64>) -> App {
    let info = ModelInfo {
        name: "tiny".into(),
        arch: "alibi-explorer".into(),
        position: Position::Alibi,
        train_len: 16,
        n_layers: 2,
        n_heads: slopes.len(),
        device: "cpu".into(),
        device_note: "test".into(),
        dtype: "f32".into(),
        slopes: Some(slopes),
    };
    let s = Stream {
        ids: (0..300u32).map(|i| i % 50).collect(),
        bytes: None,
    };
    let text = (0..300).map(|i| format!("t{i}")).collect();
    App::new(info, Vec::new(), vec![s], text, 128, "s.json".into())
}

/// The Slopes panel's `check` line and the colour of its verdict.
fn verdict(a: &App) -> (String, Color) {
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| f.render_widget(a, f.area())).unwrap();
    let buf = term.backend().buffer();
    for y in 0..48 {
        let line: String = (0..160).map(|x| buf[(x, y)].symbol()).collect();
        if let Some(i) = line.find("check ") {
            let x = line[..i].chars().count() as u16 + 6;
            let text = line[i..].split('│').next().unwrap_or_default();
            return (text.trim_end().to_string(), buf[(x, y)].fg);
        }
    }
    panic!("no check line");
}

#[test]
fn the_slopes_panel_shows_the_verdict_of_the_current_slopes() {
    let mut a = app(paper_slopes(8));
    let (line, colour) = verdict(&a);
    assert!(line.contains("✓ matches geometric"), "{line}");
    assert_eq!(colour, Color::Green);
    a.update(Action::ScaleAll(1.25));
    let (line, colour) = verdict(&a);
    assert!(line.contains("✗ geometric x1.2500"), "{line}");
    assert_eq!(colour, Color::LightRed);
    // Presets: geometric, equal (custom), linear, reversed.
    a.update(Action::NextPreset);
    assert!(verdict(&a).0.contains("✓"));
    a.update(Action::NextPreset);
    assert_eq!(
        verdict(&a),
        ("check ? no known formula (custom)".into(), Color::Yellow)
    );
    a.update(Action::NextPreset);
    a.update(Action::NextPreset);
    assert!(verdict(&a).0.contains("✗ geometric reversed"));
    // An MPT-like model with another maximum bias matches its own formula.
    let a = app(mpt_slopes(8, 4.0));
    assert!(verdict(&a).0.contains("✓ matches MPT max bias 4"));
}

// The checker itself, on crafted lists.

fn fault(slopes: &[f64]) -> Fault {
    match check(slopes, &CheckOptions::default()) {
        Verdict::Fault(f) => f,
        v => panic!("expected a fault for {slopes:?}, got {v:?}"),
    }
}

#[test]
fn formulas_match_for_every_head_count() {
    for n in 1..=128 {
        let opts = CheckOptions {
            heads: Some(n),
            mpt_bias_max: None,
        };
        assert_eq!(
            check(&paper_slopes(n), &opts),
            Verdict::Match(Formula::Geometric)
        );
        assert_eq!(
            check(&bloom_slopes(n), &opts),
            Verdict::Match(Formula::Geometric)
        );
        assert_eq!(
            check(&mpt_slopes(n, 8.0), &opts),
            Verdict::Match(Formula::Geometric)
        );
    }
    for n in [1, 3, 4, 6, 12, 16, 32, 40, 64] {
        for b in [4.0, 6.5, 12.0, 16.0] {
            let opts = CheckOptions {
                heads: Some(n),
                mpt_bias_max: Some(b),
            };
            assert_eq!(
                check(&mpt_slopes(n, b), &opts),
                Verdict::Match(Formula::Mpt { bias_max: b }),
                "n={n} b={b}"
            );
            assert_eq!(infer_max_bias(&mpt_slopes(n, b)), Some(b));
        }
    }
}

#[test]
fn every_fault_is_named() {
    let p12 = paper_slopes(12);
    let p8 = paper_slopes(8);
    assert!(matches!(
        check(
            &p8,
            &CheckOptions {
                heads: Some(12),
                mpt_bias_max: None
            }
        ),
        Verdict::Fault(Fault::Count {
            got: 8,
            heads: 12,
            matches: Some(Formula::Geometric)
        })
    ));
    let mut nan = p8.clone();
    nan[3] = f64::NAN;
    assert_eq!(fault(&nan), Fault::NotFinite { heads: vec![3] });
    let mut big = p8.clone();
    big[1] = 1e39;
    assert_eq!(fault(&big), Fault::NotFinite { heads: vec![1] });
    let flipped: Vec<f64> = p12.iter().map(|m| -m).collect();
    assert_eq!(
        fault(&flipped),
        Fault::FlippedSign {
            matches: Some(Formula::Geometric)
        }
    );
    let mut neg = p8.clone();
    neg[2] = -0.1;
    assert_eq!(fault(&neg), Fault::Negative { heads: vec![2] });
    assert_eq!(
        fault(&[0.0; 4]),
        Fault::Zero {
            heads: vec![0, 1, 2, 3]
        }
    );
    // Head 0 given slope 1: 2^(-8 i / n) for i = 0..n.
    let obo: Vec<f64> = (0..8).map(|i| 2f64.powf(-f64::from(i))).collect();
    assert_eq!(
        fault(&obo),
        Fault::OffByOne {
            formula: Formula::Geometric
        }
    );
    let mut obo12: Vec<f64> = (0..8).map(|i| 2f64.powf(-f64::from(i))).collect();
    obo12.extend((0..4).map(|k| 2f64.powf(-f64::from(2 * k) / 2.0)));
    assert_eq!(fault(&obo12).key(), "off_by_one");
    // The power-of-two formula for 12 heads, and candle's next-power-of-two variant.
    let plain: Vec<f64> = (1..=12)
        .map(|i| 2f64.powf(-8.0 * f64::from(i) / 12.0))
        .collect();
    assert_eq!(
        fault(&plain),
        Fault::PowerOfTwoFormula {
            denominator: 12,
            formula: Formula::Geometric
        }
    );
    let candle: Vec<f64> = (1..=12)
        .map(|i| 2f64.powf(-8.0 * f64::from(i) / 16.0))
        .collect();
    assert_eq!(fault(&candle).key(), "power_of_two_formula");
    // Interleave wrong: the 12-head slopes sorted instead of interleaved.
    let mut sorted = p12.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(
        fault(&sorted),
        Fault::Order {
            formula: Formula::Geometric
        }
    );
    let reversed: Vec<f64> = p12.iter().rev().copied().collect();
    assert_eq!(
        fault(&reversed),
        Fault::Reversed {
            formula: Formula::Geometric
        }
    );
    let scaled: Vec<f64> = p12.iter().map(|m| m * 0.5).collect();
    match fault(&scaled) {
        Fault::ConstantFactor { factor, .. } => assert!((factor - 0.5).abs() < 1e-12),
        f => panic!("{f:?}"),
    }
    // Rank 1 of 2 of the 16-head slopes.
    assert_eq!(
        fault(&paper_slopes(16)[8..]),
        Fault::Slice {
            of: 16,
            start: 8,
            formula: Formula::Geometric
        }
    );
    // Each of 2 ranks computed the 8-head slopes for its half of 16 heads.
    let local = [p8.clone(), p8.clone()].concat();
    assert_eq!(
        fault(&local),
        Fault::RankLocal {
            ranks: 2,
            per_rank: 8,
            formula: Formula::Geometric
        }
    );
    assert_eq!(
        fault(&mpt_slopes(8, 4.0)),
        Fault::OtherMaxBias { bias_max: 4.0 }
    );
    // Learned-looking slopes are neither.
    assert_eq!(
        check(&[0.3, 0.11, 0.07, 0.5], &CheckOptions::default()),
        Verdict::Unknown
    );
}

#[test]
fn messages_are_one_line() {
    for f in [
        fault(&[0.0; 4]),
        fault(&paper_slopes(16)[8..]),
        fault(&paper_slopes(12).iter().rev().copied().collect::<Vec<_>>()),
    ] {
        let s = f.to_string();
        assert!(!s.contains('\n') && !s.is_empty(), "{s}");
    }
}
