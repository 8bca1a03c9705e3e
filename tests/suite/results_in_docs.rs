//! The numbers the manual quotes are the numbers measured: every table that `scripts/eval-shipped.sh`
//! and `scripts/why-extrapolates.sh` write to `assets/results/` appears verbatim in
//! docs/findings.md, and the README's headline table (the paper's claim at our scale) agrees with
//! `assets/results/headline.md` to the digits it prints. When the shipped family changes, these fail
//! until the docs quote the new measurements.

#![allow(clippy::unwrap_used)]

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap()
}

/// The Markdown tables of `text`: each run of consecutive lines starting with `|`.
fn tables(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.starts_with('|') {
            cur.push(line);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A table row's cells, trimmed, without the outer pipes.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The numbers in `s` with the decimals each is printed to: thousands separators dropped, `+`,
/// `-` and `−` (U+2212) read as signs when they start a number.
fn numbers(s: &str) -> Vec<(f64, usize)> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let signed =
            matches!(c, '+' | '-' | '−') && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if !(c.is_ascii_digit() || signed) {
            i += 1;
            continue;
        }
        let negative = matches!(c, '-' | '−');
        if signed {
            i += 1;
        }
        let mut digits = String::new();
        let mut decimals = None;
        while i < chars.len() {
            let d = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if d.is_ascii_digit() {
                digits.push(d);
                decimals = decimals.map(|n| n + 1);
            } else if d == ',' && decimals.is_none() && next_digit {
                // a thousands separator
            } else if d == '.' && decimals.is_none() && next_digit {
                digits.push('.');
                decimals = Some(0);
            } else {
                break;
            }
            i += 1;
        }
        let v: f64 = digits.parse().unwrap();
        out.push((if negative { -v } else { v }, decimals.unwrap_or(0)));
    }
    out
}

/// Whether `printed` (with its decimals) is `measured` rounded to those decimals.
fn agrees(printed: (f64, usize), measured: f64) -> bool {
    let scale = 10f64.powi(printed.1 as i32);
    ((measured * scale).round() - printed.0 * scale).abs() < 0.5
}

#[test]
fn number_parsing_reads_separators_signs_and_decimals() {
    assert_eq!(
        numbers("**1,006.6 ± 13.1** (+6%) 745 MiB (−19%) at 2L = 256"),
        vec![
            (1006.6, 1),
            (13.1, 1),
            (6.0, 0),
            (745.0, 0),
            (-19.0, 0),
            (2.0, 0),
            (256.0, 0)
        ]
    );
    assert!(agrees((1006.6, 1), 1006.60) && agrees((13.1, 1), 13.08));
    assert!(!agrees((13.1, 1), 13.16) && !agrees((3179.0, 0), 3582.0));
}

#[test]
fn findings_quote_every_measured_table_verbatim() {
    let findings = read("docs/findings.md");
    for src in [
        "assets/results/table.md",
        "assets/results/targets.md",
        "assets/results/why/tables.md",
    ] {
        let text = read(src);
        let found = tables(&text);
        assert!(!found.is_empty(), "{src} holds no table");
        for t in found {
            let block = t.join("\n");
            assert!(
                findings.contains(&block),
                "docs/findings.md does not quote this table of {src} (re-run the script, then paste it):\n{block}"
            );
        }
    }
}

/// One row of assets/results/headline.md.
struct Measured {
    model: String,
    trained: f64,
    evaluated: f64,
    books: Vec<f64>,
    wikitext: Vec<f64>,
    tps: Option<f64>,
    rss: Option<f64>,
}

fn measured() -> (Vec<Measured>, Vec<f64>) {
    let text = read("assets/results/headline.md");
    let t = &tables(&text)[0];
    let rows = t[2..]
        .iter()
        .map(|r| {
            let c = cells(r);
            let n = |i: usize| numbers(&c[i]).iter().map(|x| x.0).collect::<Vec<_>>();
            Measured {
                model: c[0].clone(),
                trained: n(1)[0],
                evaluated: n(2)[0],
                books: n(3),
                wikitext: n(4),
                tps: n(5).first().copied(),
                rss: n(6).first().copied(),
            }
        })
        .collect();
    // The summary sentence: "+8% tokens/s and used -15% peak memory".
    let summary = text
        .lines()
        .find(|l| l.starts_with("ALiBi at L trained"))
        .expect("headline.md's summary sentence");
    let pct: Vec<f64> = numbers(summary).iter().take(2).map(|x| x.0).collect();
    (rows, pct)
}

