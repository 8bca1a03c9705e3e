//! The `eval` and `plot` commands: resolve arguments, read the input, run the engine, write
//! every output atomically.

use super::output::{self, RunInfo};
use super::plot::{self, Series};
use super::{Control, Point, Protocol};
use crate::alibi::file::resolve_slopes;
use crate::files::OutputPlan;
use crate::model::Position;
use crate::model::device::{device_name, dtype_name};
use crate::model::error::one_line;
use crate::model::load::LoadedModel;
use crate::model::load::ModelSource;
use crate::model::transformer::Transformer;
use crate::text::Input;
use color_eyre::eyre::{Result, bail, eyre};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Parses the protocol and stride arguments.
pub fn resolve_protocol(name: &str, stride: Option<usize>) -> Result<Protocol> {
    match (name, stride) {
        ("nonoverlap", None) => Ok(Protocol::NonOverlap),
        ("sweep", None) => Ok(Protocol::Sweep),
        ("sliding", Some(0)) => bail!("--stride must be at least 1"),
        ("sliding", Some(stride)) => Ok(Protocol::Sliding { stride }),
        ("sliding", None) => {
            bail!("--protocol sliding needs --stride S (1 = the paper's sliding evaluation)")
        }
        ("nonoverlap" | "sweep", Some(_)) => bail!("--stride only applies to --protocol sliding"),
        _ => bail!("unknown --protocol '{name}' (expected nonoverlap, sliding or sweep)"),
    }
}

/// What `eval` does, resolved from its arguments.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// The model.
    pub model: ModelSource,
    /// The text or token ids.
    pub input: Input,
    /// Input lengths, ascending.
    pub lengths: Vec<usize>,
    /// The evaluation protocol.
    pub protocol: Protocol,
    /// A slopes override: a preset name or a slopes file.
    pub slopes: Option<String>,
    /// JSON output.
    pub json: Option<PathBuf>,
    /// CSV output.
    pub csv: Option<PathBuf>,
    /// Per-token JSON lines output.
    pub per_token: Option<PathBuf>,
    /// Figure output (.svg or .png).
    pub plot: Option<PathBuf>,
    /// A long-context recipe applied at inference.
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// Compute the KL divergence from the original model per length.
    pub kl: bool,
    /// Windows per forward pass.
    pub batch: Option<usize>,
    /// Use only the first N tokens.
    pub max_tokens: Option<usize>,
    /// Print the peak resident memory at the end.
    pub report_peak_rss: bool,
}

/// What `plot` does.
#[derive(Debug, Clone)]
pub struct PlotSettings {
    /// `eval --json` files.
    pub inputs: Vec<PathBuf>,
    /// Curve labels, in order.
    pub labels: Vec<String>,
    /// The figure.
    pub out: PathBuf,
    /// The figure's title.
    pub title: String,
}

/// Checks every output of a command before the work (see [`crate::files::OutputPlan`]): each
/// must be writable, and none may be one of the command's inputs (the model's files, the text or
/// token ids, a slopes file) or another output.
pub fn check_outputs(
    model: Option<&ModelSource>,
    input: Option<&Input>,
    slopes: Option<&String>,
    outputs: &[(&str, &Option<PathBuf>)],
) -> Result<()> {
    let mut plan = OutputPlan::new();
    if let Some(m) = model {
        match crate::model::hub::resolve_model_path(&m.path) {
            Ok(r) => plan.input("--model", &r.folder),
            Err(_) => plan.input("--model", &m.path),
        };
    }
    if let Some(i) = input {
        plan.input(i.flag(), i.path());
    }
    if let Some(s) = slopes {
        let p = Path::new(s);
        if p.is_file() {
            plan.input("--slopes", p);
        }
    }
    for (what, path) in outputs {
        plan.output_opt(what, path.as_deref());
    }
    plan.check().map_err(|e| eyre!(e))
}

/// A `--slopes` override for an ALiBi model (one-line error for other position schemes).
pub fn override_slopes(spec: Option<&String>, loaded: &LoadedModel) -> Result<Option<Vec<f64>>> {
    let cfg = loaded.model.config();
    let Some(spec) = spec else {
        return Ok(None);
    };
    if cfg.position != Position::Alibi {
        bail!(
            "--slopes applies to ALiBi models only; '{}' uses {} positions",
            loaded.name,
            cfg.position
        );
    }
    Ok(Some(
        resolve_slopes(spec, cfg.n_heads).map_err(|e| eyre!(e))?,
    ))
}

