//! The tour end to end through the binary: in tmux, every step of the shipped tour is reached with
//! its card, its state applied (the attention view it names) and its panel highlighted, a task is
//! noticed, `g` leaves the tour and `q` quits with the terminal restored; headless, `--export`
//! writes slides that parse; bad tour files and export folders are one-line errors before any work.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::weights::save_checkpoint;
use alibi_explorer::tui::tour::BUILTIN;
use alibi_explorer::tui::tour::parse::parse;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let prose =
        "The ferry left the harbour at nine, and the gulls followed it out past the breakwater. ";
    std::fs::write(data.join("a.txt"), prose.repeat(40)).unwrap();
    let tok = dir.join("tokenizer.json");
    alibi_explorer::train::tokenizer::train_tokenizer(&data, 320, &tok).unwrap();
    let cfg = Config::ours(320, 32, 2, 4, 64, Position::Alibi, 16);
    let params = init_params(&cfg, 3, &Device::Cpu).unwrap();
    let model = dir.join("model");
    save_checkpoint(&model, &cfg, &params, DType::F32, Some(&tok)).unwrap();
    (model, data.join("a.txt"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alibi-explorer"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A bad-input run: exit 2, one line on stderr containing `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
}

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(socket: &str, what: impl Fn(&str) -> bool, secs: u64) -> String {
    let start = Instant::now();
    loop {
        let screen = tmux(socket, &["capture-pane", "-t", "e2e", "-p"]);
        if what(&screen) || start.elapsed() > Duration::from_secs(secs) {
            return screen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_shipped_tour_runs_step_by_step_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed (the CI script installs it)");
        return;
    }
    let tour = parse(BUILTIN, "assets/tour.md").unwrap();
    let n = tour.steps.len();
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = fixture(dir.path());
    let socket = format!("alibi-tour-e2e-{}", std::process::id());
    let cmd = format!(
        "cd {} && {} tour --model {} --compare {} --text {} --device cpu; echo EXIT=$?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_alibi-explorer"),
        model.display(),
        model.display(),
        text.display()
    );
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            "160",
            "-y",
            "48",
            &cmd,
        ],
    );
    let cleanup = || {
        tmux(&socket, &["kill-server"]);
    };
    let check = |ok: bool, what: &str, screen: &str| {
        if !ok {
            cleanup();
            panic!("{what}:\n{screen}");
        }
    };
    for (i, step) in tour.steps.iter().enumerate() {
        let head = format!("Tour {}/{n}", i + 1);
        // A capture can land between the frame that draws the new card and the one that moves
        // the highlight or shows the task, so wait for the whole step, not for its title alone.
        let complete = |s: &str| {
            s.contains(&head)
                && (step.state.focus.is_none() || s.contains("◆ tour"))
                && (i != 1 || s.contains("▶ try:"))
        };
        let screen = wait_for(&socket, complete, 60);
        check(
            screen.contains(&head),
            &format!("step {} not reached", i + 1),
            &screen,
        );
        if step.state.focus.is_some() {
            check(
                screen.contains("◆ tour"),
                &format!("step {}: no highlight", i + 1),
                &screen,
            );
        }
        if let Some(v) = step.state.view {
            let title = match v.name() {
                "heatmap" => "Attention · layer",
                "distance" => "Attention by distance",
                "heads" => "Head statistics",
                "loss-by-position" => "Loss by position",
                _ => "Slope sensitivity",
            };
            let screen = wait_for(&socket, |s| s.contains(title), 20);
            check(
                screen.contains(title),
                &format!("step {}: view {title} not shown", i + 1),
                &screen,
            );
        }
        if i == 1 {
            // "Drag past train_len": the task is noticed.
            check(screen.contains("▶ try:"), "step 2: no task", &screen);
            tmux(&socket, &["send-keys", "-t", "e2e", "Right"]);
            let screen = wait_for(&socket, |s| s.contains("✓ done:"), 20);
            check(
                screen.contains("✓ done:"),
                "step 2: the task was not noticed",
                &screen,
            );
        }
        if i + 1 < n {
            tmux(&socket, &["send-keys", "-t", "e2e", "n"]);
        }
    }
    // g leaves the tour: the card goes, the panels stay.
    tmux(&socket, &["send-keys", "-t", "e2e", "g"]);
    let screen = wait_for(
        &socket,
        |s| !s.contains("Tour ") && s.contains("left the tour") && s.contains("Slopes"),
        10,
    );
    check(
        !screen.contains(&format!("Tour {n}/{n}")) && screen.contains("Slopes"),
        "g did not leave the tour",
        &screen,
    );
    tmux(&socket, &["send-keys", "-t", "e2e", "q"]);
    let screen = wait_for(&socket, |s| s.contains("EXIT="), 10);
    cleanup();
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(!screen.contains("Perplexity vs input length"), "{screen}");
}

