//! The `eval` and `plot` commands: resolve arguments, read the input, run the engine, write
//! every output atomically.

use super::output::{self, AtomicFile, RunInfo};
use super::plot::{self, Series};
use super::{Control, Point, Protocol, Stream, evaluate, parse_lengths, tokenize};
use crate::cli::{EvalArgs, PlotArgs, load_model, resolve_slopes};
use crate::model::Position;
use crate::model::load;
use crate::model::transformer::slopes_tensor;
use color_eyre::eyre::{Result, bail, eyre};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

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

/// Reads whitespace-separated token ids, checking each against the vocabulary.
pub fn read_token_ids(path: &Path, vocab: usize) -> Result<Vec<u32>> {
    let text = crate::train::corpus::read_text(path)?;
    let mut ids = Vec::new();
    for (pos, word) in text.split_whitespace().enumerate() {
        let id: u32 = word
            .parse()
            .map_err(|_| eyre!("'{}': '{word}' at position {pos} is not a token id (expected whitespace-separated integers)", path.display()))?;
        if id as usize >= vocab {
            bail!(
                "'{}': token id {id} at position {pos} is outside the model's vocabulary (0..{vocab})",
                path.display()
            );
        }
        ids.push(id);
    }
    if ids.is_empty() {
        bail!("'{}' contains no token ids", path.display());
    }
    Ok(ids)
}

/// Reads the text to evaluate: a UTF-8 file, or every `.txt` file of a folder (in name order,
/// separated by a blank line); it must not be empty or binary.
pub fn read_eval_text(path: &Path) -> Result<String> {
    let text = if path.is_dir() {
        let mut parts = Vec::new();
        for f in crate::train::corpus::text_files(path)? {
            parts.push(crate::train::corpus::read_text(&f)?);
        }
        parts.join("\n\n")
    } else {
        crate::train::corpus::read_text(path)?
    };
    if text.trim().is_empty() {
        bail!(
            "'{}' is empty (hint: give a text with at least a few hundred words)",
            path.display()
        );
    }
    if text.contains('\0') {
        bail!(
            "'{}' contains NUL bytes: it looks like a binary file, not text",
            path.display()
        );
    }
    Ok(text)
}

/// Runs `eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let lengths = parse_lengths(&a.lengths).map_err(|e| eyre!(e))?;
    let protocol = resolve_protocol(&a.protocol, a.stride)?;
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
    // Open every output before computing, so a bad path fails in a second, not after the run.
    let mut files = Vec::new();
    for p in [&a.json, &a.csv, &a.per_token].into_iter().flatten() {
        files.push(AtomicFile::create(p).map_err(|e| eyre!(e))?);
    }
    let loaded = load_model(&a.model)?;
    let model = &loaded.model;
    let cfg = model.config();
    let (stream, input) = match (&a.text, &a.token_ids) {
        (Some(t), _) => {
            let text = read_eval_text(t)?;
            let tok = loaded.tokenizer.as_ref().ok_or_else(|| {
                eyre!("model '{}' has no tokenizer.json (hint: pass --token-ids FILE instead of --text)", loaded.name)
            })?;
            (
                tokenize(tok, &text).map_err(|e| eyre!("'{}': {e}", t.display()))?,
                t.display().to_string(),
            )
        }
        (None, Some(f)) => (
            Stream {
                ids: read_token_ids(f, cfg.vocab_size)?,
                bytes: None,
            },
            f.display().to_string(),
        ),
        (None, None) => bail!("give --text FILE or --token-ids FILE"),
    };
    let mut stream = stream;
    match a.max_tokens {
        Some(0) => bail!("--max-tokens must be at least 2"),
        Some(n) => stream.truncate(n),
        None => {}
    }
    super::check_lengths(&stream, &lengths, cfg.max_len).map_err(|e| eyre!(e))?;
    let largest = lengths.last().copied().unwrap_or(1);
    let batch = a.batch.unwrap_or(super::BATCH_TOKENS / largest).max(1);
    let need = crate::memory::eval_bytes(
        batch,
        largest,
        cfg.d_model,
        cfg.d_ff,
        model.dtype().size_in_bytes(),
    );
    crate::memory::check(
        need,
        &format!("length {largest}"),
        "use shorter --lengths, a smaller --batch, or --dtype bf16",
    )
    .map_err(|e| eyre!(e))?;
    let slopes = match &a.slopes {
        Some(spec) => {
            if cfg.position != Position::Alibi {
                bail!(
                    "--slopes applies to ALiBi models only; '{}' uses {} positions",
                    loaded.name,
                    cfg.position
                );
            }
            Some(resolve_slopes(spec, cfg.n_heads)?)
        }
        None => None,
    };
    let slope_tensor = slopes
        .as_ref()
        .map(|s| slopes_tensor(s, model.device()))
        .transpose()?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst));
    }
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if tty {
            eprint!("\revaluating: {done}/{total} windows   ");
            let _ = std::io::stderr().flush();
        }
    };
    let ctl = Control {
        cancel: Some(&cancel),
        progress: Some(&progress),
        batch: a.batch,
    };
    let result = evaluate(
        model,
        &stream,
        &lengths,
        protocol,
        slope_tensor.as_ref(),
        &ctl,
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    let evaluation = match result {
        Ok(e) => e,
        Err(e) if e.to_string().contains(super::CANCELLED) => {
            drop(files);
            eprintln!("interrupted: no output files were written");
            std::process::exit(EXIT_INTERRUPTED);
        }
        Err(e) => bail!("evaluation failed: {}", load::one_line(e)),
    };
    let info = RunInfo {
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
        device: load::device_name(model.device()),
        dtype: load::dtype_name(model.dtype()).to_string(),
    };
    print!("{}", output::table(&info, &evaluation.points));
    drop(files);
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
        && let Some(mib) = crate::bench::peak_rss_mib()
    {
        eprintln!("peak_rss_mib: {mib:.0}");
    }
    Ok(())
}

/// Runs `plot`: several `eval --json` files in one figure.
pub fn plot(a: &PlotArgs) -> Result<()> {
    plot::check_extension(&a.out).map_err(|e| eyre!(e))?;
    let mut series = Vec::new();
    let mut train_len = None;
    for (i, path) in a.inputs.iter().enumerate() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| eyre!("cannot read '{}': {e}", path.display()))?;
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
    println!("wrote {}", a.out.display());
    Ok(())
}