/// Refuses a run whose forward of `batch` windows of `largest` tokens would not fit in memory.
pub fn check_memory(model: &Transformer, largest: usize, batch: usize, hint: &str) -> Result<()> {
    let cfg = model.config();
    let need = crate::model::memory::eval_bytes(
        batch,
        largest,
        cfg.d_model,
        cfg.d_ff,
        model.dtype().size_in_bytes(),
    );
    crate::model::memory::check(need, &format!("length {largest}"), hint).map_err(|e| eyre!(e))
}

/// Runs `eval`.
pub fn eval(a: &EvalSettings) -> Result<()> {
    let lengths = &a.lengths;
    let protocol = a.protocol;
    if let Protocol::Sliding { stride } = protocol
        && let Some(&small) = lengths.first()
        && stride > small
    {
        bail!("--stride {stride} is larger than the smallest length {small}");
    }
    if a.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    if let Some(p) = &a.plot {
        plot::check_extension(p).map_err(|e| eyre!(e))?;
    }
    check_outputs(
        Some(&a.model),
        Some(&a.input),
        a.slopes.as_ref(),
        &[
            ("--json", &a.json),
            ("--csv", &a.csv),
            ("--per-token", &a.per_token),
            ("--plot", &a.plot),
        ],
    )?;
    let loaded = a.model.load()?;
    let model = &loaded.model;
    let cfg = model.config();
    let stream = a.input.read(
        loaded.tokenizer.as_ref(),
        cfg.vocab_size,
        &loaded.name,
        a.max_tokens,
    )?;
    let input = a.input.path().display().to_string();
    super::check_lengths(&stream, lengths, cfg.max_len).map_err(|e| eyre!(e))?;
    let largest = lengths.last().copied().unwrap_or(1);
    let batch = a.batch.unwrap_or(super::BATCH_TOKENS / largest).max(1);
    check_memory(
        model,
        largest,
        batch,
        "use shorter --lengths, a smaller --batch, or --dtype bf16",
    )?;
    let slopes = override_slopes(a.slopes.as_ref(), &loaded)?;
    let modification = super::recipe::Modification {
        slopes: slopes.clone(),
        recipe: a.recipe,
    };
    modification
        .check(model, &loaded.name)
        .map_err(|e| eyre!(e))?;
    if modification.per_length() && protocol == Protocol::Sweep {
        eprintln!(
            "note: --recipe {} sets the slopes by input length, so each length is scored on its own non-overlapping windows (not one sweep)",
            a.recipe.map(|r| r.to_string()).unwrap_or_default()
        );
    }
    let cancel = super::console::interrupt_flag();
    let tty = std::io::stderr().is_terminal();
    let progress = super::console::window_progress("evaluating");
    let ctl = Control {
        cancel: Some(&cancel),
        progress: Some(&progress),
        batch: a.batch,
        interrupt: None,
    };
    let result =
        super::recipe::evaluate_modified(model, &stream, lengths, protocol, &modification, &ctl)
            .and_then(|mut e| {
                if a.kl {
                    e.kl = super::kl::kl_by_length(
                        model,
                        &stream,
                        lengths,
                        protocol,
                        &modification,
                        &ctl,
                    )?;
                }
                Ok(e)
            });
    if tty {
        eprint!("\r\x1b[K");
    }
    let evaluation = match result {
        Ok(e) => e,
        Err(e) => bail!("evaluation failed: {}", one_line(e)),
    };
    let protocol = super::recipe::protocol_for(&modification, protocol);
    let info = RunInfo {
        recipe: a.recipe.map(|r| r.to_string()),
        model: loaded.name.clone(),
        train_len: cfg.train_len,
        protocol: protocol.name().to_string(),
        stride: match protocol {
            Protocol::Sliding { stride } => Some(stride),
            _ => None,
        },
        input,
        stream_tokens: stream.ids.len(),
        slopes: slopes.or_else(|| (cfg.position == Position::Alibi).then(|| cfg.default_slopes())),
        device: device_name(model.device()),
        dtype: dtype_name(model.dtype()).to_string(),
    };
    if let Some(p) = &a.json {
        output::write_json(p, &info, &evaluation).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.csv {
        output::write_csv(p, &evaluation).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.per_token {
        output::write_per_token(p, &evaluation).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.plot {
        let title = format!("{} · {} protocol", info.model, info.protocol);
        let series = [Series {
            label: info.model.clone(),
            points: evaluation.points.clone(),
        }];
        plot::draw(p, &title, info.train_len, &series).map_err(|e| eyre!(e))?;
    }
    if a.report_peak_rss
        && let Some(mib) = crate::model::memory::peak_rss_mib()
    {
        eprintln!("peak_rss_mib: {mib:.0}");
    }
    // The table comes last, after the files: a reader that goes away (`| head`) loses nothing.
    write!(std::io::stdout(), "{}", output::table(&info, &evaluation))?;
    Ok(())
}

/// `plot`'s default title (the perplexity figure's; a training figure gets its own).
pub const DEFAULT_PLOT_TITLE: &str = "Perplexity vs input length";

/// The inputs as loss logs when they are `train` runs' `loss.csv` files (all of them or none;
/// a folder stands for its `loss.csv`), labelled by `--label` or the run's folder name.
fn loss_logs(a: &PlotSettings) -> Result<Option<Vec<plot::loss_log::LossLog>>> {
    let mut logs = Vec::new();
    for (i, given) in a.inputs.iter().enumerate() {
        let path = if given.is_dir() {
            given.join("loss.csv")
        } else {
            given.clone()
        };
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if !is_csv {
            if logs.is_empty() {
                return Ok(None);
            }
            bail!(
                "--input '{}': plot draws `eval --json` files or loss logs, not both in one figure",
                given.display()
            );
        }
        if i > 0 && logs.is_empty() {
            bail!(
                "--input '{}': plot draws `eval --json` files or loss logs, not both in one figure",
                given.display()
            );
        }
        let text =
            crate::files::read_limited_string(&path, crate::files::MAX_TEXT_BYTES, "a loss log")
                .map_err(|e| eyre!(e))?;
        let rows = plot::loss_log::parse(&text, &path).map_err(|e| eyre!(e))?;
        let label = a.labels.get(i).cloned().unwrap_or_else(|| {
            path.parent()
                .and_then(|d| d.file_name())
                .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned())
        });
        logs.push(plot::loss_log::LossLog { label, rows });
    }
    Ok(Some(logs))
}

/// Runs `plot`: several `eval --json` files in one figure, or several runs' loss logs.
pub fn plot(a: &PlotSettings) -> Result<()> {
    plot::check_extension(&a.out).map_err(|e| eyre!(e))?;
    let mut plan = OutputPlan::new();
    for p in &a.inputs {
        plan.input("--input", p);
    }
    plan.output("--out", &a.out).check().map_err(|e| eyre!(e))?;
    if let Some(logs) = loss_logs(a)? {
        let title = if a.title == DEFAULT_PLOT_TITLE {
            "Training: loss and in-context copying"
        } else {
            &a.title
        };
        plot::loss_log::draw(&a.out, title, &logs).map_err(|e| eyre!(e))?;
        writeln!(std::io::stdout(), "wrote {}", a.out.display())?;
        return Ok(());
    }
    let mut series = Vec::new();
    let mut train_len = None;
    for (i, path) in a.inputs.iter().enumerate() {
        let text = crate::files::read_limited_string(
            path,
            crate::files::MAX_TEXT_BYTES,
            "an `eval --json` file",
        )
        .map_err(|e| eyre!(e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| eyre!("'{}' is not an `eval --json` file: {e}", path.display()))?;
        let points = v
            .get("points")
            .and_then(|p| p.as_array())
            .ok_or_else(|| {
                eyre!(
                    "'{}' has no \"points\" array (expected an `eval --json` file)",
                    path.display()
                )
            })?
            .iter()
            .map(|p| {
                Some(Point {
                    length: p.get("length")?.as_u64()? as usize,
                    tokens: p.get("tokens")?.as_u64()? as usize,
                    nll: p.get("nll")?.as_f64()?,
                    ppl: p.get("ppl")?.as_f64()?,
                    ppl_stderr: p.get("ppl_stderr")?.as_f64()?,
                    bits_per_byte: p.get("bits_per_byte").and_then(serde_json::Value::as_f64),
                    unscored: p
                        .get("unscored")
                        .and_then(serde_json::Value::as_u64)
                        .map(|u| u as usize),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                eyre!(
                    "'{}': a point lacks length/tokens/nll/ppl/ppl_stderr",
                    path.display()
                )
            })?;
        train_len = train_len.or_else(|| v.get("train_len").and_then(serde_json::Value::as_u64));
        let label = a.labels.get(i).cloned().unwrap_or_else(|| {
            v.get("model")
                .and_then(|m| m.as_str())
                .unwrap_or("model")
                .to_string()
        });
        series.push(Series { label, points });
    }
    let train_len = train_len.ok_or_else(|| eyre!("no input names a train_len"))? as usize;
    plot::draw(&a.out, &a.title, train_len, &series).map_err(|e| eyre!(e))?;
    writeln!(std::io::stdout(), "wrote {}", a.out.display())?;
    Ok(())
}
