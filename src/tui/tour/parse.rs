//! The tour file format, parsed strictly: every mistake is one line naming the file, the line and
//! the problem, with a hint.
//!
//! ```text
//! # Title of the tour                  <- first line that is not blank
//! compare: models/sinusoidal           <- optional header: model, compare, text
//!
//! Introduction (the lecture's index page).
//!
//! ## A step's title                    <- each `## ` heading starts a step
//! focus: chart                         <- optional header, up to the first line that is not
//! cursor: train_len                       `key: value` with a lowercase key
//! task: press → until the cursor passes {train_len}
//! done: cursor > train_len
//!
//! The card's text, with live numbers: head 0's slope is {slope 0}.
//! ```

use super::{
    Check, HeadRef, Index, Length, Op, Piece, Placeholder, SlopeChoice, Step, StepState, Task,
    Template, Tour, TourSource,
};
use crate::alibi::Preset;
use crate::tui::keymap::Focus;
use crate::tui::views::AttnView;
use std::path::PathBuf;

/// Keys of a step's header.
pub const STEP_KEYS: &[&str] = &[
    "focus", "view", "cursor", "layer", "head", "slopes", "task", "done",
];
/// Keys of the tour's header (under the `# ` title).
pub const TOUR_KEYS: &[&str] = &["model", "compare", "text"];
/// Names of the panels (`focus:`).
pub const PANELS: &[(&str, Focus)] = &[
    ("chart", Focus::Chart),
    ("slopes", Focus::Slopes),
    ("bias", Focus::Bias),
    ("attention", Focus::Attention),
];

/// Parses a tour; `name` is the file's name in messages.
pub fn parse(text: &str, name: &str) -> Result<Tour, String> {
    Parser { name }.tour(text)
}

/// Reads and parses a tour file.
pub fn read(path: &std::path::Path) -> Result<(Tour, TourSource), String> {
    let text = crate::files::read_limited_string(path, super::MAX_TOUR_BYTES, "a tour file")?;
    let name = path.display().to_string();
    let tour = parse(&text, &name)?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((
        tour,
        TourSource {
            name,
            base,
            builtin: false,
        },
    ))
}

/// The shipped tour, parsed (its paths are relative to the repository's `assets/`).
pub fn builtin() -> Result<(Tour, TourSource), String> {
    let tour = parse(super::BUILTIN, super::BUILTIN_NAME)?;
    Ok((
        tour,
        TourSource {
            name: super::BUILTIN_NAME.to_string(),
            base: crate::embedded::assets_dir(),
            builtin: true,
        },
    ))
}

struct Parser<'a> {
    name: &'a str,
}

/// A header line: `key: value` with a lowercase key.
fn header_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    ok.then(|| (key, value.trim()))
}

fn heading(line: &str, level: usize) -> Option<&str> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    (hashes == level && line[hashes..].starts_with(' ')).then(|| line[hashes..].trim())
}

