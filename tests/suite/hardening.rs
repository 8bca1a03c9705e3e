//! Hardening, second round, as a user meets it through the binary: outputs that never replace a
//! device, a FIFO, a link or an input; numbers refused before the work; failures before the work
//! and not after; one-line errors without backtraces; no leftovers; bounded reads; no TUI drawn
//! into a file. Every case here failed before its fix (issue 23).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROSE: &str = "The lighthouse keeper wrote the weather in a small book each evening. \
Wind from the west, rain at dusk, a ship far out that did not signal. ";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alibi-explorer"));
    c.stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A bad-input run: exit 2, one line on stderr that contains `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    text: PathBuf,
    data: PathBuf,
}

/// A tiny ALiBi model with its tokenizer, a text and a data folder.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), PROSE.repeat(40)).unwrap();
    let tok = root.join("tokenizer.json");
    alibi_explorer::train::tokenizer::train_tokenizer(&data, 300, &tok).unwrap();
    let cfg = Config::ours(300, 24, 2, 6, 32, Position::Alibi, 16);
    let params = init_params(&cfg, 5, &Device::Cpu).unwrap();
    let model = root.join("model");
    save_checkpoint(&model, &cfg, &params, DType::F32, Some(&tok)).unwrap();
    let text = root.join("t.txt");
    std::fs::write(&text, PROSE.repeat(10)).unwrap();
    Fixture {
        _dir: dir,
        root,
        model,
        text,
        data,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Fixture {
    /// `train` on the fixture's data and tokenizer, ALiBi, into `out`, with `extra` options.
    fn train(&self, out: &Path, extra: &[&str]) -> Output {
        let tok = self.root.join("tokenizer.json");
        let base = [
            "train",
            "--data",
            s(&self.data),
            "--valid",
            s(&self.data),
            "--tokenizer",
            s(&tok),
            "--position",
            "alibi",
            "--out",
            s(out),
        ];
        run(&[&base[..], extra].concat())
    }

    fn eval(&self, extra: &[&str]) -> Output {
        let base = [
            "eval",
            "--model",
            s(&self.model),
            "--text",
            s(&self.text),
            "--lengths",
            "8",
        ];
        run(&[&base[..], extra].concat())
    }
}

#[test]
fn bench_refuses_numbers_that_measure_nothing() {
    let f = fixture();
    let base = ["bench", "--model", s(&f.model), "--text", s(&f.text)];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--repeats",
                "0",
                "--min-length",
                "8",
                "--max-length",
                "8",
                "--sweep-max",
                "0",
                "--long-length",
                "0",
                "--stats-length",
                "0",
            ],
            "--repeats <REPEATS>': '0' is out of range: it must be from 1 to 1000",
        ),
        (
            &["--min-length", "256", "--max-length", "128"],
            "larger than --max-length",
        ),
        (&["--min-length", "0"], "--min-length must be at least 1"),
        (
            &["--sweep-min", "64", "--sweep-max", "32"],
            "larger than --sweep-max",
        ),
        (
            &["--sweep-windows", "0"],
            "--sweep-windows must be at least 1",
        ),
        (
            &["--only-stats", "--stats-length", "0"],
            "--only-stats needs --stats-length",
        ),
    ];
    for (args, needle) in cases {
        fails_with(&run(&[&base[..], args].concat()), needle);
    }
}

#[test]
fn outputs_write_into_devices_fifos_and_links_without_replacing_them() {
    let f = fixture();
    // A link to /dev/null stays a link, and /dev/null a character device.
    let null_link = f.root.join("null.json");
    std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
    let o = f.eval(&["--json", s(&null_link), "--csv", "/dev/null"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(&null_link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // /dev/stdout writes to standard output, whatever it is (here a pipe).
    let o = f.eval(&["--csv", "/dev/stdout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("length,tokens,nll"));
    // A device node of our own (as root): written to, kept a device.
    let full = f.root.join("full");
    let made = Command::new("mknod")
        .args([s(&full), "c", "1", "7"])
        .status()
        .is_ok_and(|st| st.success());
    if made {
        let o = f.eval(&["--json", s(&full)]);
        fails_with(&o, "No space left on device");
        assert!(
            std::fs::metadata(&full)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
    // A FIFO: its reader gets the CSV, and it stays a FIFO.
    let fifo = f.root.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let o = f.eval(&["--csv", s(&fifo)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(reader.join().unwrap().starts_with("length,tokens,nll"));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // A link to a regular file: the target is replaced, the link kept.
    let real = f.root.join("real.json");
    std::fs::write(&real, "old").unwrap();
    let link = f.root.join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = f.eval(&["--json", s(&link)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("\"points\"")
    );
}

#[test]
fn an_output_that_is_an_input_or_another_output_is_refused_before_work() {
    let f = fixture();
    let before = std::fs::read(&f.text).unwrap();
    fails_with(&f.eval(&["--json", s(&f.text)]), "it is the input --text");
    // The same file through a link, or a model file, or a slopes file.
    let link = f.root.join("alias.json");
    std::os::unix::fs::symlink(&f.text, &link).unwrap();
    fails_with(&f.eval(&["--csv", s(&link)]), "it is the input --text");
    let config = f.model.join("config.json");
    fails_with(&f.eval(&["--plot", s(&config)]), "must end in .svg or .png");
    fails_with(&f.eval(&["--json", s(&config)]), "it is the input --model");
    let slopes = f.root.join("slopes.json");
    std::fs::write(&slopes, r#"{"slopes": [0.5,0.25,0.125,0.0625,0.03,0.015]}"#).unwrap();
    fails_with(
        &f.eval(&["--slopes", s(&slopes), "--json", s(&slopes)]),
        "it is the input --slopes",
    );
    // Two outputs naming one file.
    let out = f.root.join("out.json");
    let dotted = f.root.join(".").join("out.json");
    fails_with(
        &f.eval(&["--json", s(&out), "--per-token", s(&dotted)]),
        "are the same file",
    );
    // Other commands follow the rule too.
    let stats = run(&[
        "stats",
        "--model",
        s(&f.model),
        "--text",
        s(&f.text),
        "--lengths",
        "8",
        "--json",
        s(&f.text),
    ]);
    fails_with(&stats, "it is the input --text");
    let plot_in = f.root.join("in.json");
    std::fs::write(&plot_in, "{}").unwrap();
    fails_with(
        &run(&["plot", "--input", s(&plot_in), "--out", s(&f.text)]),
        "must end in .svg or .png",
    );
    let svg_in = f.root.join("in.svg");
    std::fs::write(&svg_in, "{}").unwrap();
    fails_with(
        &run(&["plot", "--input", s(&svg_in), "--out", s(&svg_in)]),
        "it is the input --input",
    );
    let tok_out = f.data.join("a.txt");
    fails_with(
        &run(&[
            "tokenizer",
            "train",
            "--data",
            s(&f.data),
            "--vocab-size",
            "300",
            "--out",
            s(&tok_out),
        ]),
        "it is the input --data",
    );
    assert_eq!(std::fs::read(&f.text).unwrap(), before);
    assert!(
        std::fs::read_to_string(&tok_out)
            .unwrap()
            .starts_with(PROSE)
    );
}

#[test]
fn integer_weights_are_refused_naming_the_tensor() {
    let f = fixture();
    let file = f.model.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "blocks.1.attn.qkv.weight";
    for dtype in [DType::I64, DType::U32, DType::U8] {
        let t = tensors[name].to_dtype(dtype).unwrap();
        tensors.insert(name.to_string(), t);
        candle_core::safetensors::save(&tensors, &file).unwrap();
        let o = f.eval(&[]);
        fails_with(&o, name);
        assert!(stderr(&o).contains("floating point"), "{}", stderr(&o));
    }
}

#[test]
fn float_options_must_be_finite_and_in_range() {
    let f = fixture();
    let tok = f.root.join("tokenizer.json");
    let train = |extra: &[&str]| {
        let out = f.root.join("trained");
        let base = [
            "train",
            "--data",
            s(&f.data),
            "--valid",
            s(&f.data),
            "--tokenizer",
            s(&tok),
            "--position",
            "alibi",
            "--train-len",
            "8",
            "--d-model",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        let o = run(&[&base[..], extra].concat());
        assert!(!out.exists(), "a refused run left '{}'", out.display());
        o
    };
    for (flag, bad) in [
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "0"),
        ("--lr=-1e-3", ""),
        ("--clip", "nan"),
        ("--clip=-1", ""),
        ("--weight-decay", "NaN"),
        ("--weight-decay=-inf", ""),
    ] {
        let o = if bad.is_empty() {
            train(&[flag])
        } else {
            train(&[flag, bad])
        };
        fails_with(&o, flag.split('=').next().unwrap());
    }
    let fit = |extra: &[&str]| {
        let base = [
            "slopes",
            "fit",
            "--model",
            s(&f.model),
            "--text",
            s(&f.text),
            "--length",
            "8",
            "--out",
            "fit.json",
        ];
        run(&[&base[..], extra].concat())
    };
    fails_with(&fit(&["--lr", "nan"]), "--lr");
    fails_with(&fit(&["--holdout", "nan"]), "--holdout");
    fails_with(&fit(&["--holdout", "1.5"]), "--holdout");
    fails_with(
        &run(&["slopes", "--heads", "8", "--scale", "nan"]),
        "--scale",
    );
    fails_with(
        &run(&["slopes", "--heads", "8", "--max-bias", "inf"]),
        "--max-bias",
    );
    fails_with(
        &run(&[
            "slopes",
            "check",
            "--values",
            "0.5,0.25",
            "--max-bias",
            "nan",
        ]),
        "--max-bias",
    );
}

#[test]
fn outputs_are_checked_before_the_work() {
    let f = fixture();
    let a_file = f.root.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let cases = [
        ("--plot", f.root.join("missing/p.png"), "does not exist"),
        ("--plot", a_file.join("p.svg"), "Not a directory"),
        ("--json", f.root.join("missing/p.json"), "does not exist"),
        ("--json", f.root.clone(), "it is a folder"),
    ];
    for (flag, path, needle) in cases {
        let started = Instant::now();
        let o = f.eval(&[flag, s(&path)]);
        fails_with(&o, needle);
        // No model loaded, nothing evaluated: well under the seconds the work takes.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!stderr(&o).contains("Drawing backend"), "{}", stderr(&o));
    }
}

#[test]
fn errors_stay_one_line_with_backtraces_asked_for() {
    let f = fixture();
    let shape = f.root.join("shape");
    std::fs::create_dir_all(&shape).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(f.model.join(file), shape.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(f.model.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v["d_ff"] = serde_json::json!(64);
    std::fs::write(shape.join("config.json"), v.to_string()).unwrap();
    for env in [
        ("RUST_BACKTRACE", "1"),
        ("RUST_BACKTRACE", "full"),
        ("RUST_LIB_BACKTRACE", "1"),
    ] {
        let o = bin()
            .env(env.0, env.1)
            .args(["eval", "--model", s(&shape), "--text", s(&f.text)])
            .args(["--lengths", "8"])
            .output()
            .unwrap();
        fails_with(&o, "shape mismatch");
        assert!(!stderr(&o).contains(" at /"), "{}", stderr(&o));
    }
}

#[test]
fn refused_runs_leave_nothing_and_reads_are_bounded() {
    let f = fixture();
    let new_dir = f.root.join("new-run");
    let o = f.train(&new_dir, &["--train-len", "8", "--resume"]);
    fails_with(&o, "no checkpoint");
    assert!(!new_dir.exists());
    // Training data too short for the training length: refused before the folder is made.
    let o = f.train(&new_dir, &["--train-len", "100000"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!new_dir.exists());
    // Refused for a reason found on the inputs: the error alone, one line, no folder.
    let o = f.train(&new_dir, &["--train-len", "8", "--vocab-size", "10"]);
    fails_with(&o, "--vocab-size");
    assert!(!new_dir.exists());
    // Endless inputs end with a size error: text, token ids, slopes, plot inputs.
    fails_with(
        &run(&[
            "eval",
            "--model",
            s(&f.model),
            "--text",
            "/dev/zero",
            "--lengths",
            "8",
        ]),
        "larger than 256 MiB",
    );
    fails_with(
        &run(&[
            "eval",
            "--model",
            s(&f.model),
            "--token-ids",
            "/dev/zero",
            "--lengths",
            "8",
        ]),
        "larger than 256 MiB",
    );
    fails_with(
        &run(&["slopes", "check", "--file", "/dev/zero"]),
        "larger than 16 MiB",
    );
    fails_with(
        &run(&["plot", "--input", "/dev/zero", "--out", "x.svg"]),
        "larger than 256 MiB",
    );
    // A config.json that never ends.
    let endless = f.root.join("endless");
    std::fs::create_dir_all(&endless).unwrap();
    std::fs::copy(
        f.model.join("model.safetensors"),
        endless.join("model.safetensors"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", endless.join("config.json")).unwrap();
    let o = run(&["inspect", "--model", s(&endless)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn the_tui_refuses_to_draw_into_a_file() {
    let f = fixture();
    let out = f.root.join("screen.txt");
    let file = std::fs::File::create(&out).unwrap();
    let o = bin()
        .args(["--model", s(&f.model), "--text", s(&f.text)])
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    fails_with(&o, "standard output is not a terminal");
    assert_eq!(std::fs::read(&out).unwrap().len(), 0);
}

/// Starts the binary with `args`, lets it work for `after`, sends `sig` (`TERM`, `INT`, `HUP`)
/// and returns its output and the seconds from the signal to its exit. Fails if it had already
/// finished: the case must give it more work than `after`.
fn signalled(args: &[&str], sig: &str, after: Duration) -> (Output, f64) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    assert!(
        child.try_wait().unwrap().is_none(),
        "{args:?} finished before the signal: give it more work"
    );
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-s", sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed().as_secs_f64())
}

/// Every long command stops soon after SIGINT, SIGTERM or SIGHUP, exits with 128 + signal, says
/// which signal on its last line, and leaves no output (train: its checkpoint, and says where).
#[test]
fn a_signal_stops_every_long_command_at_once_and_leaves_nothing() {
    let f = fixture();
    let long = f.root.join("long.txt");
    std::fs::write(&long, PROSE.repeat(2000)).unwrap();
    let (m, t) = (s(&f.model), s(&long));
    let out = |name: &str| f.root.join(name);
    let tok = f.root.join("tokenizer.json");
    let cases: Vec<(&str, Vec<String>, PathBuf)> = vec![
        (
            "TERM",
            vec![
                "eval",
                "--model",
                m,
                "--text",
                t,
                "--lengths",
                "16384",
                "--json",
            ],
            out("eval.json"),
        ),
        (
            "INT",
            vec![
                "eval",
                "--model",
                m,
                "--text",
                t,
                "--lengths",
                "4096",
                "--kl",
                "--recipe",
                "sinks:4+12",
                "--batch",
                "1",
                "--csv",
            ],
            out("kl.csv"),
        ),
        (
            "HUP",
            vec![
                "stats",
                "--model",
                m,
                "--text",
                t,
                "--lengths",
                "16384",
                "--json",
            ],
            out("stats.json"),
        ),
        (
            "TERM",
            vec![
                "ablate",
                "--model",
                m,
                "--text",
                t,
                "--lengths",
                "8192",
                "--knockout",
                "--json",
            ],
            out("ablate.json"),
        ),
        (
            "INT",
            vec![
                "reach",
                "--model",
                m,
                "--text",
                t,
                "--distances",
                "4096..16384",
                "--json",
            ],
            out("reach.json"),
        ),
        (
            "TERM",
            vec![
                "slopes", "fit", "--model", m, "--text", t, "--length", "1024", "--steps",
                "100000", "--out",
            ],
            out("fit.json"),
        ),
        (
            "TERM",
            vec![
                "bench",
                "--model",
                m,
                "--text",
                t,
                "--min-length",
                "16384",
                "--max-length",
                "16384",
                "--out",
            ],
            out("bench.md"),
        ),
        (
            "INT",
            vec!["tour", "--model", m, "--text", t, "--export"],
            out("lecture"),
        ),
        (
            "TERM",
            vec![
                "train",
                "--data",
                s(&f.data),
                "--valid",
                s(&f.data),
                "--tokenizer",
                s(&tok),
                "--position",
                "alibi",
                "--train-len",
                "16",
                "--d-model",
                "32",
                "--layers",
                "2",
                "--heads",
                "2",
                "--steps",
                "1000000",
                "--copy-span",
                "0",
                "--out",
            ],
            out("run"),
        ),
    ]
    .into_iter()
    .map(|(sig, args, path)| {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        args.push(s(&path).to_string());
        (sig, args, path)
    })
    .collect();
    for (sig, args, path) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (o, secs) = signalled(&args, sig, Duration::from_millis(2500));
        let e = stderr(&o);
        let code = match *sig {
            "INT" => 130,
            "TERM" => 143,
            _ => 129,
        };
        assert_eq!(o.status.code(), Some(code), "{args:?}: {e}");
        let last = e.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!("interrupted by SIG{sig}: ")),
            "{args:?}: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        // Generous for a shared machine: the work stops between blocks of queries, not at the end.
        assert!(secs < 10.0, "{args:?} took {secs:.1} s to stop");
        if args[0] == "train" {
            assert!(last.contains("a checkpoint at step"), "{e}");
            assert!(path.join("checkpoint").is_dir());
            assert!(!path.join("model.safetensors").exists());
        } else {
            assert!(last.ends_with("no output files were written"), "{e}");
            assert!(!path.exists(), "{args:?} left {}", path.display());
        }
        // No temporary file beside the outputs either.
        let stray: Vec<_> = std::fs::read_dir(&f.root)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|d| d.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{args:?} left {stray:?}");
    }
}

/// Numbers that make no sense are refused with their range or field named: float options past
/// any meaningful size, and config.json fields out of range (read by every command).
#[test]
fn absurd_numbers_are_refused_with_the_range_named() {
    for (args, needle) in [
        (&["family", "--slope", "1e300"][..], "at most 1000"),
        (&["family", "--kerple-log-p", "5e9"], "at most 1000"),
        (
            &["family", "--rotary-base", "1e40"],
            "at most 1000000000000",
        ),
        (
            &["slopes", "--heads", "8", "--max-bias", "1e30"],
            "at most 1000",
        ),
        (&["slopes", "--heads", "8", "--scale", "-2"], "at least 0"),
        (
            &[
                "bench",
                "--model",
                "m",
                "--text",
                "t",
                "--repeats",
                "1000000000",
            ],
            "from 1 to 1000",
        ),
        (
            &[
                "slopes", "fit", "--model", "m", "--text", "t", "--length", "8", "--steps", "1e12",
                "--out", "f.json",
            ],
            "not a whole number",
        ),
        (
            &[
                "slopes", "fit", "--model", "m", "--text", "t", "--length", "8", "--steps",
                "5000000", "--out", "f.json",
            ],
            "from 1 to 1000000",
        ),
        (
            &[
                "train",
                "--data",
                "d",
                "--valid",
                "d",
                "--tokenizer",
                "t",
                "--position",
                "alibi",
                "--train-len",
                "8",
                "--steps",
                "1000000000000000",
                "--out",
                "o",
            ],
            "from 1 to 100000000",
        ),
    ] {
        fails_with(&run(args), needle);
    }
    // The family table keeps every number inside its column.
    let o = run(&["family", "--slope", "999", "--length", "1048576"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    let longest = table
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest <= 8, "a number overflows its column:\n{table}");
    let f = fixture();
    // A warm-up longer than the run is refused, and leaves nothing.
    let out = f.root.join("w");
    let o = f.train(
        &out,
        &["--train-len", "8", "--steps", "10", "--warmup", "11"],
    );
    fails_with(&o, "--warmup 11 is longer than the run");
    assert!(!out.exists());
    let cfg_path = f.model.join("config.json");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    for (field, value, needle) in [
        (
            "layer_norm_eps",
            serde_json::json!(-1),
            "layer_norm_eps must be in (0, 1]",
        ),
        ("layer_norm_eps", serde_json::json!(0), "layer_norm_eps"),
        ("rotary_base", serde_json::json!(0.5), "rotary_base"),
        ("train_len", serde_json::json!(1u64 << 40), "train_len"),
        ("embed_scale", serde_json::json!(-3), "embed_scale"),
    ] {
        let mut cfg: serde_json::Value = serde_json::from_str(&good).unwrap();
        cfg[field] = value;
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        fails_with(&f.eval(&[]), needle);
        fails_with(&run(&["inspect", "--model", s(&f.model)]), needle);
    }
}

/// Runs the binary as an unprivileged user: as itself when it is one, through `setpriv` as
/// nobody when it is root (root reads every file, so permissions would test nothing); `None`
/// when neither is possible here.
fn run_unprivileged(args: &[&str]) -> Option<Output> {
    let root = Command::new("id").arg("-u").output().ok()?.stdout == b"0\n";
    if !root {
        return Some(run(args));
    }
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // setpriv itself failed, or nobody cannot reach the binary: nothing learned.
    let e = stderr(&o);
    (!e.starts_with("setpriv:") && o.status.code() != Some(126)).then_some(o)
}

/// Messages name the option the user gave and the real cause: an empty --text/--valid folder is
/// blamed on that option, a folder where a file belongs says so plainly, and files this user may
/// not read are called permission problems, not missing or corrupt.
#[test]
fn messages_blame_the_option_and_the_cause_given() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let empty = f.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&[
        "eval",
        "--model",
        s(&f.model),
        "--text",
        s(&empty),
        "--lengths",
        "8",
    ]);
    fails_with(&o, "point --text at a folder");
    assert!(!stderr(&o).contains("--data"), "{}", stderr(&o));
    let o = run(&[
        "stats",
        "--model",
        s(&f.model),
        "--text",
        s(&empty),
        "--lengths",
        "8",
    ]);
    fails_with(&o, "--text folder");
    let out = f.root.join("run");
    let tok = f.root.join("tokenizer.json");
    let train = |data: &Path, valid: &Path, tok: &Path| {
        run(&[
            "train",
            "--data",
            s(data),
            "--valid",
            s(valid),
            "--tokenizer",
            s(tok),
            "--position",
            "alibi",
            "--train-len",
            "8",
            "--out",
            s(&out),
        ])
    };
    // (train prints its progress first: the error is the last line)
    let last_line = |o: &Output, needle: &str| {
        let e = stderr(o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(
            e.trim_end()
                .lines()
                .last()
                .unwrap_or_default()
                .contains(needle),
            "{e}"
        );
    };
    let o = train(&f.data, &empty, &tok);
    last_line(&o, "point --valid at a folder");
    assert!(!stderr(&o).contains("--data"), "{}", stderr(&o));
    // A folder given where a file belongs.
    let o = train(&f.data, &f.data, &f.root);
    last_line(&o, "is a folder, not a JSON file");
    assert!(!stderr(&o).contains("file file"), "{}", stderr(&o));
    let o = run(&[
        "tour",
        "--tour",
        s(&f.root),
        "--model",
        s(&f.model),
        "--text",
        s(&f.text),
    ]);
    fails_with(&o, "is a folder, not a tour file");
    assert!(!out.exists());
    // Permission problems, as an unprivileged user.
    std::fs::set_permissions(&f.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f.text, std::fs::Permissions::from_mode(0o644)).unwrap();
    let locked = f.root.join("locked");
    copy_dir(&f.model, &locked);
    for entry in std::fs::read_dir(&locked).unwrap() {
        let p = entry.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let eval = |model: &Path| {
        run_unprivileged(&[
            "eval",
            "--model",
            s(model),
            "--text",
            s(&f.text),
            "--lengths",
            "8",
        ])
    };
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(o) = eval(&locked) else {
        eprintln!("skipped: no unprivileged user to run as");
        return;
    };
    assert!(
        o.status.success(),
        "a readable model must load: {}",
        stderr(&o)
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = eval(&locked).unwrap();
    fails_with(&o, "permission denied");
    assert!(!stderr(&o).contains("not found"), "{}", stderr(&o));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let weights = locked.join("model.safetensors");
    std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = eval(&locked).unwrap();
    fails_with(&o, "permission denied");
    assert!(!stderr(&o).contains("corrupt"), "{}", stderr(&o));
    std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&f.text, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = eval(&locked).unwrap();
    fails_with(&o, "ermission denied");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// One writer per output folder for lectures too: a `tour --export` into a folder another live
/// process is writing (its lock) is refused, naming that process, and the folder is untouched.
#[test]
fn a_lecture_folder_in_use_is_refused_naming_its_writer() {
    let f = fixture();
    let dir = f.root.join("lecture");
    std::fs::create_dir_all(&dir).unwrap();
    let me = std::process::id();
    std::fs::write(dir.join("write.lock"), format!("{me}\n")).unwrap();
    let o = run(&[
        "tour",
        "--model",
        s(&f.model),
        "--text",
        s(&f.text),
        "--export",
        s(&dir),
    ]);
    fails_with(&o, &me.to_string());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
