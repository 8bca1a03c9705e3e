//! `reach`: what a model can retrieve, and from how far back. The copy test of
//! [`crate::eval::reach`] at doubling distances (a span, a gap of the text's own filler, the span
//! again), past the training length, for one model and its `--compare` models: copy gain, top-1
//! copy accuracy and, with `--heads`, every head's induction, duplicate-token and previous-token
//! scores (TransformerLens' definitions). Arguments, resolution, the run and its outputs live here.

use super::common::{InputArgs, ModelArgs};
use crate::eval::reach::{CopyOptions, CopyResult, CopySpec, SpanKind, copy_cases, copy_test};
use crate::model::load::{LoadedModel, ModelSource};
use crate::model::transformer::{is_interrupted, slopes_tensor};
use clap::Args;
use color_eyre::eyre::{Result, bail, eyre};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Distances run to this many times the first model's training length by default.
pub const DEFAULT_REACH_FACTOR: usize = 16;

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
    #[arg(long, default_value_t = 32)]
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
    /// Use only the first N tokens of the input.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per model and distance.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

/// One model's measurements.
struct Measured {
    name: String,
    position: String,
    train_len: usize,
    slopes: Option<Vec<f64>>,
    points: Vec<CopyResult>,
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
    let outputs = [("--json", &a.json), ("--csv", &a.csv)];
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
    if let Some(&d) = distances.iter().find(|&&d| d < a.span) {
        bail!(
            "--distances {d} is shorter than --span {} (a distance is span + gap; hint: start the distances at {})",
            a.span,
            a.span
        );
    }
    let cancel = crate::eval::console::interrupt_flag();
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
        let tensor = slopes
            .as_ref()
            .map(|s| slopes_tensor(s, model.device()))
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
            let opts = CopyOptions {
                heads: a.heads,
                interrupt: Some(cancel.clone()),
                capture_bytes: None,
            };
            let started = std::time::Instant::now();
            let r = copy_test(model, tensor.as_ref(), &cases, &opts).map_err(|e| {
                if is_interrupted(&e) || cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    eyre!("reach: interrupted; nothing written")
                } else {
                    eyre!("reach on '{}' at distance {d}: {e}", loaded.name)
                }
            })?;
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
        if tty {
            eprint!("\r\x1b[K");
        }
        // Two folders of one name (assets/models/alibi and assets/models/next/alibi) are told
        // apart by the path given.
        let clash = models.iter().filter(|m| m.name == loaded.name).count() > 1;
        measured.push(Measured {
            name: if clash {
                sources[i].path.display().to_string()
            } else {
                loaded.name.clone()
            },
            position: cfg.position.to_string(),
            train_len: cfg.train_len,
            slopes: (cfg.position == crate::model::Position::Alibi)
                .then(|| slopes.clone().unwrap_or_else(|| cfg.default_slopes())),
            points,
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
