//! Per-head sensitivity (`ablate`): how much perplexity changes at each length when one head's
//! slope is set to 0, halved or doubled (ALiBi slopes are per head, shared across layers), or
//! when one (layer, head)'s attention output is zeroed (knock-out).
//!
//! Every run scores the same tokens as the baseline (non-overlapping windows, as `eval`'s
//! default protocol), so the change is a paired difference: its standard error comes from the
//! per-token differences, which is much smaller than either perplexity's own.

use super::{BATCH_TOKENS, CANCELLED, Control, Protocol, Stats, starts_for, window_losses_with};
use crate::files::OutputFile;
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use crate::text::Stream;
use candle_core::Result;
use std::io::Write;
use std::path::Path;

/// A change to one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Slope set to 0 (no position bias on that head).
    Zero,
    /// Slope halved.
    Half,
    /// Slope doubled.
    Double,
    /// The head's attention output zeroed in one layer.
    Knockout,
}

impl Variant {
    /// The slope variants, in the default order.
    pub const SLOPES: [Variant; 3] = [Variant::Zero, Variant::Half, Variant::Double];

    /// The name on the command line and in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Zero => "zero",
            Variant::Half => "half",
            Variant::Double => "double",
            Variant::Knockout => "knockout",
        }
    }

    /// The slope this variant gives a head whose slope is `m` (knock-out keeps it).
    pub fn apply(self, m: f64) -> f64 {
        match self {
            Variant::Zero => 0.0,
            Variant::Half => m / 2.0,
            Variant::Double => m * 2.0,
            Variant::Knockout => m,
        }
    }
}

/// Parses `zero,half,double`.
pub fn parse_variants(spec: &str) -> std::result::Result<Vec<Variant>, String> {
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim) {
        let v = match name {
            "zero" => Variant::Zero,
            "half" => Variant::Half,
            "double" => Variant::Double,
            _ => {
                return Err(format!(
                    "--variants: unknown variant '{name}' (expected zero, half, double; use --knockout for knock-outs)"
                ));
            }
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// One run: which head, how changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    /// The variant.
    pub variant: Variant,
    /// The layer, for knock-outs.
    pub layer: Option<usize>,
    /// The head.
    pub head: usize,
}

/// The runs of an ablation: every head under every slope variant, then every (layer, head)
/// knocked out when asked.
pub fn plan(heads: usize, layers: usize, variants: &[Variant], knockout: bool) -> Vec<Run> {
    let mut runs: Vec<Run> = (0..heads)
        .flat_map(|head| {
            variants.iter().map(move |&variant| Run {
                variant,
                layer: None,
                head,
            })
        })
        .collect();
    if knockout {
        for layer in 0..layers {
            runs.extend((0..heads).map(|head| Run {
                variant: Variant::Knockout,
                layer: Some(layer),
                head,
            }));
        }
    }
    runs
}

/// The result at one length.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Delta {
    /// Input length.
    pub length: usize,
    /// Tokens scored (the same as the baseline's).
    pub tokens: usize,
    /// Perplexity with the change.
    pub ppl: f64,
    /// Its standard error.
    pub ppl_stderr: f64,
    /// Change from the baseline.
    pub delta_ppl: f64,
    /// Standard error of the change, from the paired per-token differences (delta method).
    pub delta_stderr: f64,
}

/// One head's row of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The run.
    pub run: Run,
    /// The head's slope in this run.
    pub slope: f64,
    /// One result per length.
    pub deltas: Vec<Delta>,
}

/// Per-token losses of the non-overlapping windows of `len`, in stream order.
pub fn token_losses(
    model: &Transformer,
    stream: &Stream,
    len: usize,
    batch: usize,
    opts: &ForwardOptions,
    ctl: &Control,
) -> Result<Vec<f32>> {
    let starts = starts_for(stream, len, Protocol::NonOverlap);
    let mut out = Vec::with_capacity(starts.len() * len);
    let inner = Control {
        cancel: ctl.cancel,
        progress: None,
        batch: Some(batch),
        interrupt: ctl.interrupt.clone(),
    };
    window_losses_with(model, stream, &starts, len, opts, &inner, |_, nll| {
        out.extend(nll);
    })?;
    Ok(out)
}

/// Compares losses with the baseline's on the same tokens.
pub fn delta(length: usize, base: &[f32], run: &[f32]) -> Delta {
    let (mut b, mut r, mut d) = (Stats::default(), Stats::default(), Stats::default());
    for (&x, &y) in base.iter().zip(run) {
        b.add(x, None);
        r.add(y, None);
        d.add(y - x, None);
    }
    let (pb, pr, pd) = (b.point(length), r.point(length), d.point(length));
    // pd.ppl_stderr = exp(mean d) * s.e.(mean d); we want ppl_run * s.e.(mean d).
    let se_mean_d = pd.ppl_stderr / pd.ppl.max(f64::MIN_POSITIVE);
    Delta {
        length,
        tokens: pr.tokens,
        ppl: pr.ppl,
        ppl_stderr: pr.ppl_stderr,
        delta_ppl: pr.ppl - pb.ppl,
        delta_stderr: pr.ppl * se_mean_d,
    }
}

