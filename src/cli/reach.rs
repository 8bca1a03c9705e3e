//! `reach`: what a model can retrieve, and from how far back. The copy test of
//! [`crate::eval::reach`] at doubling distances (a span, a gap of the text's own filler, the span
//! again), past the training length, for one model and its `--compare` models: copy gain, top-1
//! copy accuracy and, with `--heads`, every head's induction, duplicate-token and previous-token
//! scores (TransformerLens' definitions). Arguments, resolution, the run and its outputs live here.

use super::common::{InputArgs, ModelArgs};
use crate::eval::needle::{NeedlePoint, needle_cases, needle_test};
use crate::eval::plot::copy_curve::CopyCurve;
use crate::eval::reach::{CopyOptions, CopyResult, CopySpec, SpanKind, copy_cases, copy_test};
use crate::model::load::{LoadedModel, ModelSource};
use clap::Args;
use color_eyre::eyre::{Result, bail, eyre};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::eval::reach::DEFAULT_REACH_FACTOR;

/// Arguments of `reach`.
#[derive(Debug, Args)]
pub struct ReachArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text or token ids the spans and fillers are taken from (held-out text).
    #[command(flatten)]
    pub input: InputArgs,
    /// More models measured on the same spans (each with its own tokenizer); repeatable.
    #[arg(long, value_name = "PATH")]
    pub compare: Vec<PathBuf>,
    /// Tokens in the repeated span.
    #[arg(long, default_value_t = crate::eval::reach::DEFAULT_SPAN)]
    pub span: usize,
    /// Distances between a token and its copy (span + gap): a list (32,256) or a doubling range
    /// (default SPAN..16 x train_len).
    #[arg(long)]
    pub distances: Option<String>,
    /// Spans per distance (different spans and fillers).
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// Seed of the spans' places.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `text` (spans of the text) or `random` (random tokens of the text, TransformerLens'
    /// repeated random tokens).
    #[arg(long, default_value = "text")]
    pub span_kind: SpanKind,
    /// Also score every head (induction, duplicate-token, previous-token) at each distance.
    #[arg(long)]
    pub heads: bool,
    /// Override the first model's ALiBi slopes: a preset name or a JSON file with a "slopes" array.
    #[arg(long)]
    pub slopes: Option<String>,
    /// A long-context recipe for the first model (interp:F, interp:dynamic, ntk, window:W or
    /// sinks:K+W, as `eval --recipe`), applied at each case's own length; `--compare` the same
    /// model to see the recipe against the original.
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// Use only the first N tokens of the input.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per model and distance.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Draw copy gain vs distance (one curve per model, ± 1 s.e., train_len marked) to an .svg
    /// or .png file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Also run the needle grid: a pass key at each depth of a filler context of each length, the
    /// question at the end (needs the model's tokenizer).
    #[arg(long)]
    pub needle: bool,
    /// Needle context lengths: a list or a doubling range (default 64..16 x train_len).
    #[arg(long, value_name = "LENGTHS")]
    pub needle_lengths: Option<String>,
    /// Depths of the pass key in the filler, each from 0 (start) to 1 (just before the question).
    #[arg(long, value_name = "Q,..", value_delimiter = ',', default_values_t = crate::eval::needle::DEFAULT_DEPTHS)]
    pub needle_depths: Vec<f64>,
    /// Keys (and stretches of filler) per cell of the needle grid.
    #[arg(long, default_value_t = 5)]
    pub needle_samples: usize,
}

/// One model's measurements.
struct Measured {
    name: String,
    position: String,
    train_len: usize,
    slopes: Option<Vec<f64>>,
    points: Vec<CopyResult>,
    needle: Vec<NeedlePoint>,
}

