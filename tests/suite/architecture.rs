//! The floor plan, kept true: the modules of `src/` form layers that import only downwards, and no
//! two files import each other, directly or around a loop.
//!
//! Reads every `src/**/*.rs` file (comments, strings and `#[cfg(test)] mod tests` blocks left out),
//! collects the paths it names (`use` trees with their `{..}` groups expanded, and inline paths
//! such as `crate::model::load::load_model`), resolves each to the file that defines it (the
//! longest prefix that is a file), and checks the graph of files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a file may import from its own top-level module and from modules of a
/// lower rank only.
const LAYERS: &[(&str, usize)] = &[
    ("files", 0),
    ("alibi", 1),
    ("embedded", 1),
    ("model", 2),
    ("text", 3),
    ("eval", 4),
    ("train", 5),
    ("tui", 6),
    ("bench", 7),
    ("cli", 8),
];

fn rank(top: &str) -> Option<usize> {
    LAYERS.iter().find(|(m, _)| *m == top).map(|&(_, r)| r)
}

/// A token of Rust source, as far as paths are concerned.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Source without comments, string/char literals and the trailing test module.
fn strip(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            // raw string r"..." or r#"..."#
            let mut j = i + 1;
            while j < b.len() && b[j] == '#' {
                j += 1;
            }
            j < b.len() && b[j] == '"'
        } {
            let mut hashes = 0;
            i += 1;
            while b[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' {
            // A char literal ('a', '\n') or a lifetime ('a): skip literals only.
            if next == Some('\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn tokens(src: &str) -> Vec<Tok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(b[start..i].iter().collect()));
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// Parses a path (with `{..}` groups) starting at `toks[i]`; pushes every full path to `out`.
/// Returns the index after the path.
fn parse_tree(toks: &[Tok], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(name)) => {
                path.push(name.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        None => return i,
                        _ => i = parse_tree(toks, i, &path, out),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push(path);
                return i + 1;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// The module path of a file under `src/` (`src/model/load.rs` -> `["model", "load"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

fn file_of(src: &Path, module: &[String]) -> PathBuf {
    if module.is_empty() {
        return src.join("lib.rs");
    }
    let mut p = src.to_path_buf();
    for m in &module[..module.len() - 1] {
        p.push(m);
    }
    p.push(format!("{}.rs", module[module.len() - 1]));
    p
}

/// The file that defines `path` (absolute module path): its longest prefix that is a file.
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len())
        .rev()
        .map(|n| file_of(src, &path[..n]))
        .find(|f| f.is_file())
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Edges `file -> files it imports` for every file of the library.
fn graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        if file.ends_with("main.rs") {
            continue;
        }
        let module = module_of(src, &file);
        let text = strip(&std::fs::read_to_string(&file).expect("read"));
        let toks = tokens(&text);
        // Child modules declared here (`mod x;`), which paths may start with.
        let children: BTreeSet<String> = toks
            .windows(3)
            .filter_map(|w| match w {
                [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] if m == "mod" => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        let mut paths = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let starts_path = match &toks[i] {
                Tok::Ident(id) => {
                    let after_sep = i > 0 && toks[i - 1] == Tok::PathSep;
                    let before_sep = toks.get(i + 1) == Some(&Tok::PathSep);
                    !after_sep
                        && before_sep
                        && (id == "crate" || id == "super" || id == "self" || children.contains(id))
                }
                _ => false,
            };
            if starts_path {
                let mut found = Vec::new();
                i = parse_tree(&toks, i, &[], &mut found);
                paths.extend(found);
            } else {
                i += 1;
            }
        }
        let mut targets = BTreeSet::new();
        for p in paths {
            let abs: Vec<String> = match p[0].as_str() {
                "crate" => p[1..].to_vec(),
                "self" => module
                    .iter()
                    .cloned()
                    .chain(p[1..].iter().cloned())
                    .collect(),
                "super" => {
                    let mut base = module.clone();
                    let mut rest = &p[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.into_iter().chain(rest.iter().cloned()).collect()
                }
                _ => module.iter().cloned().chain(p.iter().cloned()).collect(),
            };
            if let Some(target) = resolve(src, &abs)
                && target != file
            {
                targets.insert(target);
            }
        }
        edges.insert(file, targets);
    }
    edges
}

fn name(src: &Path, f: &Path) -> String {
    f.strip_prefix(src.parent().expect("repo"))
        .unwrap_or(f)
        .display()
        .to_string()
}

/// A cycle through the graph, if there is one (depth-first search with colours).
fn find_cycle(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        n: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).expect("on stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// `src/` of this crate, or of another checkout named by `ALIBI_ARCH_SRC` (to see the checker
/// fail on an older tree).
fn src_dir() -> PathBuf {
    std::env::var_os("ALIBI_ARCH_SRC").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    )
}

#[test]
fn no_import_cycles_between_files() {
    let src = src_dir();
    let edges = graph(&src);
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|f| name(&src, f)).collect();
        panic!("import cycle: {}", names.join(" -> "));
    }
}

#[test]
fn layers_import_only_downwards() {
    let src = src_dir();
    let mut wrong = Vec::new();
    for (file, targets) in graph(&src) {
        let from = module_of(&src, &file);
        let Some(top) = from.first() else { continue };
        let from_rank = rank(top).unwrap_or_else(|| panic!("{top} is not in LAYERS"));
        for t in targets {
            let to = module_of(&src, &t);
            let Some(to_top) = to.first() else { continue };
            let to_rank = rank(to_top).unwrap_or_else(|| panic!("{to_top} is not in LAYERS"));
            if to_top != top && to_rank >= from_rank {
                wrong.push(format!("{} -> {}", name(&src, &file), name(&src, &t)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:?}");
}

#[test]
fn no_source_file_is_huge() {
    const MAX_LINES: usize = 650;
    let mut files = Vec::new();
    rs_files(&src_dir(), &mut files);
    let big: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(big.is_empty(), "split these files: {big:?}");
}

#[test]
fn the_checker_sees_cycles_and_groups() {
    // The parser itself: grouped `use` trees, `super`, child modules, strings and comments.
    let toks = tokens(&strip(
        "use crate::model::{load::{self, X}, device::Y}; // crate::cli::Z\nlet s = \"crate::tui\"; child::f();",
    ));
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Ident("crate".into()) {
            i = parse_tree(&toks, i, &[], &mut out);
        } else {
            i += 1;
        }
    }
    let joined: Vec<String> = out.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "crate::model::load::self",
            "crate::model::load::X",
            "crate::model::device::Y"
        ]
    );
    let a = PathBuf::from("a");
    let b = PathBuf::from("b");
    let mut g = BTreeMap::new();
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(find_cycle(&g), Some(vec![a.clone(), b, a]));
}