#[test]
fn the_readme_headline_table_is_the_measured_one() {
    let (rows, pct) = measured();
    let alibi = rows
        .iter()
        .find(|r| r.model == "ALiBi" && r.evaluated == 2.0 * r.trained)
        .expect("ALiBi at 2L in headline.md");
    let sinusoidal = rows
        .iter()
        .find(|r| r.model == "Sinusoidal" && r.evaluated == r.trained)
        .expect("sinusoidal at 2L in headline.md");
    assert_eq!(sinusoidal.trained, alibi.evaluated);
    let readme = read("README.md");
    let table = tables(&readme)
        .into_iter()
        .find(|t| t[0].contains("paper"))
        .expect("the README's headline table (its header names the paper)");
    let header = cells(table[0]);
    let l = alibi.trained;
    let heads = [
        numbers(&header[2]).iter().map(|x| x.0).collect::<Vec<_>>(),
        numbers(&header[3]).iter().map(|x| x.0).collect(),
    ];
    assert!(
        heads[0].contains(&l) && heads[0].contains(&(2.0 * l)),
        "README header '{}' is not ALiBi at L = {l}, evaluated at {}",
        header[2],
        2.0 * l
    );
    assert!(
        heads[1].contains(&(2.0 * l)),
        "README header '{}' is not sinusoidal at {}",
        header[3],
        2.0 * l
    );
    let row = |label: &str| -> Vec<String> {
        let r = table
            .iter()
            .find(|r| cells(r)[0].starts_with(label))
            .unwrap_or_else(|| panic!("no README headline row '{label}'"));
        cells(r)
    };
    let check = |label: &str, col: usize, want: &[f64]| {
        let cell = &row(label)[col];
        let got = numbers(cell);
        assert!(
            got.len() >= want.len() && got.iter().zip(want).all(|(g, w)| agrees(*g, *w)),
            "README headline '{label}' shows '{cell}', assets/results/headline.md measured {want:?}"
        );
    };
    check("perplexity ± s.e., books", 2, &alibi.books);
    check("perplexity ± s.e., books", 3, &sinusoidal.books);
    check("perplexity ± s.e., WikiText", 2, &alibi.wikitext);
    check("perplexity ± s.e., WikiText", 3, &sinusoidal.wikitext);
    check("training tokens/s", 2, &[alibi.tps.unwrap(), pct[0]]);
    check("training tokens/s", 3, &[sinusoidal.tps.unwrap()]);
    check("peak memory", 2, &[alibi.rss.unwrap(), pct[1]]);
    check("peak memory", 3, &[sinusoidal.rss.unwrap()]);
}

#[test]
fn the_headline_cost_is_the_benchmarked_one() {
    // headline.md's speed and memory come from the side-by-side benchmark it names.
    let (rows, _) = measured();
    let bench = read("bench/headline-train.md");
    let line = bench
        .lines()
        .find(|l| l.starts_with("headline: "))
        .expect("bench/headline-train.md's headline: line");
    let kv = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {line}"))
            .parse()
            .unwrap()
    };
    let alibi = rows.iter().find(|r| r.model == "ALiBi").unwrap();
    let sinusoidal = rows
        .iter()
        .find(|r| r.tps.is_some() && r.model == "Sinusoidal")
        .unwrap();
    assert_eq!(kv("train_len"), alibi.trained, "{line}");
    assert_eq!(
        (alibi.tps, alibi.rss, sinusoidal.tps, sinusoidal.rss),
        (
            Some(kv("alibi_tps")),
            Some(kv("alibi_rss")),
            Some(kv("sinusoidal_tps")),
            Some(kv("sinusoidal_rss"))
        ),
        "assets/results/headline.md was not made from bench/headline-train.md (re-run scripts/eval-shipped.sh)"
    );
}
