//! The README is the front door and docs/*.md the manual: every key of the TUI and every command
//! must be in the manual, and the README gives the two commands (run the TUI, run the tests).

#![allow(clippy::unwrap_used)]

use alibi_explorer::tui::keymap::KEY_HELP;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The README followed by every chapter of docs/.
fn manual() -> String {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut chapters: Vec<_> = std::fs::read_dir(docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    let mut all = readme();
    for chapter in chapters {
        all.push('\n');
        all.push_str(&std::fs::read_to_string(chapter).unwrap());
    }
    all
}

#[test]
fn every_key_is_documented() {
    let r = manual();
    for (keys, what) in KEY_HELP {
        let row = format!("| {} | {what} |", keys.replace('|', "\\|"));
        assert!(r.contains(&row), "the manual lacks the key row: {row}");
    }
}

#[test]
fn every_command_is_documented() {
    let r = manual();
    for cmd in [
        "slopes",
        "slopes check",
        "slopes fit",
        "family",
        "ablate",
        "inspect",
        "eval",
        "plot",
        "stats",
        "attention",
        "bench",
        "tokenizer train",
        "train",
        "tour",
    ] {
        assert!(
            r.contains(&format!("alibi-explorer {cmd} ")),
            "the manual lacks an example of `{cmd}`"
        );
    }
    let front = readme();
    assert!(front.contains("cargo run --release") && front.contains("cargo test --release"));
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.contains("cargo test --release"));
}
