//! The binary as a user runs it: `slopes`, `inspect`, `eval`, `plot`, and every bad-input path
//! (one-line error, exit code 2, no panic, no partial files).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROSE: &str = "The lighthouse keeper wrote the weather in a small book each evening. \
Wind from the west, rain at dusk, a ship far out that did not signal. ";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `eval --model MODEL ARGS...`.
fn eval(model: &str, args: &[&str]) -> Output {
    run(&[&["eval", "--model", model][..], args].concat())
}

/// A bad-input run: exit 2, one line on stderr that contains `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
}

/// A tiny ALiBi model with a tokenizer, saved as our checkpoint.
fn tiny_model(dir: &Path, position: Position) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), PROSE.repeat(20)).unwrap();
    let tok = dir.join("tokenizer.json");
    alibi_explorer::train::tokenizer::train_tokenizer(&data, 300, &tok).unwrap();
    let cfg = Config::ours(300, 24, 2, 6, 32, position, 16);
    let params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    let out = dir.join(format!("model-{position}"));
    save_checkpoint(&out, &cfg, &params, DType::F32, Some(&tok)).unwrap();
    out
}

#[test]
fn slopes_table_and_json() {
    let o = run(&["slopes", "--heads", "6", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["heads"], 6);
    assert_eq!(v["preset"], "geometric");
    let slopes: Vec<f64> = v["slopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(slopes, alibi_explorer::alibi::paper_slopes(6));
    assert!((v["reach"][0].as_f64().unwrap() - 100f64.ln() * 4.0).abs() < 1e-9);
    let o = run(&["slopes", "--heads", "4", "--preset", "zero", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["reach"][0].is_null());
    let o = run(&["slopes", "--heads", "8", "--max-bias", "4", "--scale", "2"]);
    assert!(stdout(&o).contains("reach"));
    fails_with(&run(&["slopes", "--heads", "0"]), "--heads");
    fails_with(
        &run(&["slopes", "--heads", "4", "--max-bias", "-1"]),
        "--max-bias",
    );
    fails_with(
        &run(&["slopes", "--heads", "4", "--preset", "bogus"]),
        "preset",
    );
}

#[test]
fn inspect_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let o = run(&["inspect", "--model", m.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["position"], "alibi");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["heads"], 6);
    assert_eq!(v["train_len"], 16);
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["slopes"].as_array().unwrap().len(), 6);
    assert_eq!(
        v["parameters"],
        alibi_explorer::model::init::param_count(&Config::ours(
            300,
            24,
            2,
            6,
            32,
            Position::Alibi,
            16
        ))
    );
    let o = run(&["inspect", "--model", m.to_str().unwrap(), "--device", "cpu"]);
    let out = stdout(&o);
    assert!(
        out.contains("position      alibi") && out.contains("reach"),
        "{out}"
    );
}

#[test]
fn bad_models_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let inspect = |p: &Path| run(&["inspect", "--model", p.to_str().unwrap()]);
    fails_with(&inspect(&dir.path().join("missing")), "does not exist");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(&inspect(&empty), "config.json");
    // Malformed JSON.
    let bad = dir.path().join("badjson");
    copy_dir(&m, &bad);
    std::fs::write(bad.join("config.json"), "{ not json").unwrap();
    fails_with(&inspect(&bad), "config.json");
    // Unknown position scheme.
    let badpos = dir.path().join("badpos");
    copy_dir(&m, &badpos);
    let cfg = std::fs::read_to_string(m.join("config.json"))
        .unwrap()
        .replace("\"alibi\"", "\"learned\"");
    std::fs::write(badpos.join("config.json"), cfg).unwrap();
    fails_with(&inspect(&badpos), "position");
    // Truncated weights.
    let trunc = dir.path().join("trunc");
    copy_dir(&m, &trunc);
    let w = std::fs::read(m.join("model.safetensors")).unwrap();
    std::fs::write(trunc.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    fails_with(&inspect(&trunc), "model.safetensors");
    // A tensor missing: save the weights without one.
    let missing = dir.path().join("missing-tensor");
    let cfg = Config::ours(300, 24, 2, 6, 32, Position::Alibi, 16);
    let mut params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    params.remove("blocks.1.mlp.up.weight");
    save_checkpoint(&missing, &cfg, &params, DType::F32, None).unwrap();
    fails_with(&inspect(&missing), "blocks.1.mlp.up.weight");
    // A wrong shape: config says 3 layers... no, says d_ff 48 while tensors have 32.
    let shape = dir.path().join("wrong-shape");
    copy_dir(&m, &shape);
    let cfg = std::fs::read_to_string(m.join("config.json"))
        .unwrap()
        .replace("\"d_ff\": 32", "\"d_ff\": 48");
    std::fs::write(shape.join("config.json"), cfg).unwrap();
    fails_with(&inspect(&shape), "shape");
    // A file instead of a folder.
    fails_with(&inspect(&m.join("config.json")), "not a folder");
    // Unknown device.
    fails_with(
        &run(&["inspect", "--model", m.to_str().unwrap(), "--device", "tpu"]),
        "device",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn eval_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("text.txt");
    std::fs::write(&text, PROSE.repeat(10)).unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let o = eval(
        m.to_str().unwrap(),
        &[
            "--text",
            text.to_str().unwrap(),
            "--lengths",
            "4..64",
            "--protocol",
            "sweep",
            "--json",
            &p("r.json"),
            "--csv",
            &p("r.csv"),
            "--per-token",
            &p("t.jsonl"),
            "--plot",
            &p("r.svg"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("← train_len") && table.contains("(extrapolation)"),
        "{table}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("r.json")).unwrap()).unwrap();
    assert_eq!(v["train_len"], 16);
    assert_eq!(v["protocol"], "sweep");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    assert!(points[0]["bits_per_byte"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(p("r.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(p("t.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["window"], 0);
    assert_eq!(first["position"], 0);
    let svg = std::fs::read_to_string(p("r.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("train_len = 16"));
    // The plot command draws several results into one figure.
    let o = run(&[
        "plot",
        "--input",
        &p("r.json"),
        "--input",
        &p("r.json"),
        "--label",
        "a",
        "--label",
        "b",
        "--out",
        &p("both.png"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(p("both.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    // A folder of .txt files is read as one text.
    let folder = dir.path().join("texts");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("a.txt"), PROSE.repeat(5)).unwrap();
    std::fs::write(folder.join("b.txt"), PROSE.repeat(5)).unwrap();
    let o = eval(
        m.to_str().unwrap(),
        &["--text", folder.to_str().unwrap(), "--lengths", "16"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&folder.display().to_string()));
    // --max-tokens keeps the first N tokens only.
    let o = eval(
        m.to_str().unwrap(),
        &[
            "--text",
            folder.to_str().unwrap(),
            "--lengths",
            "16",
            "--max-tokens",
            "33",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("· 33 tokens from"), "{}", stdout(&o));
    // Token ids work for models without a tokenizer, and a slope override is accepted.
    let ids = dir.path().join("ids.txt");
    std::fs::write(
        &ids,
        (0..100)
            .map(|i| (i * 7 % 300).to_string())
            .collect::<Vec<_>>()
            .join(" "),
    )
    .unwrap();
    let o = eval(
        m.to_str().unwrap(),
        &[
            "--token-ids",
            ids.to_str().unwrap(),
            "--lengths",
            "8,16",
            "--slopes",
            "zero",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = eval(
        m.to_str().unwrap(),
        &[
            "--token-ids",
            ids.to_str().unwrap(),
            "--lengths",
            "8",
            "--protocol",
            "sliding",
            "--stride",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_eval_input_is_a_one_line_error_without_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Sinusoidal);
    let ms = m.to_str().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write("good.txt", PROSE.repeat(10).as_bytes());
    let json = dir.path().join("out.json");
    let js = json.to_str().unwrap();
    fails_with(
        &eval(
            ms,
            &[
                "--text",
                &write("empty.txt", b""),
                "--lengths",
                "8",
                "--json",
                js,
            ],
        ),
        "empty",
    );
    fails_with(
        &eval(
            ms,
            &[
                "--text",
                &write("bin.txt", &[0xff, 0xfe, 0x00, 0x12]),
                "--lengths",
                "8",
            ],
        ),
        "not UTF-8",
    );
    fails_with(
        &eval(
            ms,
            &[
                "--text",
                &write("short.txt", b"Too short."),
                "--lengths",
                "64",
            ],
        ),
        "needs at least 65",
    );
    fails_with(
        &eval(ms, &["--text", &good, "--lengths", "0,8"]),
        "at least 1",
    );
    fails_with(
        &eval(
            ms,
            &[
                "--text",
                &good,
                "--lengths",
                "8",
                "--json",
                "/nonexistent-dir/x.json",
            ],
        ),
        "cannot write",
    );
    fails_with(
        &eval(ms, &["--text", &good, "--lengths", "8", "--plot", "x.pdf"]),
        ".svg or .png",
    );
    fails_with(
        &eval(ms, &["--text", &good, "--lengths", "8", "--slopes", "zero"]),
        "ALiBi models only",
    );
    fails_with(
        &eval(
            ms,
            &["--text", &good, "--lengths", "8", "--protocol", "sliding"],
        ),
        "--stride",
    );
    fails_with(
        &eval(
            ms,
            &[
                "--token-ids",
                &write("ids.txt", b"1 2 999 4"),
                "--lengths",
                "2",
            ],
        ),
        "token id 999 at position 2",
    );
    assert!(!json.exists(), "a failed run left {js}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Forward lengths 16 and 32, one timed repeat, statistics at 32: a bench that takes well under a
/// second.
const BENCH_QUICK: [&str; 8] = [
    "--min-length",
    "16",
    "--max-length",
    "32",
    "--repeats",
    "1",
    "--stats-length",
    "32",
];

#[test]
fn bench_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("text.txt");
    std::fs::write(&text, PROSE.repeat(10)).unwrap();
    let out = dir.path().join("bench.md");
    let o = run(&[
        &[
            "bench",
            "--model",
            m.to_str().unwrap(),
            "--text",
            text.to_str().unwrap(),
        ][..],
        &BENCH_QUICK,
        &[
            "--sweep-min",
            "8",
            "--sweep-max",
            "32",
            "--long-length",
            "256",
            "--out",
            out.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "| 16 |",
        "| 32 |",
        "Sweep is",
        "peak RSS",
        "MiB",
        "TUI frame",
        "Attention statistics",
    ] {
        assert!(report.contains(needle), "missing {needle}: {report}");
    }
}

#[test]
fn bench_takes_token_ids_and_skips_sections() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "1 2 3 4 5 6 7 8 9 10 11 12").unwrap();
    let out = dir.path().join("bench.md");
    let m = m.to_str().unwrap();
    let ids = ids.to_str().unwrap();
    let o = run(&[
        &["bench", "--model", m, "--token-ids", ids][..],
        &BENCH_QUICK,
        &[
            "--sweep-max",
            "0",
            "--long-length",
            "0",
            "--out",
            out.to_str().unwrap(),
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(report.contains("Token ids"), "{report}");
    assert!(report.contains("| 32 |"), "{report}");
    for absent in ["Sweep is", "Long input", "TUI frame"] {
        assert!(
            !report.contains(absent),
            "{absent} was not skipped: {report}"
        );
    }
    // Neither input, or both, is a usage error.
    let o = run(&["bench", "--model", m]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&["bench", "--model", m, "--token-ids", ids, "--text", ids]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn bench_times_the_copy_curve_to_sixteen_times_train_len() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("text.txt");
    std::fs::write(&text, PROSE.repeat(30)).unwrap();
    let out = dir.path().join("bench.md");
    let (m, t) = (m.to_str().unwrap(), text.to_str().unwrap());
    let o = run(&[
        &["bench", "--model", m, "--text", t][..],
        &BENCH_QUICK,
        &[
            "--sweep-max",
            "0",
            "--long-length",
            "0",
            "--copy-samples",
            "3",
        ],
        &["--out", out.to_str().unwrap()],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(&out).unwrap();
    assert!(report.contains("## Copy curve"), "{report}");
    assert!(report.contains("3 spans of 32 tokens"), "{report}");
    // train_len 16: distances 32..256, one row each.
    for d in [32, 64, 128, 256] {
        assert!(
            report.contains(&format!("\n| {d} | ")),
            "no distance {d}: {report}"
        );
    }
    assert!(!report.contains("| 512 | "), "{report}");
    fails_with(
        &run(&[
            "bench",
            "--model",
            m,
            "--text",
            t,
            "--copy-samples",
            "20000",
        ]),
        "--copy-samples 20000",
    );
}

#[test]
fn bench_live_times_the_tui_on_a_model_and_refuses_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("text.txt");
    std::fs::write(&text, PROSE.repeat(20)).unwrap();
    let out = dir.path().join("live.md");
    let m = m.to_str().unwrap();
    let o = run(&[
        "bench",
        "--model",
        m,
        "--text",
        text.to_str().unwrap(),
        "--live",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "live TUI benchmark",
        "first attention map",
        "first perplexity numbers",
        "perplexity at the cursor",
        "next layer (]): its attention map",
        "slope edit (* x1.25): its attention map",
        "the new curve's first numbers",
        "the whole new curve (sweep done)",
        "the worker's own timer",
        "Peak RSS",
    ] {
        assert!(report.contains(needle), "missing {needle}: {report}");
    }
    // Every row has a number of seconds.
    let rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| moment") && !l.starts_with("| ---"))
        .collect();
    assert!(rows.len() >= 9, "{report}");
    for row in rows {
        let secs: f64 = row.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!((0.0..600.0).contains(&secs), "{row}");
    }
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "1 2 3 4 5 6 7 8 9 10 11 12").unwrap();
    let o = run(&[
        "bench",
        "--model",
        m,
        "--token-ids",
        ids.to_str().unwrap(),
        "--live",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn inspect_says_falcon_slopes_are_on_the_logits() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/falcon-h4");
    let o = run(&["inspect", "--model", dir]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("architecture  falcon"), "{out}");
    // head_dim 16: M = m x 4.
    assert!(
        out.contains("Falcon-RW adds M*j") && out.contains("M = slope x 4.0000"),
        "{out}"
    );
    // BLOOM's slopes are the paper's own: no such note.
    let bloom = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bloom-h4");
    assert!(!stdout(&run(&["inspect", "--model", bloom])).contains("Falcon-RW adds"));
}

#[test]
fn tui_option_errors_come_before_the_terminal_opens() {
    fails_with(
        &run(&["--max-tokens", "1"]),
        "--max-tokens must be at least 2",
    );
    fails_with(
        &run(&["--max-tokens", "5", "--device", "cpu"]),
        "raise --max-tokens",
    );
}

#[test]
fn head_counts_beyond_the_limit_are_one_line_errors() {
    for heads in [
        "18446744073709551615",
        "4294967296",
        &(alibi_explorer::alibi::MAX_HEADS + 1).to_string(),
    ] {
        fails_with(&run(&["slopes", "--heads", heads]), "at most 1048576");
    }
    let o = run(&["slopes", "--heads", "1048576", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_reader_that_goes_away_ends_every_command_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("t.txt");
    std::fs::write(&text, PROSE.repeat(10)).unwrap();
    let (m, text) = (m.to_str().unwrap(), text.to_str().unwrap());
    let commands: [&[&str]; 5] = [
        &["slopes", "--heads", "100000"],
        &["slopes", "--heads", "100000", "--json"],
        &["inspect", "--model", m],
        &["eval", "--model", m, "--text", text, "--lengths", "4,8,16"],
        &["--help"],
    ];
    for args in commands {
        let mut child = bin()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read one byte, then go away like `head -c 1`.
        let mut stdout = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        let _ = stdout.read(&mut one);
        drop(stdout);
        let o = child.wait_with_output().unwrap();
        let e = stderr(&o);
        assert!(
            !e.contains("panicked") && !e.contains("Broken pipe"),
            "{args:?}: {e}"
        );
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
    }
}

#[test]
fn slopes_are_checked_wherever_they_enter() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let ms = m.to_str().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, PROSE.repeat(10)).unwrap();
    let ts = text.to_str().unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    // 6 heads: finite in f64 but not in f32; negative; too many; NaN-like strings are not JSON.
    let cases = [
        (
            file("huge.json", r#"{"slopes":[1e308,1,1,1,1,1]}"#),
            "finite in f32",
        ),
        (
            file("inf32.json", r#"{"slopes":[0.5,0.5,3.5e38,1,1,1]}"#),
            "head 2",
        ),
        (
            file("neg.json", r#"{"slopes":[0.5,-0.25,1,1,1,1]}"#),
            "negative",
        ),
        (
            file("count.json", r#"{"slopes":[0.5,0.25]}"#),
            "2 slopes for 6 heads",
        ),
    ];
    for (f, needle) in &cases {
        fails_with(
            &eval(ms, &["--text", ts, "--lengths", "8", "--slopes", f]),
            needle,
        );
    }
    // Preset x scale: the factor itself has a range.
    fails_with(
        &run(&["slopes", "--heads", "8", "--scale", "1e308"]),
        "out of range: it must be at least 0 and at most 1000",
    );
    // A model's own config.
    let cfg_path = m.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["slopes"] = serde_json::json!([0.5, 0.25, -1.0, 0.1, 0.1, 0.1]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    fails_with(&run(&["inspect", "--model", ms]), "negative");
}

#[test]
fn messages_count_and_ranges_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_model(dir.path(), Position::Alibi);
    let ms = m.to_str().unwrap();
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "1 2 300").unwrap();
    fails_with(
        &eval(
            ms,
            &["--token-ids", ids.to_str().unwrap(), "--lengths", "1"],
        ),
        "valid ids: 0 to 299",
    );
    std::fs::write(&ids, "7").unwrap();
    fails_with(
        &eval(
            ms,
            &["--token-ids", ids.to_str().unwrap(), "--lengths", "4"],
        ),
        "the text has 1 token;",
    );
    // A panic report off a terminal is plain text.
    let o = bin()
        .args(["slopes", "--heads", "4"])
        .env(alibi_explorer::tui::FAULT_ENV, "panic")
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(e.contains("panicked"), "{e}");
    assert!(
        !e.contains('\u{1b}'),
        "colour codes in a piped report: {e:?}"
    );
}

#[test]
fn bits_per_byte_of_an_emoji_text() {
    // The shipped model and tokenizer: 4 byte-level tokens of 1 byte each.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("emoji.txt");
    std::fs::write(&text, "😀").unwrap();
    let json = dir.path().join("e.json");
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models/alibi");
    let o = eval(
        model,
        &[
            "--text",
            text.to_str().unwrap(),
            "--lengths",
            "3",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let p = &v["points"][0];
    let nll = p["nll"].as_f64().unwrap();
    let bpb = p["bits_per_byte"].as_f64().unwrap();
    assert!((bpb - nll / std::f64::consts::LN_2).abs() < 1e-9, "{p}");
    // Pinned to the shipped ALiBi model (the copy-recipe family at train_len 256): update it when
    // the family changes.
    assert!((bpb - 15.380).abs() < 0.01, "{p}");
}

#[test]
fn reach_measures_copy_gain_by_distance_for_several_models() {
    let dir = tempfile::tempdir().unwrap();
    let alibi = tiny_model(dir.path(), Position::Alibi);
    let rotary = tiny_model(dir.path(), Position::Rotary);
    let text = dir.path().join("held-out.txt");
    std::fs::write(&text, PROSE.repeat(30)).unwrap();
    let (json, csv) = (dir.path().join("r.json"), dir.path().join("r.csv"));
    let plot = dir.path().join("r.svg");
    let o = run(&[
        "reach",
        "--model",
        alibi.to_str().unwrap(),
        "--compare",
        rotary.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--span",
        "8",
        "--distances",
        "8..32",
        "--samples",
        "4",
        "--heads",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The figure: both models' curves, the axis and the training length.
    let svg = std::fs::read_to_string(&plot).unwrap();
    for want in [
        "model-alibi",
        "model-rotary",
        "copy gain (nats)",
        "train_len = 16",
    ] {
        assert!(svg.contains(want), "the figure lacks '{want}'");
    }
    let out = stdout(&o);
    // Both models, every distance, the ones past train_len (16) starred, the heads table.
    assert!(out.contains("model-alibi (alibi, train_len 16)"), "{out}");
    assert!(out.contains("model-rotary (rotary, train_len 16)"), "{out}");
    assert!(out.contains("      32*"), "{out}");
    assert!(
        out.contains("induction score by head and distance"),
        "{out}"
    );
    assert!(out.contains("    1.5 "), "6 heads in layer 1: {out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let points = models[0]["points"].as_array().unwrap();
    assert_eq!(
        points
            .iter()
            .map(|p| p["distance"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![8, 16, 32]
    );
    for p in points {
        let gain = p["copy_gain"].as_f64().unwrap();
        let (a, b) = (
            p["first_nll"].as_f64().unwrap(),
            p["second_nll"].as_f64().unwrap(),
        );
        assert!(
            (gain - (a - b)).abs() < 1e-9,
            "the gain is the paired mean difference"
        );
        assert_eq!(p["heads"].as_array().unwrap().len(), 12);
        assert_eq!(
            p["past_train_len"].as_bool().unwrap(),
            p["distance"].as_u64().unwrap() > 16
        );
    }
    assert_eq!(models[0]["slopes"].as_array().unwrap().len(), 6);
    assert!(models[1]["slopes"].is_null());
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1 + 2 * 3);
    assert!(lines[0].starts_with("model,distance,first_nll"));
}

#[test]
fn reach_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let alibi = tiny_model(dir.path(), Position::Alibi);
    let rotary = tiny_model(dir.path(), Position::Rotary);
    let text = dir.path().join("t.txt");
    std::fs::write(&text, PROSE.repeat(3)).unwrap();
    let (m, r, t) = (
        alibi.to_str().unwrap(),
        rotary.to_str().unwrap(),
        text.to_str().unwrap(),
    );
    let reach = |args: &[&str]| run(&[&["reach", "--text", t][..], args].concat());
    fails_with(
        &reach(&["--model", m, "--span", "16", "--distances", "8,32"]),
        "shorter than --span 16",
    );
    fails_with(&reach(&["--model", m, "--samples", "0"]), "--samples 0");
    fails_with(&reach(&["--model", m, "--span", "1"]), "--span 1");
    fails_with(&reach(&["--model", r, "--slopes", "equal"]), "ALiBi");
    fails_with(
        &reach(&["--model", m, "--span", "8", "--distances", "4096"]),
        "a copy case needs",
    );
    fails_with(
        &reach(&["--model", m, "--span-kind", "noise"]),
        "text or random",
    );
    // An output over an input is refused before any work.
    fails_with(
        &reach(&["--model", m, "--span", "8", "--distances", "8", "--json", t]),
        "--json",
    );
    fails_with(
        &reach(&["--model", m, "--span", "8", "--distances", "8", "--plot", t]),
        "--plot",
    );
    fails_with(
        &reach(&[
            "--model",
            m,
            "--span",
            "8",
            "--distances",
            "8",
            "--plot",
            "r.pdf",
        ]),
        ".svg or .png",
    );
    assert_eq!(std::fs::read_to_string(&text).unwrap(), PROSE.repeat(3));
}

#[test]
fn plot_draws_training_logs_and_refuses_a_mix_of_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let log = "step,lr,train_loss,valid_loss,grad_norm,tokens_per_s,elapsed_s,copy_gain,induction,tokens\n\
10,1e-3,5.5,,0.9,100,1.0,,,40960\n20,1e-3,5.1,5.2,0.8,100,2.0,0.0300,0.0500,81920\n\
30,1e-3,4.9,5.0,0.8,100,3.0,1.2000,0.4000,122880\n";
    std::fs::write(run_dir.join("loss.csv"), log).unwrap();
    let png = dir.path().join("t.png");
    // A run folder stands for its loss.csv.
    let o = run(&[
        "plot",
        "--input",
        run_dir.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let svg = dir.path().join("t.svg");
    let csv = run_dir.join("loss.csv");
    let o = run(&[
        "plot",
        "--input",
        csv.to_str().unwrap(),
        "--label",
        "mix",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("copy gain") && text.contains("mix"),
        "the copy panels and the label"
    );
    // An `eval --json` file and a loss log in one figure are refused.
    let json = dir.path().join("e.json");
    std::fs::write(&json, r#"{"train_len": 16, "points": []}"#).unwrap();
    fails_with(
        &run(&[
            "plot",
            "--input",
            csv.to_str().unwrap(),
            "--input",
            json.to_str().unwrap(),
            "--out",
            svg.to_str().unwrap(),
        ]),
        "not both",
    );
    // A log with a bad cell names its line.
    std::fs::write(run_dir.join("loss.csv"), "step,train_loss\n10,abc\n").unwrap();
    fails_with(
        &run(&[
            "plot",
            "--input",
            csv.to_str().unwrap(),
            "--out",
            svg.to_str().unwrap(),
        ]),
        "line 2",
    );
}

/// `reach --needle`: the grid of lengths x depths with its no-fact control, in the table and the
/// JSON, every cell scored on its samples; bad needle options refused in one line before work.
#[test]
fn reach_needle_grid_scores_every_cell_and_refuses_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let alibi = tiny_model(dir.path(), Position::Alibi);
    let text = dir.path().join("held-out.txt");
    std::fs::write(&text, PROSE.repeat(30)).unwrap();
    let json = dir.path().join("n.json");
    let (m, t) = (alibi.to_str().unwrap(), text.to_str().unwrap());
    let base = [
        "reach",
        "--model",
        m,
        "--text",
        t,
        "--span",
        "8",
        "--distances",
        "8",
        "--samples",
        "2",
    ];
    let o = run(&[
        &base[..],
        &[
            "--needle",
            "--needle-lengths",
            "64..128",
            "--needle-depths",
            "0,0.5,1",
            "--needle-samples",
            "3",
        ],
        &["--json", json.to_str().unwrap()],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("needle grid"), "{out}");
    assert!(out.contains("no fact") && out.contains("q=0.5"), "{out}");
    assert!(
        out.contains("     128*"),
        "past train_len 16 starred: {out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cells = v["models"][0]["needle"].as_array().unwrap();
    // 2 lengths x (control + 3 depths).
    assert_eq!(cells.len(), 8, "{cells:?}");
    assert!(
        cells[0]["depth"].is_null(),
        "the control comes first: {cells:?}"
    );
    for c in cells {
        assert_eq!(c["samples"], 3);
        let nll = c["key_nll"].as_f64().unwrap();
        assert!(nll.is_finite() && nll > 0.0, "{c}");
        let r = c["retrieved"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&r), "{c}");
    }
    let reach = |extra: &[&str]| run(&[&base[..], extra].concat());
    fails_with(
        &reach(&["--needle", "--needle-depths", "1.5"]),
        "outside 0..1",
    );
    fails_with(&reach(&["--needle-lengths", "64"]), "needs --needle");
    fails_with(
        &reach(&["--needle", "--needle-lengths", "8"]),
        "cannot hold the fact",
    );
    fails_with(
        &reach(&["--needle", "--needle-lengths", "100000"]),
        "filler",
    );
    fails_with(
        &reach(&["--needle", "--needle-samples", "0"]),
        "--needle-samples 0",
    );
}

/// `reach --recipe` runs the first model under the recipe at each case's length (named so in the
/// output) beside a `--compare` of the same model; a window shorter than the distance removes
/// the first occurrence from view, so the windowed copy test sees nothing to copy.
#[test]
fn reach_recipe_applies_to_the_first_model_at_each_length() {
    let dir = tempfile::tempdir().unwrap();
    let alibi = tiny_model(dir.path(), Position::Alibi);
    let rotary = tiny_model(dir.path(), Position::Rotary);
    let text = dir.path().join("held-out.txt");
    std::fs::write(&text, PROSE.repeat(30)).unwrap();
    let json = dir.path().join("r.json");
    let (m, t) = (alibi.to_str().unwrap(), text.to_str().unwrap());
    let o = run(&[
        "reach",
        "--model",
        m,
        "--compare",
        m,
        "--text",
        t,
        "--span",
        "8",
        "--distances",
        "32",
        "--samples",
        "3",
        "--heads",
        "--recipe",
        "window:4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let models = v["models"].as_array().unwrap();
    assert!(
        models[0]["model"]
            .as_str()
            .unwrap()
            .ends_with(" + window:4"),
        "{v}"
    );
    assert!(
        !models[1]["model"].as_str().unwrap().contains("window"),
        "{v}"
    );
    // With a 4-key window no query of the second copy sees its earlier occurrence (32 back):
    // every head's induction score is exactly 0 under the recipe.
    for h in models[0]["points"][0]["heads"].as_array().unwrap() {
        assert_eq!(h["induction"].as_f64().unwrap(), 0.0, "{h}");
    }
    let r = rotary.to_str().unwrap();
    fails_with(
        &run(&["reach", "--model", r, "--text", t, "--recipe", "interp:2"]),
        "changes ALiBi slopes",
    );
}

#[test]
fn reach_agrees_with_eval_per_token_and_attention_by_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let alibi = tiny_model(dir.path(), Position::Alibi);
    let m = alibi.to_str().unwrap();
    // A text of exactly span + gap ids has one place for a case: the span at 0, the filler
    // after it, so the case is the text followed by its first `span` ids again.
    let (span, gap) = (6usize, 5usize);
    let text: Vec<u32> = (0..(span + gap) as u32)
        .map(|i| 17 + i * 23 % 280)
        .collect();
    let case: Vec<u32> = text.iter().chain(&text[..span]).copied().collect();
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let (text_file, case_file) = (dir.path().join("text.ids"), dir.path().join("case.ids"));
    std::fs::write(&text_file, ids(&text)).unwrap();
    std::fs::write(&case_file, ids(&case)).unwrap();
    let json = dir.path().join("reach.json");
    let distance = (span + gap).to_string();
    let o = run(&[
        "reach",
        "--model",
        m,
        "--token-ids",
        text_file.to_str().unwrap(),
        "--span",
        "6",
        "--distances",
        &distance,
        "--samples",
        "1",
        "--heads",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let p = &v["models"][0]["points"][0];
    assert_eq!(p["distance"].as_u64().unwrap() as usize, span + gap);

    // The same case through `eval --per-token`: one window of all but the last token.
    let n = (case.len() - 1).to_string();
    let per_token = dir.path().join("pt.jsonl");
    let o = run(&[
        "eval",
        "--model",
        m,
        "--token-ids",
        case_file.to_str().unwrap(),
        "--lengths",
        &n,
        "--per-token",
        per_token.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let nll: Vec<f64> = std::fs::read_to_string(&per_token)
        .unwrap()
        .lines()
        .map(|l| {
            let t: serde_json::Value = serde_json::from_str(l).unwrap();
            t["nll"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(nll.len(), case.len() - 1);
    // Target t is predicted at position t - 1; s_1..s_{k-1} of each occurrence are scored.
    let mean =
        |from: usize| (from + 1..from + span).map(|t| nll[t - 1]).sum::<f64>() / (span - 1) as f64;
    let (first, second) = (mean(0), mean(span + gap));
    let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
    assert!(
        close(p["first_nll"].as_f64().unwrap(), first),
        "{p} vs {first}"
    );
    assert!(
        close(p["second_nll"].as_f64().unwrap(), second),
        "{p} vs {second}"
    );
    assert!(
        close(p["copy_gain"].as_f64().unwrap(), first - second),
        "{p}"
    );

    // Every head's scores from `attention`'s maps of the same window.
    let heads = p["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 12);
    for h in heads {
        let (layer, head) = (h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap());
        let out = dir.path().join(format!("att-{layer}-{head}.json"));
        let o = run(&[
            "attention",
            "--model",
            m,
            "--token-ids",
            case_file.to_str().unwrap(),
            "--length",
            &n,
            "--layer",
            &layer.to_string(),
            "--head",
            &head.to_string(),
            "--json",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let a: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let map = a["map"].as_array().unwrap();
        let at = |q: usize, k: usize| map[q][k].as_f64().unwrap();
        let s = span + gap;
        let score = |key: &dyn Fn(usize, usize) -> usize| {
            (0..span - 1).map(|j| at(s + j, key(j, s + j))).sum::<f64>() / (span - 1) as f64
        };
        assert!(
            close(h["induction"].as_f64().unwrap(), score(&|j, _| j + 1)),
            "{h}"
        );
        assert!(
            close(h["duplicate"].as_f64().unwrap(), score(&|j, _| j)),
            "{h}"
        );
        assert!(
            close(h["previous"].as_f64().unwrap(), score(&|_, i| i - 1)),
            "{h}"
        );
    }
}
