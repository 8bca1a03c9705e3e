//! The manual's links hold: every relative link or image in README.md and docs/*.md names a file
//! that exists (relative to the file that links it), every `#anchor` names a heading of its target
//! (GitHub's slugs), and README.md, the front door, links every chapter in docs/.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// GitHub's anchor for a heading: lowercase, punctuation other than `-` and `_` removed, each space
/// a `-` (so "a — b" gives "a--b").
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The text outside fenced code blocks, one line per line (fenced lines left empty), so that
/// headings and links inside examples do not count.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    text.lines()
        .map(|line| {
            let t = line.trim_start();
            let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
            match (fence, marker) {
                (None, Some(m)) => {
                    fence = Some(m);
                    ""
                }
                (Some(f), Some(m)) if f == m => {
                    fence = None;
                    ""
                }
                (Some(_), _) => "",
                (None, None) => line,
            }
        })
        .collect()
}

/// Every anchor a Markdown file offers: its headings' slugs, a repeated one with GitHub's `-1`,
/// `-2`, ... suffixes.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for line in outside_fences(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let s = slug(&line[hashes..]);
        let n = seen.entry(s.clone()).or_insert(0);
        out.push(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// The prose of a file with code spans removed (a span may run over a line break); a backtick run
/// without its closing run is kept as text, as Markdown does.
fn prose(text: &str) -> String {
    let joined = outside_fences(text).join("\n");
    let chars: Vec<char> = joined.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            let r = chars[j..].iter().take_while(|&&c| c == '`').count();
            if r == run {
                close = Some(j + r);
                break;
            }
            j += r.max(1);
        }
        match close {
            Some(end) => {
                out.push(' ');
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// The targets of every inline link and image, `[text](target)` or `![alt](target "title")`,
/// nested ones included.
fn link_targets(text: &str) -> Vec<String> {
    let chars: Vec<char> = prose(text).chars().collect();
    let mut out = Vec::new();
    for start in 0..chars.len() {
        if chars[start] != '[' {
            continue;
        }
        let mut depth = 0;
        let mut close = None;
        for (k, &c) in chars.iter().enumerate().skip(start) {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { continue };
        if chars.get(close + 1) != Some(&'(') {
            continue;
        }
        let mut parens = 0;
        let mut target = String::new();
        for &c in &chars[close + 1..] {
            match c {
                '(' => parens += 1,
                ')' => parens -= 1,
                _ => {}
            }
            if parens == 0 {
                break;
            }
            target.push(c);
        }
        let target = target[1..].trim();
        let target = target.split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(['<', '>']).to_string());
    }
    out
}

fn is_external(target: &str) -> bool {
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// What is wrong with the links of `text`, the content of `file` (a path relative to the
/// repository root): a missing file, or an anchor that is no heading of its file.
fn broken_links(file: &Path, text: &str) -> Vec<String> {
    let root = Path::new(ROOT);
    let dir = root.join(file).parent().unwrap().to_path_buf();
    let mut problems = Vec::new();
    for target in link_targets(text) {
        if target.is_empty() || is_external(&target) {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let (resolved, content) = if path.is_empty() {
            (root.join(file), Some(text.to_string()))
        } else {
            let p = dir.join(path);
            let c = std::fs::read_to_string(&p).ok();
            (p, c)
        };
        if !path.is_empty() && !resolved.exists() {
            problems.push(format!(
                "{}: [..]({target}): no such file {}",
                file.display(),
                resolved.display()
            ));
            continue;
        }
        if let Some(anchor) = anchor {
            let offered = content.as_deref().map(anchors).unwrap_or_default();
            if !offered.iter().any(|a| a == anchor) {
                problems.push(format!(
                    "{}: [..]({target}): no heading with the anchor #{anchor} in {} (it has: {})",
                    file.display(),
                    resolved.display(),
                    offered.join(", ")
                ));
            }
        }
    }
    problems
}

/// The chapters of the manual: docs/*.md, as paths relative to the repository root.
fn chapters() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(ROOT).unwrap().to_path_buf())
        .collect();
    out.sort();
    out
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap()
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Why does it extrapolate?"), "why-does-it-extrapolate");
    assert_eq!(
        slug("The result: ALiBi extrapolates, the baselines do not"),
        "the-result-alibi-extrapolates-the-baselines-do-not"
    );
    assert_eq!(
        slug("`slopes check` — which formula is this, or which bug?"),
        "slopes-check--which-formula-is-this-or-which-bug"
    );
    assert_eq!(
        slug("Real checkpoints: BLOOM, MPT and Falcon-RW"),
        "real-checkpoints-bloom-mpt-and-falcon-rw"
    );
    assert_eq!(
        slug("keep_under-scores (and) 2.0"),
        "keep_under-scores-and-20"
    );
    assert_eq!(
        anchors("# A\n\n## A\n```\n# not a heading\n```\n#nor this\n## B"),
        ["a", "a-1", "b"]
    );
}

#[test]
fn a_broken_link_is_caught() {
    let text = "# Here\n\n\
        [fine](tui.md), [fine too](tui.md#keys), [the front door](../README.md#the-manual),\n\
        [wrong folder](README.md), ![a missing picture](../assets/no-such.png),\n\
        [an anchor](#here), [a bad one](#there), [web](https://example.com/x.md),\n\
        [a heading that is not there](../README.md#no-such-heading),\n\
        `[in code](nowhere.md)` and\n```\n[in a fence](nowhere.md)\n```\n\
        [[nested]](../README.md#quick-start \"title\")\n";
    let problems = broken_links(Path::new("docs/example.md"), text);
    let expected = [
        "[..](README.md): no such file",
        "[..](../assets/no-such.png): no such file",
        "[..](#there): no heading with the anchor #there",
        "[..](../README.md#no-such-heading): no heading with the anchor #no-such-heading",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (p, e) in problems.iter().zip(expected) {
        assert!(p.contains(e), "{p} should say {e}");
    }
    assert_eq!(
        link_targets("see `a](b)` [x](c.md#d 'e') and [y]\n(z)"),
        ["c.md#d"]
    );
}

#[test]
fn every_link_and_anchor_resolves() {
    let mut files = vec![PathBuf::from("README.md")];
    files.extend(chapters());
    let problems: Vec<String> = files
        .iter()
        .flat_map(|f| broken_links(f, &read(f)))
        .collect();
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readme_links_every_chapter() {
    let chapters = chapters();
    assert!(
        chapters.len() >= 2,
        "docs/ should hold the manual's chapters"
    );
    let linked: Vec<String> = link_targets(&read(Path::new("README.md")))
        .into_iter()
        .map(|t| t.split('#').next().unwrap().to_string())
        .collect();
    for chapter in chapters {
        let name = chapter.to_str().unwrap();
        assert!(
            linked.iter().any(|l| l == name),
            "README.md does not link the chapter {name}"
        );
    }
}
