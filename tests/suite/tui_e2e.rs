//! End to end: the real binary in tmux. The panels appear, the sweep and its refinement of short
//! lengths finish, the length cursor moves and the length and perplexity in the status bar change,
//! and `q` quits with the terminal restored and exit code 0. Every other way out (Ctrl-C, SIGTERM,
//! SIGHUP, SIGINT, SIGQUIT from outside, an error, a panic) leaves the pane with the alternate
//! screen off, mouse reporting off and the cursor visible, as tmux reports them. Skipped (with a
//! message) where tmux is not installed; CI installs it.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::model::weights::save_checkpoint;
use candle_core::{DType, Device};
use std::process::Command;
use std::time::{Duration, Instant};

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

fn status_field(screen: &str, key: &str) -> String {
    // The status bar is the line with "x train)".
    let line = screen
        .lines()
        .find(|l| l.contains("x train)"))
        .unwrap_or_default();
    let Some(i) = line.find(&format!("{key} ")) else {
        return String::new();
    };
    line[i..]
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// A tiny model and its text in `dir`.
fn fixture(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
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

fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIPPED: tmux is not installed (the CI script installs it)");
        return false;
    }
    true
}

#[test]
fn tui_runs_in_tmux() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = fixture(dir.path());
    let socket = format!("alibi-e2e-{}", std::process::id());
    let cmd = format!(
        "cd {} && {} --model {} --text {} --device cpu; echo EXIT=$?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_alibi-explorer"),
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
    let panels = [
        "Perplexity vs input length",
        "Slopes",
        "ALiBi bias per head",
        "Attention · layer 0 head 0",
        "sweep done",
    ];
    // Wait for the whole screen: a capture can land between two frames.
    let screen = wait_for(&socket, |s| panels.iter().all(|p| s.contains(p)), 60);
    let cleanup = || {
        tmux(&socket, &["kill-server"]);
    };
    for panel in panels {
        if !screen.contains(panel) {
            cleanup();
            panic!("missing '{panel}':\n{screen}");
        }
    }
    // The worker goes on to refine the short lengths, and says when it is done.
    let screen = wait_for(&socket, |s| s.contains("refined in"), 60);
    if !screen.contains("refined in") {
        cleanup();
        panic!("the refinement did not finish:\n{screen}");
    }
    let len0 = status_field(&screen, "length");
    let ppl0 = status_field(&screen, "ppl");
    assert_eq!(len0, "16");
    tmux(&socket, &["send-keys", "-t", "e2e", "S-Right"]);
    let screen = wait_for(
        &socket,
        |s| status_field(s, "length") != len0 && status_field(s, "ppl") != ppl0,
        10,
    );
    let len1 = status_field(&screen, "length");
    let ppl1 = status_field(&screen, "ppl");
    assert_eq!(len1, "32", "{screen}");
    assert_ne!(ppl0, ppl1, "perplexity did not change:\n{screen}");
    // The attention panel's views: attention by distance and the head grid come from statistics
    // the worker computes; loss by position from the sweep.
    for (key, title, ready) in [
        ("v", "Attention by distance", "distance i−j"),
        ("v", "Head statistics", "windows of 32"),
        ("s", "90% mass distance", "windows of 32"),
        ("v", "Loss by position", "nats/token"),
        ("v", "Slope sensitivity", "runs"),
        ("v", "Position-encoding family", "mean d"),
        ("v", "Attention · layer 0 head 0", "per block"),
    ] {
        tmux(&socket, &["send-keys", "-t", "e2e", key]);
        let screen = wait_for(&socket, |s| s.contains(title) && s.contains(ready), 30);
        if !(screen.contains(title) && screen.contains(ready)) {
            cleanup();
            panic!("view '{title}' did not show '{ready}':\n{screen}");
        }
    }
    // w writes the focused panel (the chart, then the attention heatmap) as SVG + PNG + JSON in
    // the working folder, and the status bar says so.
    for (keys, stem) in [
        (vec!["w"], "alibi-explorer-perplexity-model-L32"),
        (
            vec!["Tab", "Tab", "Tab", "w"],
            "alibi-explorer-heatmap-model-L32",
        ),
    ] {
        for k in keys {
            tmux(&socket, &["send-keys", "-t", "e2e", k]);
        }
        let said = format!("exported {stem}.{{svg,png,json}}");
        let screen = wait_for(&socket, |s| s.contains(&said), 20);
        if !screen.contains(&said) {
            cleanup();
            panic!("no export message for {stem}:\n{screen}");
        }
        let svg = std::fs::read_to_string(dir.path().join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{stem}.svg");
        let png = std::fs::read(dir.path().join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        let json = std::fs::read_to_string(dir.path().join(format!("{stem}.json"))).unwrap();
        let _: serde_json::Value = serde_json::from_str(&json).unwrap();
    }
    tmux(&socket, &["send-keys", "-t", "e2e", "q"]);
    let screen = wait_for(&socket, |s| s.contains("EXIT="), 10);
    cleanup();
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains("Perplexity vs input length"),
        "the alternate screen was not left:\n{screen}"
    );
}