impl Parser<'_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> String {
        format!("{}:{line}: {msg}", self.name)
    }

    fn tour(&self, text: &str) -> Result<Tour, String> {
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let mut i = 0;
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        let Some(title) = lines.get(i).and_then(|l| heading(l, 1)) else {
            return Err(self.err(
                (i + 1).min(lines.len().max(1)),
                "a tour starts with a '# Title' line (hint: see docs/tour.md for the format)",
            ));
        };
        if title.is_empty() {
            return Err(self.err(
                i + 1,
                "the tour's title is empty (hint: '# A tour of ALiBi')",
            ));
        }
        let mut tour = Tour {
            title: title.to_string(),
            intro: Vec::new(),
            model: None,
            compare: Vec::new(),
            text: None,
            steps: Vec::new(),
        };
        i += 1;
        let mut seen: Vec<&str> = Vec::new();
        while let Some((key, value)) = lines.get(i).and_then(|l| header_line(l)) {
            let n = i + 1;
            if seen.contains(&key) {
                return Err(self.err(n, format!("'{key}:' given twice in the tour's header")));
            }
            seen.push(key);
            if value.is_empty() {
                return Err(self.err(n, format!("'{key}:' has no value")));
            }
            match key {
                "model" => tour.model = Some((n, PathBuf::from(value))),
                "text" => tour.text = Some((n, PathBuf::from(value))),
                "compare" => {
                    for p in value.split(',').map(str::trim) {
                        if p.is_empty() {
                            return Err(self.err(
                                n,
                                "'compare:' has an empty entry (hint: separate model folders with commas)",
                            ));
                        }
                        tour.compare.push((n, PathBuf::from(p)));
                    }
                }
                _ => {
                    let hint = if STEP_KEYS.contains(&key) {
                        " (hint: step keys go under a '## ' step heading)"
                    } else {
                        ""
                    };
                    return Err(self.err(
                        n,
                        format!(
                            "unknown key '{key}:' in the tour's header (known: {}){hint}",
                            TOUR_KEYS.join(", ")
                        ),
                    ));
                }
            }
            i += 1;
        }
        let mut fence = false;
        while i < lines.len() {
            let line = lines[i];
            let n = i + 1;
            if line.trim_start().starts_with("```") {
                fence = !fence;
            }
            if !fence && heading(line, 1).is_some() {
                return Err(self.err(
                    n,
                    "a second '# ' title (hint: a tour has one '# ' title; steps are '## ' headings)",
                ));
            }
            if !fence && let Some(title) = heading(line, 2) {
                let (step, next) = self.step(&lines, i, title)?;
                tour.steps.push(step);
                i = next;
                continue;
            }
            if tour.steps.is_empty() {
                tour.intro.push(self.template(line, n)?);
            }
            i += 1;
        }
        if fence {
            return Err(self.err(lines.len(), "a ``` code block is not closed"));
        }
        if tour.steps.is_empty() {
            return Err(self.err(
                lines.len().max(1),
                "the tour has no steps (hint: each step starts with a '## Step title' line)",
            ));
        }
        trim_blank(&mut tour.intro);
        Ok(tour)
    }

    /// Parses the step whose heading is `lines[start]`; returns it and the index after it.
    fn step(&self, lines: &[&str], start: usize, title: &str) -> Result<(Step, usize), String> {
        let line = start + 1;
        if title.is_empty() {
            return Err(self.err(line, "a step's title is empty (hint: '## The bias')"));
        }
        let mut step = Step {
            line,
            title: self.template(title, line)?,
            state: StepState::default(),
            task: None,
            body: Vec::new(),
        };
        let mut i = start + 1;
        let mut seen: Vec<&str> = Vec::new();
        let mut task: Option<(usize, Template)> = None;
        let mut done: Option<(usize, Check)> = None;
        while let Some((key, value)) = lines.get(i).and_then(|l| header_line(l)) {
            let n = i + 1;
            if seen.contains(&key) {
                return Err(self.err(n, format!("'{key}:' given twice in this step")));
            }
            seen.push(key);
            if value.is_empty() {
                return Err(self.err(n, format!("'{key}:' has no value")));
            }
            let s = &mut step.state;
            match key {
                "focus" => s.focus = Some(self.panel(value, n)?),
                "view" => s.view = Some(self.view(value, n)?),
                "cursor" => s.cursor = Some(self.length(value, n)?),
                "layer" => s.layer = Some(self.index(value, n, "layer")?),
                "head" => s.head = Some(self.index(value, n, "head")?),
                "slopes" => s.slopes = Some(self.slopes(value, n)?),
                "task" => task = Some((n, self.template(value, n)?)),
                "done" => done = Some((n, self.check(value, n)?)),
                _ => {
                    let hint = if TOUR_KEYS.contains(&key) {
                        " (hint: model, compare and text go in the tour's header, under the '# ' title)"
                    } else {
                        ""
                    };
                    return Err(self.err(
                        n,
                        format!(
                            "unknown key '{key}:' (known: {}){hint}",
                            STEP_KEYS.join(", ")
                        ),
                    ));
                }
            }
            i += 1;
        }
        step.task = match (task, done) {
            (Some((_, text)), Some((_, done))) => Some(Task { text, done }),
            (None, None) => None,
            (Some((n, _)), None) => {
                return Err(self.err(
                    n,
                    "'task:' without 'done:' (hint: add 'done: cursor > train_len' or another check, so the card notices)",
                ));
            }
            (None, Some((n, _))) => {
                return Err(self.err(
                    n,
                    "'done:' without 'task:' (hint: add 'task: what the learner should do')",
                ));
            }
        };
        let mut fence: Option<usize> = None;
        while i < lines.len() {
            let l = lines[i];
            if l.trim_start().starts_with("```") {
                fence = if fence.is_some() { None } else { Some(i + 1) };
            }
            if fence.is_none() && (heading(l, 2).is_some() || heading(l, 1).is_some()) {
                break;
            }
            step.body.push(self.template(l, i + 1)?);
            i += 1;
        }
        if let Some(n) = fence {
            return Err(self.err(n, "a ``` code block is not closed"));
        }
        trim_blank(&mut step.body);
        Ok((step, i))
    }

    fn panel(&self, v: &str, n: usize) -> Result<Focus, String> {
        PANELS
            .iter()
            .find(|(name, _)| *name == v)
            .map(|&(_, f)| f)
            .ok_or_else(|| {
                self.err(
                    n,
                    format!(
                        "unknown panel '{v}' (known: {})",
                        PANELS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }

    fn view(&self, v: &str, n: usize) -> Result<AttnView, String> {
        AttnView::ALL
            .iter()
            .copied()
            .find(|a| a.name() == v)
            .ok_or_else(|| {
                self.err(
                    n,
                    format!(
                        "unknown view '{v}' (known: {})",
                        AttnView::ALL.map(AttnView::name).join(", ")
                    ),
                )
            })
    }

    fn length(&self, v: &str, n: usize) -> Result<Length, String> {
        let bad = || {
            self.err(
                n,
                format!(
                    "'{v}' is not a length (hint: train_len, a multiple such as 4x or 0.5x, tokens such as 512, min or max)"
                ),
            )
        };
        match v {
            "train_len" => Ok(Length::Train),
            "min" => Ok(Length::Min),
            "max" => Ok(Length::Max),
            _ => {
                if let Some(f) = v.strip_suffix('x') {
                    let f: f64 = f.trim().parse().map_err(|_| bad())?;
                    if !(f.is_finite() && f > 0.0) {
                        return Err(bad());
                    }
                    Ok(Length::Times(f))
                } else {
                    let t: usize = v.parse().map_err(|_| bad())?;
                    if t == 0 {
                        return Err(bad());
                    }
                    Ok(Length::Tokens(t))
                }
            }
        }
    }

    fn index(&self, v: &str, n: usize, what: &str) -> Result<Index, String> {
        if v == "last" {
            return Ok(Index::Last);
        }
        v.parse().map(Index::At).map_err(|_| {
            self.err(
                n,
                format!("'{v}' is not a {what} (hint: a number from 0, or `last`)"),
            )
        })
    }

    fn slopes(&self, v: &str, n: usize) -> Result<SlopeChoice, String> {
        if v == "model" {
            return Ok(SlopeChoice::Model);
        }
        Preset::ALL
            .iter()
            .copied()
            .find(|p| p.name() == v)
            .map(SlopeChoice::Preset)
            .ok_or_else(|| {
                self.err(
                    n,
                    format!(
                        "unknown slopes '{v}' (known: model, {})",
                        Preset::ALL.map(Preset::name).join(", ")
                    ),
                )
            })
    }

    fn check(&self, v: &str, n: usize) -> Result<Check, String> {
        let hint = "(hint: 'VARIABLE OP VALUE' with VARIABLE cursor, head, layer, view, focus, slopes or recipes and OP one of < <= > >= = !=, e.g. 'cursor > train_len')";
        let parts: Vec<&str> = v.split_whitespace().collect();
        let [var, op, value] = parts[..] else {
            return Err(self.err(n, format!("'done: {v}' is not a check {hint}")));
        };
        let op = match op {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return Err(self.err(n, format!("'{op}' is not a comparison {hint}"))),
        };
        let only_eq = |what: &str| {
            if matches!(op, Op::Eq | Op::Ne) {
                Ok(())
            } else {
                Err(self.err(
                    n,
                    format!("{what} can only be compared with = or != {hint}"),
                ))
            }
        };
        Ok(match var {
            "cursor" => Check::Cursor(op, self.length(value, n)?),
            "head" => Check::Head(op, self.index(value, n, "head")?),
            "layer" => Check::Layer(op, self.index(value, n, "layer")?),
            "view" => {
                only_eq("view")?;
                Check::View(op, self.view(value, n)?)
            }
            "focus" => {
                only_eq("focus")?;
                Check::Focus(op, self.panel(value, n)?)
            }
            "slopes" => {
                only_eq("slopes")?;
                Check::Slopes(op, self.slopes(value, n)?)
            }
            "recipes" => Check::Recipes(
                op,
                value.parse().map_err(|_| {
                    self.err(
                        n,
                        format!("'{value}' is not a number of recipe curves {hint}"),
                    )
                })?,
            ),
            _ => return Err(self.err(n, format!("unknown variable '{var}' {hint}"))),
        })
    }

    /// Text with `{placeholders}`; `{{` and `}}` are literal braces.
    fn template(&self, text: &str, n: usize) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                lit.push(c);
                rest = &rest[2..];
            } else if c == '{' {
                let Some(end) = rest.find('}') else {
                    return Err(self.err(
                        n,
                        "a '{' without its '}' (hint: write {{ for a literal brace)",
                    ));
                };
                let inner = &rest[1..end];
                if !lit.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Live(self.placeholder(inner, n)?));
                rest = &rest[end + 1..];
            } else if c == '}' {
                return Err(self.err(
                    n,
                    "a '}' without its '{' (hint: write }} for a literal brace)",
                ));
            } else {
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Template(pieces))
    }

    fn placeholder(&self, inner: &str, n: usize) -> Result<Placeholder, String> {
        let words: Vec<&str> = inner.split_whitespace().collect();
        let known = || {
            super::PLACEHOLDERS
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let Some((&name, args)) = words.split_first() else {
            return Err(self.err(
                n,
                format!("an empty placeholder '{{}}' (known: {})", known()),
            ));
        };
        let bad_args = |usage: &str| {
            self.err(
                n,
                format!("'{{{inner}}}': wrong arguments (usage: {usage})"),
            )
        };
        let head = |a: Option<&&str>, usage: &str| -> Result<HeadRef, String> {
            match a {
                None => Ok(HeadRef::Selected),
                Some(&"last") => Ok(HeadRef::Fixed(Index::Last)),
                Some(s) => s
                    .parse()
                    .map(|h| HeadRef::Fixed(Index::At(h)))
                    .map_err(|_| bad_args(usage)),
            }
        };
        let curve = |a: Option<&&str>, usage: &str| -> Result<usize, String> {
            a.map_or(Ok(0), |s| s.parse().map_err(|_| bad_args(usage)))
        };
        let max_args = |k: usize, usage: &str| {
            if args.len() > k {
                Err(bad_args(usage))
            } else {
                Ok(())
            }
        };
        let plain = |p: Placeholder| {
            max_args(0, &format!("{{{name}}}"))?;
            Ok(p)
        };
        match name {
            "model" => plain(Placeholder::Model),
            "position" => plain(Placeholder::Position),
            "heads" => plain(Placeholder::Heads),
            "layers" => plain(Placeholder::Layers),
            "train_len" => plain(Placeholder::TrainLen),
            "cursor" => plain(Placeholder::Cursor),
            "ratio" => plain(Placeholder::Ratio),
            "lmax" => plain(Placeholder::Lmax),
            "head" => plain(Placeholder::Head),
            "layer" => plain(Placeholder::Layer),
            "slopes" => plain(Placeholder::Slopes),
            "slope" | "reach" | "mean_distance" | "prior_distance" | "zeroed" => {
                let usage = format!("{{{name} H}} with H a head number, `last`, or none");
                max_args(1, &usage)?;
                let h = head(args.first(), &usage)?;
                Ok(match name {
                    "slope" => Placeholder::Slope(h),
                    "reach" => Placeholder::Reach(h),
                    "mean_distance" => Placeholder::MeanDistance(h),
                    "prior_distance" => Placeholder::PriorDistance(h),
                    _ => Placeholder::Zeroed(h),
                })
            }
            "bias" => {
                let usage =
                    "{bias H D} with H a head (number or `last`) and D a distance in tokens";
                let [h, d] = args else {
                    return Err(bad_args(usage));
                };
                let h = head(Some(h), usage)?;
                let d = d.parse().map_err(|_| bad_args(usage))?;
                Ok(Placeholder::Bias(h, d))
            }
            "ppl" | "ppl_train" | "name" => {
                let usage = format!("{{{name} N}} with N a curve number (0 = the main model)");
                max_args(1, &usage)?;
                let c = curve(args.first(), &usage)?;
                Ok(match name {
                    "ppl" => Placeholder::Ppl(c),
                    "ppl_train" => Placeholder::PplTrain(c),
                    _ => Placeholder::Name(c),
                })
            }
            _ => Err(self.err(
                n,
                format!("unknown placeholder '{{{inner}}}' (known: {})", known()),
            )),
        }
    }
}

fn trim_blank(lines: &mut Vec<Template>) {
    while lines.first().is_some_and(Template::is_blank) {
        lines.remove(0);
    }
    while lines.last().is_some_and(Template::is_blank) {
        lines.pop();
    }
}

impl Template {
    /// Whether the template is empty or only spaces.
    pub fn is_blank(&self) -> bool {
        self.0
            .iter()
            .all(|p| matches!(p, Piece::Text(t) if t.trim().is_empty()))
    }

    /// The text with placeholders written as in the file (`{slope 0}`), for messages and tests.
    pub fn source(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.replace('{', "{{").replace('}', "}}"),
                Piece::Live(p) => format!("{p:?}"),
            })
            .collect()
    }
}