/// Runs the baseline (reported as deltas of 0) and then every run, calling `on_row` after each
/// (the baseline first, with `run = None`) with the runs done so far.
pub fn ablate(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    slopes: &[f64],
    runs: &[Run],
    ctl: &Control,
    mut on_row: impl FnMut(Option<&Row>, &[Delta], usize),
) -> Result<Vec<Row>> {
    let largest = lengths.last().copied().unwrap_or(1);
    let batch = ctl.batch.unwrap_or(BATCH_TOKENS / largest).max(1);
    let dev = model.device();
    let base_opts = ForwardOptions {
        slopes: Some(slopes_tensor(slopes, dev)?),
        ..Default::default()
    };
    let mut base = Vec::with_capacity(lengths.len());
    for &len in lengths {
        base.push(token_losses(model, stream, len, batch, &base_opts, ctl)?);
    }
    let base_deltas: Vec<Delta> = lengths
        .iter()
        .zip(&base)
        .map(|(&l, b)| delta(l, b, b))
        .collect();
    on_row(None, &base_deltas, 0);
    let mut rows = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        if ctl
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            candle_core::bail!("{CANCELLED}");
        }
        let mut s = slopes.to_vec();
        s[run.head] = run.variant.apply(s[run.head]);
        let opts = ForwardOptions {
            slopes: Some(slopes_tensor(&s, dev)?),
            knockout: run.layer.map(|l| vec![(l, run.head)]).unwrap_or_default(),
            ..Default::default()
        };
        let mut deltas = Vec::with_capacity(lengths.len());
        for (&len, b) in lengths.iter().zip(&base) {
            let losses = token_losses(model, stream, len, batch, &opts, ctl)?;
            deltas.push(delta(len, b, &losses));
        }
        rows.push(Row {
            run: *run,
            slope: s[run.head],
            deltas,
        });
        on_row(rows.last(), &base_deltas, i + 1);
    }
    Ok(rows)
}

