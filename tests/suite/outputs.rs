//! The one output writer (`alibi_explorer::files`) against generated file systems: every output
//! path is a random kind of thing (nothing, a regular file, a link to one, a dangling link, a
//! FIFO, a link to /dev/null, a folder, a file inside a missing folder, one of the inputs, another
//! output). Whatever the mix, inputs are never changed, devices, FIFOs and links keep their kind,
//! a refused plan changes nothing, and an accepted one writes every regular output whole.

#![allow(clippy::unwrap_used)]

use alibi_explorer::files::{OutputFile, OutputPlan, write_bytes};
use alibi_explorer::model::error::one_line;
use proptest::prelude::*;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Missing,
    Regular,
    LinkToRegular,
    Dangling,
    Fifo,
    LinkToNull,
    Folder,
    InMissingFolder,
    TheInput,
    LinkToInput,
    SameAsFirstOutput,
}

const KINDS: &[Kind] = &[
    Kind::Missing,
    Kind::Regular,
    Kind::LinkToRegular,
    Kind::Dangling,
    Kind::Fifo,
    Kind::LinkToNull,
    Kind::Folder,
    Kind::InMissingFolder,
    Kind::TheInput,
    Kind::LinkToInput,
    Kind::SameAsFirstOutput,
];

/// What a path is, to compare before and after: its type, link target and contents.
fn snapshot(p: &Path) -> String {
    match std::fs::symlink_metadata(p) {
        Err(_) => "absent".into(),
        Ok(m) if m.file_type().is_symlink() => {
            format!("link to {}", std::fs::read_link(p).unwrap().display())
        }
        Ok(m) if m.file_type().is_fifo() => "fifo".into(),
        Ok(m) if m.file_type().is_char_device() => "char device".into(),
        Ok(m) if m.is_dir() => "folder".into(),
        Ok(_) => format!("file {:?}", std::fs::read(p).unwrap()),
    }
}

fn make(dir: &Path, i: usize, kind: Kind, input: &Path, first: Option<&PathBuf>) -> PathBuf {
    let p = dir.join(format!("out{i}"));
    match kind {
        Kind::Missing => {}
        Kind::Regular => std::fs::write(&p, b"old").unwrap(),
        Kind::LinkToRegular => {
            let t = dir.join(format!("target{i}"));
            std::fs::write(&t, b"old target").unwrap();
            std::os::unix::fs::symlink(&t, &p).unwrap();
        }
        Kind::Dangling => {
            std::os::unix::fs::symlink(format!("created{i}"), &p).unwrap();
        }
        Kind::Fifo => {
            assert!(
                std::process::Command::new("mkfifo")
                    .arg(&p)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        Kind::LinkToNull => std::os::unix::fs::symlink("/dev/null", &p).unwrap(),
        Kind::Folder => std::fs::create_dir(&p).unwrap(),
        Kind::InMissingFolder => return dir.join(format!("missing{i}")).join("out"),
        Kind::TheInput => return input.to_path_buf(),
        Kind::LinkToInput => std::os::unix::fs::symlink(input, &p).unwrap(),
        Kind::SameAsFirstOutput => {
            if let Some(f) = first {
                return f.parent().unwrap().join(".").join(f.file_name().unwrap());
            }
        }
    }
    p
}

fn expected_refusal(kinds: &[Kind]) -> bool {
    kinds.iter().enumerate().any(|(i, k)| match k {
        Kind::Folder | Kind::InMissingFolder | Kind::TheInput | Kind::LinkToInput => true,
        // Two names for one regular file; the first output being a stream is allowed twice.
        Kind::SameAsFirstOutput => {
            i > 0
                && !matches!(kinds[0], Kind::Fifo | Kind::LinkToNull)
                && !matches!(
                    kinds[0],
                    Kind::Folder | Kind::InMissingFolder | Kind::TheInput | Kind::LinkToInput
                )
        }
        _ => false,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn outputs_follow_the_one_rule(kinds in prop::collection::vec(prop::sample::select(KINDS), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.txt");
        std::fs::write(&input, b"the input text").unwrap();
        let mut outs: Vec<PathBuf> = Vec::new();
        for (i, &k) in kinds.iter().enumerate() {
            let p = make(dir.path(), i, k, &input, outs.first());
            outs.push(p);
        }
        let mut plan = OutputPlan::new();
        plan.input("--text", &input);
        for (i, p) in outs.iter().enumerate() {
            plan.output(&format!("--out{i}"), p);
        }
        let names: Vec<PathBuf> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        let before: Vec<String> = names.iter().map(|p| snapshot(p)).collect();
        let checked = plan.check();
        let after: Vec<String> = names.iter().map(|p| snapshot(p)).collect();
        prop_assert_eq!(&before, &after, "the check changed the file system");
        let refused = expected_refusal(&kinds);
        prop_assert_eq!(checked.is_err(), refused, "kinds {:?}: {:?}", kinds, checked);
        if let Err(e) = checked {
            prop_assert_eq!(e.lines().count(), 1);
            return Ok(());
        }
        // Write each output (FIFOs through a reader thread).
        for (i, p) in outs.iter().enumerate() {
            let body = format!("output {i}");
            let is_fifo = std::fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo());
            let reader = is_fifo.then(|| {
                let p = p.clone();
                std::thread::spawn(move || std::fs::read_to_string(p).unwrap())
            });
            write_bytes(p, body.as_bytes()).unwrap();
            if let Some(r) = reader {
                prop_assert_eq!(r.join().unwrap(), body);
            }
        }
        prop_assert_eq!(std::fs::read(&input).unwrap(), b"the input text".to_vec());
        for (i, (&k, p)) in kinds.iter().zip(&outs).enumerate() {
            let body = format!("output {i}");
            match k {
                Kind::Fifo => prop_assert!(std::fs::metadata(p).unwrap().file_type().is_fifo()),
                Kind::LinkToNull => {
                    prop_assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_symlink());
                    prop_assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
                }
                Kind::LinkToRegular | Kind::Dangling => {
                    prop_assert!(std::fs::symlink_metadata(p).unwrap().file_type().is_symlink());
                    prop_assert_eq!(std::fs::read_to_string(p).unwrap(), body);
                }
                Kind::Missing | Kind::Regular => {
                    prop_assert_eq!(std::fs::read_to_string(p).unwrap(), body);
                }
                _ => {}
            }
        }
        // No temporary files left behind.
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            prop_assert!(!name.contains(".tmp"), "left {}", name);
        }
    }
}

#[test]
fn an_uncommitted_output_leaves_nothing_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.json");
    std::fs::write(&p, "old").unwrap();
    {
        let mut f = OutputFile::create(&p).unwrap();
        f.write_all(b"half").unwrap();
    }
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn rewriting_a_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.json");
    std::fs::write(&p, "old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    write_bytes(&p, b"new").unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn one_line_leaves_out_backtraces() {
    let bt = std::backtrace::Backtrace::force_capture();
    let msg = format!("shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]\n{bt}");
    assert!(msg.lines().count() > 3, "{msg}");
    assert_eq!(
        one_line(&msg),
        "shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]"
    );
    assert_eq!(one_line("a\n  b\n"), "a b");
    assert_eq!(one_line("cannot load\ndisabled backtrace"), "cannot load");
}