#[test]
fn export_writes_slides_that_parse() {
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = fixture(dir.path());
    let out = dir.path().join("lecture");
    let o = run(&[
        "tour",
        "--export",
        s(&out),
        "--model",
        s(&model),
        "--compare",
        s(&model),
        "--text",
        s(&text),
        "--device",
        "cpu",
        // Generous: a shared, busy machine can take a while for the sensitivity step; an idle
        // one finishes every step in seconds.
        "--step-timeout",
        "240",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = parse(BUILTIN, "t").unwrap().steps.len();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    for i in 1..=n {
        let card = format!("step-{i:02}.md");
        assert!(
            index.contains(&format!("]({card})")),
            "index.md lacks {card}:\n{index}"
        );
        let md = std::fs::read_to_string(out.join(&card)).unwrap();
        assert!(md.starts_with(&format!("# {i}. ")), "{md}");
        assert!(
            !md.contains('{'),
            "a placeholder left unfilled in {card}:\n{md}"
        );
        let stem = md
            .lines()
            .find_map(|l| l.strip_prefix("![").and_then(|l| l.split("](").nth(1)))
            .map_or_else(
                || panic!("{card} has no figure:\n{md}"),
                |l| l.trim_end_matches(".svg)").to_string(),
            );
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
            "{stem}.svg"
        );
        let png = image::open(out.join(format!("{stem}.png"))).unwrap();
        assert!(png.width() > 100 && png.height() > 100);
        let json = std::fs::read_to_string(out.join(format!("{stem}.json"))).unwrap();
        let _: serde_json::Value = serde_json::from_str(&json).unwrap();
    }
    // A second export into the same folder is refused before any work.
    let again = run(&[
        "tour",
        "--export",
        s(&out),
        "--model",
        s(&model),
        "--text",
        s(&text),
    ]);
    fails_with(&again, "is not empty");
}

#[test]
fn bad_tours_and_export_folders_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.md");
    std::fs::write(&bad, "# T\n\n## A\nfocus: chart\n\nSee {slop 0}.\n").unwrap();
    fails_with(
        &run(&["tour", "--tour", s(&bad)]),
        "bad.md:6: unknown placeholder '{slop 0}'",
    );
    let missing = dir.path().join("missing.md");
    fails_with(&run(&["tour", "--tour", s(&missing)]), "missing.md");
    let twin = dir.path().join("twin.md");
    std::fs::write(&twin, "# T\ncompare: no-such-model\n\n## A\n\nx\n").unwrap();
    fails_with(
        &run(&["tour", "--tour", s(&twin)]),
        "twin.md:2: compare model 'no-such-model' not found",
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    fails_with(
        &run(&["tour", "--export", s(&file)]),
        "is a file, not a folder",
    );
    let deep = dir.path().join("no/such/dir");
    fails_with(&run(&["tour", "--export", s(&deep)]), "does not exist");
    // Without a terminal the TUI is refused after the tour and models are checked.
    let (model, text) = fixture(dir.path());
    let o = run(&[
        "tour",
        "--model",
        s(&model),
        "--text",
        s(&text),
        "--device",
        "cpu",
    ]);
    fails_with(&o, "not a terminal");
    // A head the model lacks is named with the step's line.
    let heads = dir.path().join("heads.md");
    std::fs::write(&heads, "# T\n\n## A\nhead: 7\n").unwrap();
    fails_with(
        &run(&[
            "tour",
            "--tour",
            s(&heads),
            "--model",
            s(&model),
            "--text",
            s(&text),
        ]),
        "heads.md:3: head 7, but the model has 4 heads",
    );
}