/// The pane's terminal state as tmux sees it: alternate screen, mouse reporting, cursor visible.
fn pane_modes(socket: &str) -> String {
    tmux(
        socket,
        &[
            "display-message",
            "-p",
            "-t",
            "e2e",
            "alt=#{alternate_on} mouse=#{mouse_any_flag} cursor=#{cursor_flag}",
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn every_way_out_restores_the_terminal() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, text) = fixture(dir.path());
    // (how the program ends, the exit status the shell sees)
    let endings = [
        ("q", "0"),
        ("C-c", "0"),
        ("TERM", "143"),
        ("HUP", "129"),
        ("INT", "130"),
        ("QUIT", "131"),
        ("error", "2"),
        ("panic", "101"),
    ];
    for (how, status) in endings {
        let socket = format!("alibi-e2e-out-{}-{how}", std::process::id());
        let pid_file = dir.path().join(format!("pid-{how}"));
        let fault = match how {
            "error" | "panic" => how,
            _ => "",
        };
        let cmd = format!(
            "sh -c 'echo $$ > {}; {}={fault} exec {} --model {} --text {} --device cpu'; echo EXIT=$?; sleep 60",
            pid_file.display(),
            alibi_explorer::tui::FAULT_ENV,
            env!("CARGO_BIN_EXE_alibi-explorer"),
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
                "120",
                "-y",
                "40",
                &cmd,
            ],
        );
        let cleanup = || {
            tmux(&socket, &["kill-server"]);
        };
        let screen = wait_for(&socket, |s| s.contains("sweep done"), 60);
        let running = pane_modes(&socket);
        if !screen.contains("sweep done") || running != "alt=1 mouse=1 cursor=0" {
            cleanup();
            panic!("{how}: the TUI did not start ({running}):\n{screen}");
        }
        match how {
            "q" | "C-c" => {
                tmux(&socket, &["send-keys", "-t", "e2e", how]);
            }
            "error" | "panic" => {
                tmux(&socket, &["send-keys", "-t", "e2e", "Right"]);
            }
            signal => {
                let pid = std::fs::read_to_string(&pid_file).unwrap();
                let killed = Command::new("kill")
                    .args([&format!("-{signal}"), pid.trim()])
                    .status()
                    .unwrap();
                assert!(killed.success(), "kill -{signal} {pid}");
            }
        }
        let screen = wait_for(&socket, |s| s.contains("EXIT="), 20);
        let after = pane_modes(&socket);
        cleanup();
        assert!(
            screen.contains(&format!("EXIT={status}")),
            "{how}: expected exit status {status}:\n{screen}"
        );
        assert_eq!(
            after, "alt=0 mouse=0 cursor=1",
            "{how}: terminal left as is"
        );
        assert!(
            !screen.contains("Perplexity vs input length"),
            "{how}: the alternate screen was not left:\n{screen}"
        );
    }
}