/// The `--json` document.
pub fn json(header: &serde_json::Value, baseline: &[Delta], rows: &[Row]) -> serde_json::Value {
    let mut doc = header.clone();
    if let Some(o) = doc.as_object_mut() {
        o.insert(
            "baseline".into(),
            serde_json::json!(
                baseline
                    .iter()
                    .map(|d| serde_json::json!({"length": d.length, "tokens": d.tokens, "ppl": d.ppl, "ppl_stderr": d.ppl_stderr}))
                    .collect::<Vec<_>>()
            ),
        );
        o.insert(
            "rows".into(),
            serde_json::json!(
                rows.iter()
                    .map(|r| serde_json::json!({
                        "variant": r.run.variant.name(),
                        "layer": r.run.layer,
                        "head": r.run.head,
                        "slope": r.slope,
                        "points": r.deltas,
                    }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    doc
}

/// Writes `--csv`: one line per run and length, the baseline first (variant `baseline`).
pub fn write_csv(path: &Path, baseline: &[Delta], rows: &[Row]) -> std::result::Result<(), String> {
    let mut f = OutputFile::create(path)?;
    let w = f.writer();
    let io = |e: std::io::Error| e.to_string();
    writeln!(
        w,
        "variant,layer,head,slope,length,tokens,ppl,ppl_stderr,delta_ppl,delta_stderr"
    )
    .map_err(io)?;
    for d in baseline {
        writeln!(
            w,
            "baseline,,,,{},{},{},{},0,0",
            d.length, d.tokens, d.ppl, d.ppl_stderr
        )
        .map_err(io)?;
    }
    for r in rows {
        for d in &r.deltas {
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{}",
                r.run.variant.name(),
                r.run.layer.map_or(String::new(), |l| l.to_string()),
                r.run.head,
                r.slope,
                d.length,
                d.tokens,
                d.ppl,
                d.ppl_stderr,
                d.delta_ppl,
                d.delta_stderr
            )
            .map_err(io)?;
        }
    }
    f.commit()
}

/// One line of the stdout table (a row, or the baseline when `row` is `None`).
pub fn table_line(row: Option<&Row>, baseline: &[Delta]) -> String {
    match row {
        None => {
            let cells: Vec<String> = baseline
                .iter()
                .map(|d| format!("{:>22}", format!("{:.3} ± {:.3}", d.ppl, d.ppl_stderr)))
                .collect();
            format!(
                "{:<9} {:>5} {:>4} {:>10}  {}",
                "baseline",
                "",
                "",
                "",
                cells.join("")
            )
        }
        Some(r) => {
            let cells: Vec<String> = r
                .deltas
                .iter()
                .map(|d| {
                    format!(
                        "{:>22}",
                        format!("{:+.3} ± {:.3}", d.delta_ppl, d.delta_stderr)
                    )
                })
                .collect();
            format!(
                "{:<9} {:>5} {:>4} {:>10.6}  {}",
                r.run.variant.name(),
                r.run.layer.map_or("-".to_string(), |l| l.to_string()),
                r.run.head,
                r.slope,
                cells.join("")
            )
        }
    }
}

/// The table's header: the lengths, the training length marked.
pub fn table_header(lengths: &[usize], train_len: usize) -> String {
    let cells: Vec<String> = lengths
        .iter()
        .map(|&l| {
            let mark = if l == train_len { "*" } else { "" };
            format!("{:>22}", format!("L={l}{mark}"))
        })
        .collect();
    format!(
        "{:<9} {:>5} {:>4} {:>10}  {}",
        "variant",
        "layer",
        "head",
        "slope",
        cells.join("")
    )
}

/// What `ablate` does, resolved from its arguments.
#[derive(Debug, Clone)]
pub struct AblateSettings {
    /// The model (ALiBi).
    pub model: crate::model::load::ModelSource,
    /// The text or token ids.
    pub input: crate::text::Input,
    /// Input lengths, ascending.
    pub lengths: Vec<usize>,
    /// Slope variants per head.
    pub variants: Vec<Variant>,
    /// Also knock out every (layer, head).
    pub knockout: bool,
    /// Use only the first N tokens.
    pub max_tokens: Option<usize>,
    /// JSON output.
    pub json: Option<std::path::PathBuf>,
    /// CSV output.
    pub csv: Option<std::path::PathBuf>,
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Runs `ablate`: the baseline, then one line per head and variant; progress with an ETA on
/// stderr; files written atomically at the end (none after Ctrl-C).
pub fn command(a: &AblateSettings) -> color_eyre::eyre::Result<()> {
    use color_eyre::eyre::{bail, eyre};
    use std::io::IsTerminal;
    if a.variants.is_empty() && !a.knockout {
        bail!("nothing to run: give --variants and/or --knockout");
    }
    super::command::check_outputs(
        Some(&a.model),
        Some(&a.input),
        None,
        &[("--json", &a.json), ("--csv", &a.csv)],
    )?;
    let loaded = a.model.load()?;
    let model = &loaded.model;
    let cfg = model.config();
    if cfg.position != crate::model::Position::Alibi {
        bail!(
            "ablate changes ALiBi slopes; '{}' uses {} positions",
            loaded.name,
            cfg.position
        );
    }
    let stream = a.input.read(
        loaded.tokenizer.as_ref(),
        cfg.vocab_size,
        &loaded.name,
        a.max_tokens,
    )?;
    super::check_lengths(&stream, &a.lengths, cfg.max_len).map_err(|e| eyre!(e))?;
    let largest = a.lengths.last().copied().unwrap_or(1);
    super::command::check_memory(
        model,
        largest,
        (BATCH_TOKENS / largest).max(1),
        "use shorter --lengths",
    )?;
    let slopes = cfg.default_slopes();
    let runs = plan(cfg.n_heads, cfg.n_layers, &a.variants, a.knockout);
    let cancel = super::console::interrupt_flag();
    let ctl = Control {
        cancel: Some(&cancel),
        progress: None,
        batch: None,
        interrupt: None,
    };
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut lines = vec![
        format!(
            "model {} · train_len {} · {} from {} · nonoverlap · Δ perplexity ± s.e. (paired) per length",
            loaded.name,
            cfg.train_len,
            crate::text::count(stream.ids.len(), "token"),
            a.input.path().display()
        ),
        table_header(&a.lengths, cfg.train_len),
    ];
    let mut baseline = Vec::new();
    let result = ablate(
        model,
        &stream,
        &a.lengths,
        &slopes,
        &runs,
        &ctl,
        |row, base, done| {
            if row.is_none() {
                baseline = base.to_vec();
            }
            lines.push(table_line(row, base));
            // The baseline counts as one run more.
            let (done, total) = (done + 1, runs.len() + 1);
            let spent = started.elapsed().as_secs_f64();
            let eta = spent / done as f64 * (total - done) as f64;
            if tty {
                eprint!(
                    "\r\x1b[Kablate: {done}/{total} runs · {} elapsed · ETA {}",
                    fmt_secs(spent),
                    fmt_secs(eta)
                );
            } else {
                eprintln!("ablate: {done}/{total} runs, ETA {}", fmt_secs(eta));
            }
        },
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    let rows = match result {
        Ok(r) => r,
        Err(e) => bail!("ablation failed: {}", crate::model::error::one_line(e)),
    };
    if let Some(p) = &a.json {
        let header = serde_json::json!({
            "model": loaded.name,
            "train_len": cfg.train_len,
            "input": a.input.path().display().to_string(),
            "stream_tokens": stream.ids.len(),
            "protocol": "nonoverlap",
            "lengths": a.lengths,
            "slopes": slopes,
        });
        let mut f = OutputFile::create(p).map_err(|e| eyre!(e))?;
        serde_json::to_writer_pretty(f.writer(), &json(&header, &baseline, &rows))?;
        writeln!(f.writer())?;
        f.commit().map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.csv {
        write_csv(p, &baseline, &rows).map_err(|e| eyre!(e))?;
    }
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}
