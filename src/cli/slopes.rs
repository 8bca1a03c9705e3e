//! `slopes` and its subcommands: without one, the slope table for a head count (kept so the old
//! `slopes --heads N` form works); `check`, which names the formula a slope list follows or the
//! fault it shows; `fit`, which fits slopes to a frozen model.

use super::inspect::{SlopesTableArgs, slopes as table};
use crate::alibi::check::{CheckOptions, Formula, Verdict, check};
use crate::alibi::file::{parse_slopes_json, read_slopes};
use crate::alibi::fmt_slope;
use crate::model::Position;
use crate::model::folder::{CONFIG_FILE, read_checkpoint_config};
use crate::model::hub::resolve_model_path;
use clap::{ArgGroup, Args, Subcommand};
use color_eyre::eyre::{Result, bail, eyre};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit code of `slopes check` when the list follows no known formula.
pub const EXIT_NO_MATCH: i32 = 1;

/// Arguments of `slopes`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SlopesArgs {
    /// `check` or `fit`; without one, the slope table for `--heads N`.
    #[command(subcommand)]
    pub command: Option<SlopesCommand>,
    /// The slope table's options.
    #[command(flatten)]
    pub table: SlopesTableArgs,
}

/// Subcommands of `slopes`.
#[derive(Debug, Subcommand)]
pub enum SlopesCommand {
    /// Compare a slope list with the known formulas (paper/BLOOM, MPT) and name the fault it
    /// shows; exit 0 on a match, 1 otherwise, 2 on bad input.
    Check(CheckArgs),
    /// Fit the slopes of a frozen ALiBi model by gradient descent (weights unchanged).
    Fit(Box<super::fit::FitArgs>),
}

/// Arguments of `slopes check`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["model", "file", "values"])))]
pub struct CheckArgs {
    /// A model folder or cached repo id: check the slopes its config gives.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// A slopes file (`{"slopes": [..]}`, as `slopes --json`, `slopes fit` or the TUI's `S` write).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The slopes, comma-separated (e.g. 0.5,0.25,0.125,0.0625).
    #[arg(long, value_name = "V1,V2,..", allow_hyphen_values = true)]
    pub values: Option<String>,
    /// The head count the list should have [default: the model's, the file's "heads", or the
    /// list's length].
    #[arg(long)]
    pub heads: Option<usize>,
    /// MPT's alibi_bias_max to accept besides 8 [default: from the model's config].
    #[arg(long, value_name = "B", allow_negative_numbers = true, value_parser = super::common::max_bias)]
    pub max_bias: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `slopes`.
pub fn run(a: &SlopesArgs) -> Result<()> {
    match &a.command {
        None => table(&a.table),
        Some(SlopesCommand::Check(c)) => run_check(c),
        Some(SlopesCommand::Fit(f)) => crate::train::fit::run(&f.settings()?),
    }
}

/// A slope list to check and what it is checked against.
struct Subject {
    source: String,
    slopes: Vec<f64>,
    opts: CheckOptions,
}

fn parse_values(spec: &str) -> Result<Vec<f64>> {
    spec.split(',')
        .map(|v| {
            v.trim().parse::<f64>().map_err(|_| {
                eyre!(
                    "--values: '{}' is not a number (expected e.g. 0.5,0.25,0.125)",
                    v.trim()
                )
            })
        })
        .collect()
}

/// The slopes a model's config gives, its head count and MPT's `alibi_bias_max`. A config whose
/// slopes the loader refuses (negative, wrong count) is still read, so `check` can name the fault.
fn model_subject(path: &Path) -> Result<Subject> {
    let folder = resolve_model_path(path)?.folder;
    let file = folder.join(CONFIG_FILE);
    let raw: Option<Value> =
        crate::files::read_limited(&file, crate::files::MAX_JSON_BYTES, "a config")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
    let field = |v: &Value, k: &str| v.get(k).cloned();
    let (slopes, heads) = match read_checkpoint_config(&folder) {
        Ok(c) => {
            if c.config.position != Position::Alibi {
                bail!(
                    "'{}' uses {} positions: it has no ALiBi slopes to check",
                    path.display(),
                    c.config.position
                );
            }
            (c.config.default_slopes(), c.config.n_heads)
        }
        Err(e) => {
            let raw_slopes = raw.as_ref().and_then(|v| field(v, "slopes"));
            let heads = raw.as_ref().and_then(|v| field(v, "n_heads"));
            match (raw_slopes, heads.and_then(|h| h.as_u64())) {
                (Some(s), Some(h)) if s.is_array() => (
                    parse_slopes_json(
                        &file.display().to_string(),
                        &json!({"slopes": s}).to_string(),
                    )
                    .map_err(|e| eyre!(e))?,
                    h as usize,
                ),
                _ => return Err(e.into()),
            }
        }
    };
    let mpt_bias_max = raw.as_ref().and_then(|v| {
        (v.get("model_type")?.as_str()? == "mpt").then(|| {
            v.get("attn_config")
                .and_then(|a| a.get("alibi_bias_max"))
                .and_then(Value::as_f64)
                .unwrap_or(crate::alibi::PAPER_MAX_BIAS)
        })
    });
    Ok(Subject {
        source: path.display().to_string(),
        slopes,
        opts: CheckOptions {
            heads: Some(heads),
            mpt_bias_max,
        },
    })
}

fn subject(a: &CheckArgs) -> Result<Subject> {
    let mut s = if let Some(m) = &a.model {
        model_subject(m)?
    } else if let Some(f) = &a.file {
        let slopes = read_slopes(f).map_err(|e| eyre!(e))?;
        let heads =
            crate::files::read_limited_string(f, crate::files::MAX_JSON_BYTES, "a slopes file")
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("heads")?.as_u64())
                .map(|h| h as usize);
        Subject {
            source: f.display().to_string(),
            slopes,
            opts: CheckOptions {
                heads,
                mpt_bias_max: None,
            },
        }
    } else if let Some(v) = &a.values {
        Subject {
            source: "--values".to_string(),
            slopes: parse_values(v)?,
            opts: CheckOptions::default(),
        }
    } else {
        bail!("give --model PATH, --file FILE or --values V1,V2,..");
    };
    if let Some(h) = a.heads {
        crate::alibi::check_heads(h)?;
        s.opts.heads = Some(h);
    }
    if let Some(b) = a.max_bias {
        if !(b.is_finite() && b > 0.0) {
            bail!("--max-bias must be a positive finite number (got {b})");
        }
        s.opts.mpt_bias_max = Some(b);
    }
    Ok(s)
}