/// Runs `reach`.
pub fn run(a: &ReachArgs) -> Result<()> {
    if a.samples == 0 || a.samples > 10_000 {
        bail!(
            "--samples {} is out of range (hint: use 1 to 10000)",
            a.samples
        );
    }
    if a.span < crate::eval::reach::MIN_SPAN_TOKENS {
        bail!(
            "--span {} leaves nothing to score (hint: use a span of at least {})",
            a.span,
            crate::eval::reach::MIN_SPAN_TOKENS
        );
    }
    let input = a.input.input()?;
    if let Some(p) = &a.plot {
        crate::eval::plot::check_extension(p).map_err(|e| eyre!(e))?;
    }
    let outputs = [("--json", &a.json), ("--csv", &a.csv), ("--plot", &a.plot)];
    let mut sources = vec![a.model.source()];
    sources.extend(a.compare.iter().map(|p| ModelSource {
        path: p.clone(),
        ..a.model.source()
    }));
    for s in &sources {
        crate::eval::command::check_outputs(Some(s), Some(&input), a.slopes.as_ref(), &outputs)?;
    }
    let models: Vec<LoadedModel> = sources
        .iter()
        .map(|s| s.load().map_err(|e| eyre!(e)))
        .collect::<Result<_>>()?;
    let first_len = models[0].model.config().train_len;
    let distances = match &a.distances {
        Some(spec) => crate::eval::parse_lengths(spec).map_err(|e| eyre!("--distances: {e}"))?,
        None => crate::eval::parse_lengths(&format!(
            "{}..{}",
            a.span,
            (DEFAULT_REACH_FACTOR * first_len).max(a.span)
        ))
        .map_err(|e| eyre!(e))?,
    };
    let needle_lengths = needle_lengths(a, first_len)?;
    if let Some(&d) = distances.iter().find(|&&d| d < a.span) {
        bail!(
            "--distances {d} is shorter than --span {} (a distance is span + gap; hint: start the distances at {})",
            a.span,
            a.span
        );
    }
    let tty = std::io::stderr().is_terminal();
    let mut measured = Vec::new();
    for (i, loaded) in models.iter().enumerate() {
        let model = &loaded.model;
        let cfg = model.config();
        let slopes = match (&a.slopes, i) {
            (Some(spec), 0) => {
                if cfg.position != crate::model::Position::Alibi {
                    bail!(
                        "--slopes applies to ALiBi models; '{}' uses {} positions",
                        loaded.name,
                        cfg.position
                    );
                }
                Some(crate::alibi::file::resolve_slopes(spec, cfg.n_heads).map_err(|e| eyre!(e))?)
            }
            _ => None,
        };
        let stream = input.read(
            loaded.tokenizer.as_ref(),
            cfg.vocab_size,
            &loaded.name,
            a.max_tokens,
        )?;
        let longest = a.span + distances.last().copied().unwrap_or(a.span);
        if let Some(max) = cfg.max_len
            && longest - 1 > max
        {
            bail!(
                "'{}' takes at most {max} tokens; distance {} needs {} (hint: use smaller --distances)",
                loaded.name,
                longest - a.span,
                longest - 1
            );
        }
        crate::eval::command::check_memory(
            model,
            longest - 1,
            crate::eval::reach::cases_per_batch(longest),
            "use smaller --distances",
        )?;
        // What the first model runs with: the slope override and the recipe, at each length.
        let modification = crate::eval::recipe::Modification {
            slopes: slopes.clone(),
            recipe: if i == 0 { a.recipe } else { None },
        };
        modification
            .check(model, &loaded.name)
            .map_err(|e| eyre!(e))?;
        // The needle grid's contexts are built (and refused) before any work.
        let needle_cells = needle_lengths
            .as_ref()
            .map(|lengths| needle_cells(a, loaded, &stream.ids, lengths))
            .transpose()?;
        let mut points = Vec::with_capacity(distances.len());
        for &d in &distances {
            let spec = CopySpec {
                span: a.span,
                gap: d - a.span,
                samples: a.samples,
                seed: a.seed,
                kind: a.span_kind,
            };
            let cases = copy_cases(&stream.ids, &spec)
                .map_err(|e| eyre!("'{}' at distance {d}: {e}", input.path().display()))?;
            let at = modification.options_at(model, a.span + d - 1)?;
            let opts = CopyOptions {
                heads: a.heads,
                key_mask: at.key_mask,
                ..CopyOptions::default()
            };
            let started = std::time::Instant::now();
            // A signal stops the forward; the binary reports it (see `files::stop`).
            let r = copy_test(model, at.slopes.as_ref(), &cases, &opts)
                .map_err(|e| eyre!("reach on '{}' at distance {d}: {e}", loaded.name))?;
            let note = format!(
                "reach: {} distance {d}: copy gain {:.3} ± {:.3} ({:.1} s)",
                loaded.name,
                r.copy_gain.mean,
                r.copy_gain.stderr,
                started.elapsed().as_secs_f64()
            );
            if tty {
                eprint!("\r\x1b[K{note}");
            } else {
                eprintln!("{note}");
            }
            points.push(r);
        }
        let needle = match &needle_cells {
            Some(cells) => run_needle(loaded, &modification, cells, tty)?,
            None => Vec::new(),
        };
        if tty {
            eprint!("\r\x1b[K");
        }
        // Two folders of one name (assets/models/alibi and assets/models/next/alibi) are told
        // apart by the path given.
        let clash = models.iter().filter(|m| m.name == loaded.name).count() > 1;
        measured.push(Measured {
            name: {
                let name = if clash {
                    sources[i].path.display().to_string()
                } else {
                    loaded.name.clone()
                };
                match (i, a.recipe) {
                    (0, Some(r)) => format!("{name} + {r}"),
                    _ => name,
                }
            },
            position: cfg.position.to_string(),
            train_len: cfg.train_len,
            slopes: (cfg.position == crate::model::Position::Alibi)
                .then(|| slopes.clone().unwrap_or_else(|| cfg.default_slopes())),
            points,
            needle,
        });
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "copy test · {} spans of {} tokens ({}) from {} · copy gain = 1st - 2nd occurrence, mean NLL (nats) ± s.e. · * past train_len",
        a.samples,
        a.span,
        a.span_kind,
        input.path().display()
    )?;
    for m in &measured {
        out.write_all(table(m).as_bytes())?;
        if a.heads {
            out.write_all(heads_table(m).as_bytes())?;
        }
        if a.needle {
            out.write_all(needle_table(m, a.needle_samples).as_bytes())?;
        }
    }
    let report = json!({
        "span": a.span,
        "span_kind": a.span_kind.to_string(),
        "samples": a.samples,
        "seed": a.seed,
        "text": input.path().display().to_string(),
        "models": measured.iter().map(model_json).collect::<Vec<_>>(),
    });
    if let Some(p) = &a.json {
        crate::files::write_bytes(p, serde_json::to_string_pretty(&report)?.as_bytes())
            .map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.csv {
        crate::files::write_bytes(p, csv(&measured).as_bytes()).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.plot {
        let curves: Vec<CopyCurve> = measured
            .iter()
            .map(|m| CopyCurve {
                label: m.name.clone(),
                points: m
                    .points
                    .iter()
                    .map(|r| (r.distance, r.copy_gain.mean, r.copy_gain.stderr))
                    .collect(),
            })
            .collect();
        let title = format!(
            "Copy gain by distance ({} spans of {} tokens)",
            a.samples, a.span
        );
        crate::eval::plot::copy_curve::draw(p, &title, first_len, &curves).map_err(|e| eyre!(e))?;
    }
    Ok(())
}

/// The terminal table of one model.
fn table(m: &Measured) -> String {
    let mut s = format!(
        "\n{} ({}, train_len {})\n{:>9}  {:>15}  {:>15}  {:>15}  {:>9}\n",
        m.name, m.position, m.train_len, "distance", "1st nll", "2nd nll", "copy gain", "2nd top-1"
    );
    for p in &m.points {
        let mark = if p.distance > m.train_len { "*" } else { " " };
        s.push_str(&format!(
            "{:>8}{mark}  {:>7.3} ± {:<5.3}  {:>7.3} ± {:<5.3}  {:>7.3} ± {:<5.3}  {:>8.1}%\n",
            p.distance,
            p.first_nll.mean,
            p.first_nll.stderr,
            p.second_nll.mean,
            p.second_nll.stderr,
            p.copy_gain.mean,
            p.copy_gain.stderr,
            100.0 * p.top1_accuracy
        ));
    }
    s
}

/// Induction score of every head (rows) at every distance (columns).
fn heads_table(m: &Measured) -> String {
    let Some(first) = m.points.first().and_then(|p| p.heads.as_ref()) else {
        return String::new();
    };
    let mut s = String::from("induction score by head and distance\n   head     slope");
    for p in &m.points {
        s.push_str(&format!(" {:>6}", p.distance));
    }
    s.push('\n');
    for l in 0..first.n_layers {
        for h in 0..first.n_heads {
            let slope = m
                .slopes
                .as_ref()
                .and_then(|sl| sl.get(h))
                .map_or("-".to_string(), |v| format!("{v:.4}"));
            s.push_str(&format!("{:>7} {slope:>9}", format!("{l}.{h}")));
            for p in &m.points {
                let v = p
                    .heads
                    .as_ref()
                    .map_or(f64::NAN, |hs| hs.induction[l * first.n_heads + h]);
                s.push_str(&format!(" {v:>6.3}"));
            }
            s.push('\n');
        }
    }
    s
}

fn model_json(m: &Measured) -> serde_json::Value {
    json!({
        "model": m.name,
        "position": m.position,
        "train_len": m.train_len,
        "slopes": m.slopes,
        "needle": m.needle.iter().map(|p| json!({
            "length": p.length,
            "depth": p.depth,
            "past_train_len": p.length > m.train_len,
            "samples": p.samples,
            "key_nll": p.key_nll.mean,
            "key_nll_stderr": p.key_nll.stderr,
            "retrieved": p.retrieved,
        })).collect::<Vec<_>>(),
        "points": m.points.iter().map(|p| {
            let heads = p.heads.as_ref().map(|h| {
                (0..h.n_layers * h.n_heads).map(|k| json!({
                    "layer": k / h.n_heads,
                    "head": k % h.n_heads,
                    "induction": h.induction[k],
                    "duplicate": h.duplicate[k],
                    "previous": h.previous[k],
                })).collect::<Vec<_>>()
            });
            json!({
                "distance": p.distance,
                "past_train_len": p.distance > m.train_len,
                "samples": p.samples,
                "first_nll": p.first_nll.mean,
                "first_nll_stderr": p.first_nll.stderr,
                "second_nll": p.second_nll.mean,
                "second_nll_stderr": p.second_nll.stderr,
                "copy_gain": p.copy_gain.mean,
                "copy_gain_stderr": p.copy_gain.stderr,
                "top1_accuracy": p.top1_accuracy,
                "heads": heads,
            })
        }).collect::<Vec<_>>(),
    })
}

fn csv(measured: &[Measured]) -> String {
    let mut s = String::from(
        "model,distance,first_nll,first_nll_stderr,second_nll,second_nll_stderr,copy_gain,copy_gain_stderr,top1_accuracy\n",
    );
    for m in measured {
        for p in &m.points {
            s.push_str(&format!(
                "{},{},{:.5},{:.5},{:.5},{:.5},{:.5},{:.5},{:.4}\n",
                m.name.replace(',', "_"),
                p.distance,
                p.first_nll.mean,
                p.first_nll.stderr,
                p.second_nll.mean,
                p.second_nll.stderr,
                p.copy_gain.mean,
                p.copy_gain.stderr,
                p.top1_accuracy
            ));
        }
    }
    s
}

/// The needle lengths `--needle` asks for (default 64..16 x the first model's train_len), with the
/// depths and samples checked; `None` without `--needle`.
fn needle_lengths(a: &ReachArgs, first_len: usize) -> Result<Option<Vec<usize>>> {
    if !a.needle {
        if a.needle_lengths.is_some() {
            bail!("--needle-lengths needs --needle (hint: add --needle to run the needle grid)");
        }
        return Ok(None);
    }
    if a.needle_samples == 0 || a.needle_samples > 1000 {
        bail!(
            "--needle-samples {} is out of range (hint: use 1 to 1000)",
            a.needle_samples
        );
    }
    if let Some(q) = a
        .needle_depths
        .iter()
        .find(|q| !(q.is_finite() && (0.0..=1.0).contains(*q)))
    {
        bail!(
            "--needle-depths {q} is outside 0..1 (hint: 0 is the start of the filler, 1 just before the question)"
        );
    }
    let spec = a
        .needle_lengths
        .clone()
        .unwrap_or_else(|| format!("64..{}", (DEFAULT_REACH_FACTOR * first_len).max(64)));
    crate::eval::parse_lengths(&spec)
        .map(Some)
        .map_err(|e| eyre!("--needle-lengths: {e}"))
}

/// One cell of the needle grid, its contexts built: (length, depth or `None` for the control,
/// cases).
type NeedleCell = (usize, Option<f64>, Vec<crate::eval::needle::NeedleCase>);

/// The needle grid's cells for one model: each length's control (no fact), then each depth;
/// every context built here, so a length or text that cannot hold them fails before any work.
fn needle_cells(
    a: &ReachArgs,
    loaded: &LoadedModel,
    filler: &[u32],
    lengths: &[usize],
) -> Result<Vec<NeedleCell>> {
    let Some(tok) = loaded.tokenizer.as_ref() else {
        bail!(
            "--needle needs the model's tokenizer to write the pass key; '{}' has no tokenizer.json",
            loaded.name
        );
    };
    let model = &loaded.model;
    let longest = lengths.last().copied().unwrap_or(1);
    if let Some(max) = model.config().max_len
        && longest > max
    {
        bail!(
            "'{}' takes at most {max} tokens; --needle-lengths {longest} is longer (hint: use shorter --needle-lengths)",
            loaded.name
        );
    }
    crate::eval::command::check_memory(
        model,
        longest,
        crate::eval::reach::cases_per_batch(longest + 1).min(a.needle_samples),
        "use shorter --needle-lengths",
    )?;
    let encode = |s: &str| {
        tok.encode(s, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| format!("cannot tokenize the needle: {e}"))
    };
    let prompts =
        crate::eval::needle::prompts(encode, a.needle_samples, a.seed).map_err(|e| eyre!(e))?;
    let depths: Vec<Option<f64>> = std::iter::once(None)
        .chain(a.needle_depths.iter().map(|&q| Some(q)))
        .collect();
    let mut cells = Vec::new();
    for &n in lengths {
        for &q in &depths {
            let cases = needle_cases(filler, &prompts, n, q).map_err(|e| eyre!("--needle: {e}"))?;
            cells.push((n, q, cases));
        }
    }
    Ok(cells)
}

/// Scores every cell of one model's needle grid.
fn run_needle(
    loaded: &LoadedModel,
    modification: &crate::eval::recipe::Modification,
    cells: &[NeedleCell],
    tty: bool,
) -> Result<Vec<NeedlePoint>> {
    let mut points = Vec::with_capacity(cells.len());
    for (n, q, cases) in cells {
        let at = modification.options_at(&loaded.model, *n)?;
        let p = needle_test(&loaded.model, &at, cases, *q)
            .map_err(|e| eyre!("needle on '{}' at length {n}: {e}", loaded.name))?;
        let note = format!(
            "needle: {} length {n} {}: key nll {:.3}, retrieved {:.0}%",
            loaded.name,
            q.map_or("without the fact".to_string(), |q| format!("depth {q}")),
            p.key_nll.mean,
            100.0 * p.retrieved
        );
        if tty {
            eprint!("\r\x1b[K{note}");
        } else {
            eprintln!("{note}");
        }
        points.push(p);
    }
    Ok(points)
}

/// The needle grid of one model: rows are lengths, columns depths; each cell the key's mean NLL
/// and the share of keys retrieved exactly.
fn needle_table(m: &Measured, samples: usize) -> String {
    let mut depths: Vec<Option<f64>> = Vec::new();
    for p in &m.needle {
        if !depths.contains(&p.depth) {
            depths.push(p.depth);
        }
    }
    let mut s = format!(
        "needle grid · key NLL (nats) / retrieved, {samples} keys a cell · depth q: 0 = start, 1 = just before the question; no fact = the control\n{:>9}",
        "length"
    );
    for q in &depths {
        let head = q.map_or("no fact".to_string(), |q| format!("q={q}"));
        s.push_str(&format!(" {head:>13}"));
    }
    s.push('\n');
    let mut lengths: Vec<usize> = m.needle.iter().map(|p| p.length).collect();
    lengths.dedup();
    for n in lengths {
        let mark = if n > m.train_len { "*" } else { " " };
        s.push_str(&format!("{n:>8}{mark}"));
        for q in &depths {
            match m.needle.iter().find(|p| p.length == n && p.depth == *q) {
                Some(p) => s.push_str(&format!(
                    " {:>13}",
                    format!("{:.2} / {:.0}%", p.key_nll.mean, 100.0 * p.retrieved)
                )),
                None => s.push_str(&format!(" {:>13}", "-")),
            }
        }
        s.push('\n');
    }
    s
}
