//! The README is the user's manual: every key of the TUI and every command must be in it.

#![allow(clippy::unwrap_used)]

use alibi_explorer::tui::keymap::KEY_HELP;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_key_is_documented() {
    let r = readme();
    for (keys, what) in KEY_HELP {
        let row = format!("| {} | {what} |", keys.replace('|', "\\|"));
        assert!(r.contains(&row), "README lacks the key row: {row}");
    }
}

#[test]
fn every_command_is_documented() {
    let r = readme();
    for cmd in [
        "slopes",
        "slopes check",
        "slopes fit",
        "ablate",
        "inspect",
        "eval",
        "plot",
        "stats",
        "attention",
        "bench",
        "tokenizer train",
        "train",
    ] {
        assert!(
            r.contains(&format!("alibi-explorer {cmd} ")),
            "README lacks an example of `{cmd}`"
        );
    }
    assert!(r.contains("cargo run --release") && r.contains("cargo test --release"));
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.contains("cargo test --release"));
}