fn fault_json(v: &Verdict) -> Value {
    use crate::alibi::check::Fault;
    let Verdict::Fault(f) = v else {
        return Value::Null;
    };
    let formula = |f: &Formula| json!(f.key());
    let mut o = json!({"kind": f.key()});
    let extra = match f {
        Fault::Count {
            got,
            heads,
            matches,
        } => json!({"got": got, "heads": heads, "matches": matches.as_ref().map(formula)}),
        Fault::NotFinite { heads } | Fault::Negative { heads } | Fault::Zero { heads } => {
            json!({"heads": heads})
        }
        Fault::FlippedSign { matches } => json!({"matches": matches.as_ref().map(formula)}),
        Fault::ConstantFactor { factor, .. } => json!({"factor": factor}),
        Fault::OtherMaxBias { bias_max } => json!({"max_bias": bias_max}),
        Fault::PowerOfTwoFormula { denominator, .. } => json!({"denominator": denominator}),
        Fault::RankLocal {
            ranks, per_rank, ..
        } => json!({"ranks": ranks, "per_rank": per_rank}),
        Fault::Slice { of, start, .. } => json!({"of": of, "start": start}),
        Fault::OffByOne { .. } | Fault::Reversed { .. } | Fault::Order { .. } => json!({}),
    };
    if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    o
}

/// Runs `slopes check`: exit 0 on a match, 1 otherwise.
fn run_check(a: &CheckArgs) -> Result<()> {
    let s = subject(a)?;
    let verdict = check(&s.slopes, &s.opts);
    // The reference column: the formula the verdict names, else the paper's (or MPT's).
    let formula = match &verdict {
        Verdict::Match(f) => *f,
        _ => s
            .opts
            .mpt_bias_max
            .map_or(Formula::Geometric, |b| Formula::Mpt { bias_max: b }),
    };
    let heads = s.opts.heads.unwrap_or(s.slopes.len());
    let expected = if heads <= crate::alibi::MAX_HEADS {
        formula.slopes(heads)
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let doc = json!({
            "source": s.source,
            "heads": heads,
            "slopes": s.slopes,
            "expected": expected,
            "reference": formula.to_string(),
            "match": verdict.is_match(),
            "formula": match &verdict { Verdict::Match(f) => json!(f.key()), _ => Value::Null },
            "max_bias": match &verdict { Verdict::Match(f) => json!(f.max_bias()), _ => Value::Null },
            "fault": fault_json(&verdict),
            "message": verdict.to_string(),
        });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(
            out,
            "{} slopes from {} ({heads} heads expected); reference: {formula}",
            s.slopes.len(),
            s.source
        )?;
        writeln!(
            out,
            "{:>5}  {:>14}  {:>14}  {:>10}",
            "head", "slope", "expected", "ratio"
        )?;
        for h in 0..s.slopes.len().max(expected.len()) {
            let cell = |v: Option<&f64>| v.map_or("-".to_string(), |m| fmt_slope(*m));
            let ratio = match (s.slopes.get(h), expected.get(h)) {
                (Some(m), Some(e)) if *e != 0.0 => format!("{:.6}", m / e),
                _ => "-".to_string(),
            };
            writeln!(
                out,
                "{h:>5}  {:>14}  {:>14}  {ratio:>10}",
                cell(s.slopes.get(h)),
                cell(expected.get(h))
            )?;
        }
        writeln!(out, "verdict: {verdict}")?;
    }
    out.flush()?;
    if !verdict.is_match() {
        drop(out);
        std::process::exit(EXIT_NO_MATCH);
    }
    Ok(())
}
