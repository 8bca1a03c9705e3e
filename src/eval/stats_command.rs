//! The `stats` and `attention` commands: resolve arguments, read the input, run the statistics
//! engine (`stats`) or capture one head's attention (`attention`), write every output atomically.

use super::Control;
use super::command::{check_memory, check_outputs, override_slopes};
use super::figures::maps::AttentionHeatmap;
use super::figures::{self, figure_extension, report::overview_figure};
use super::stats::StatsReport;
use crate::alibi::prior::{SINK_MIN_QUERY, SINK_TOKENS};
use crate::files::OutputFile;
use crate::model::attention_stats::HeadSums;
use crate::model::device::{device_name, dtype_name};
use crate::model::error::one_line;
use crate::model::load::ModelSource;
use crate::text::Input;
use color_eyre::eyre::{Result, bail, eyre};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The longest input `attention` captures: its map has `L^2` floats (64 MiB at 4,096).
pub const MAX_ATTENTION_LENGTH: usize = 4096;

/// What `stats` does, resolved from its arguments.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// The model.
    pub model: ModelSource,
    /// The text or token ids.
    pub input: Input,
    /// Input lengths, ascending.
    pub lengths: Vec<usize>,
    /// Use only the first N tokens.
    pub max_tokens: Option<usize>,
    /// At most this many windows per length.
    pub max_windows: Option<usize>,
    /// A slopes override: a preset name or a slopes file.
    pub slopes: Option<String>,
    /// A slope recipe applied at each length.
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// JSON output (the report).
    pub json: Option<PathBuf>,
    /// CSV output: one row per (layer, head, length).
    pub csv: Option<PathBuf>,
    /// Figure output (.svg or .png).
    pub plot: Option<PathBuf>,
    /// Windows per forward pass.
    pub batch: Option<usize>,
}

/// What `attention` does.
#[derive(Debug, Clone)]
pub struct AttentionSettings {
    /// The model.
    pub model: ModelSource,
    /// The text or token ids (its first `length` tokens are used).
    pub input: Input,
    /// Input length `L`.
    pub length: usize,
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// A slopes override.
    pub slopes: Option<String>,
    /// A long-context recipe applied at this length.
    pub recipe: Option<crate::alibi::recipe::Recipe>,
    /// PNG heatmap.
    pub png: Option<PathBuf>,
    /// SVG heatmap.
    pub svg: Option<PathBuf>,
    /// JSON of the map.
    pub json: Option<PathBuf>,
}

/// Runs `stats`.
pub fn stats(a: &StatsSettings) -> Result<()> {
    if a.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    if a.max_windows == Some(0) {
        bail!("--max-windows must be at least 1");
    }
    if let Some(p) = &a.plot {
        figure_extension(p, "--plot").map_err(|e| eyre!(e))?;
    }
    check_outputs(
        Some(&a.model),
        Some(&a.input),
        a.slopes.as_ref(),
        &[("--json", &a.json), ("--csv", &a.csv), ("--plot", &a.plot)],
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
    super::check_lengths(&stream, &a.lengths, cfg.max_len).map_err(|e| eyre!(e))?;
    let largest = a.lengths.last().copied().unwrap_or(1);
    let batch = a.batch.unwrap_or(super::BATCH_TOKENS / largest).max(1);
    check_memory(
        model,
        largest,
        batch,
        "use shorter --lengths, a smaller --batch, or --dtype bf16",
    )?;
    let slopes = override_slopes(a.slopes.as_ref(), &loaded)?;
    let cancel = super::console::interrupt_flag();
    let tty = std::io::stderr().is_terminal();
    let progress = super::console::window_progress("measuring attention");
    let ctl = Control {
        cancel: Some(&cancel),
        progress: Some(&progress),
        batch: a.batch,
        interrupt: None,
    };
    let result = crate::eval::stats::attention_stats_with(
        model,
        &loaded.name,
        &stream,
        &a.lengths,
        slopes.as_deref(),
        a.recipe,
        a.max_windows,
        &ctl,
    );
    if tty {
        eprint!("\r\x1b[K");
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => bail!("statistics failed: {}", one_line(e)),
    };
    let info = StatsInfo {
        recipe: a.recipe.map(|r| r.to_string()),
        input: a.input.path().display().to_string(),
        stream_tokens: stream.ids.len(),
        max_windows: a.max_windows,
        device: device_name(model.device()),
        dtype: dtype_name(model.dtype()).to_string(),
    };
    if let Some(p) = &a.json {
        figures::write_data(p, &stats_json(&report, &info)).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.csv {
        write_stats_csv(p, &report).map_err(|e| eyre!(e))?;
    }
    if let Some(p) = &a.plot {
        figures::write(p, &overview_figure(&report)).map_err(|e| eyre!(e))?;
    }
    write!(std::io::stdout(), "{}", stats_table(&report, &info))?;
    Ok(())
}

/// What the `stats` outputs say about the run besides the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsInfo {
    /// The slope recipe applied, if any.
    pub recipe: Option<String>,
    /// Where the tokens came from.
    pub input: String,
    /// Tokens in the stream.
    pub stream_tokens: usize,
    /// The window limit per length, when given.
    pub max_windows: Option<usize>,
    /// Device name.
    pub device: String,
    /// dtype name.
    pub dtype: String,
}

/// The `stats --json` document: the report with the run's details added.
pub fn stats_json(report: &StatsReport, info: &StatsInfo) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let (Some(obj), Ok(serde_json::Value::Object(extra))) =
        (v.as_object_mut(), serde_json::to_value(info))
    {
        obj.extend(extra);
    }
    v
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The CSV header of `stats --csv`.
pub const STATS_CSV_HEADER: &str = "layer,head,slope,length,queries,mean_distance,entropy,entropy_norm,mass90_distance,sink_mass,prior_mean_distance,prior_entropy,prior_mass90_distance,prior_sink_mass";

/// The `stats --csv` text: one row per (layer, head, length); empty cells where a value is absent.
pub fn stats_csv(report: &StatsReport) -> String {
    let o = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    let mut s = format!("{STATS_CSV_HEADER}\n");
    for h in &report.heads {
        for p in &h.points {
            let q = p.prior;
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                h.layer,
                h.head,
                o(h.slope),
                p.length,
                p.queries,
                p.mean_distance,
                p.entropy,
                o(p.entropy_norm),
                p.mass90_distance,
                o(p.sink_mass),
                o(q.map(|q| q.mean_distance)),
                o(q.map(|q| q.entropy)),
                o(q.map(|q| q.mass90_distance)),
                o(q.and_then(|q| q.sink_mass)),
            ));
        }
    }
    s
}

fn write_stats_csv(path: &Path, report: &StatsReport) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    f.writer()
        .write_all(stats_csv(report).as_bytes())
        .map_err(|e| e.to_string())?;
    f.commit()
}

/// The token-weighted mean loss of the position bins inside `[from, to)` of positions; `None`
/// without tokens there.
pub fn mean_loss(report: &StatsReport, from: usize, to: usize) -> Option<(f64, usize)> {
    let (mut sum, mut n) = (0.0, 0);
    for b in &report.position_loss {
        if b.from >= from && b.to <= to {
            sum += b.nll * b.tokens as f64;
            n += b.tokens;
        }
    }
    (n > 0).then(|| (sum / n as f64, n))
}

/// The stdout table of `stats`: one row per (layer, head, length).
pub fn stats_table(report: &StatsReport, info: &StatsInfo) -> String {
    let mut s = format!(
        "model {} · {} positions · train_len {} · {} from {}\n",
        report.model,
        report.position,
        report.train_len,
        crate::text::count(info.stream_tokens, "token"),
        info.input
    );
    s.push_str(&format!(
        "{:>5} {:>4} {:>8} {:>7} {:>9} {:>11} {:>9} {:>9} {:>11} {:>15}\n",
        "layer",
        "head",
        "slope",
        "length",
        "queries",
        "mean dist",
        "mass90",
        "entropy",
        "sink mass",
        "prior: mean"
    ));
    s.push_str(&format!(
        "{:>5} {:>4} {:>8} {:>7} {:>9} {:>11} {:>9} {:>9} {:>11} {:>15}\n",
        "", "", "", "(tok)", "", "(tok)", "(tok)", "(norm.)", "(first 4)", "/ mass90 (tok)"
    ));
    for h in &report.heads {
        for p in &h.points {
            let prior = p.prior.map_or_else(
                || "-".to_string(),
                |q| format!("{:.1} / {:.1}", q.mean_distance, q.mass90_distance),
            );
            let mark = if p.length > report.train_len {
                "  (extrapolation)"
            } else {
                ""
            };
            s.push_str(&format!(
                "{:>5} {:>4} {:>8} {:>7} {:>9} {:>11.2} {:>9.1} {:>9} {:>11} {:>15}{mark}\n",
                h.layer,
                h.head,
                opt(h.slope, 4),
                p.length,
                p.queries,
                p.mean_distance,
                p.mass90_distance,
                opt(p.entropy_norm, 3),
                opt(p.sink_mass, 3),
                prior,
            ));
        }
    }
    s.push_str(&format!(
        "mean dist = sum_j p_ij (i - j); mass90 = smallest distance holding 90% of the attention; \
         entropy normalised by ln(i + 1); sink mass = attention on the window's first {SINK_TOKENS} \
         tokens (queries >= {SINK_MIN_QUERY}); prior = the ALiBi bias alone\n"
    ));
    if let Some(&largest) = report.lengths.last() {
        let t = report.train_len;
        let before = mean_loss(report, 0, t.min(largest));
        let after = mean_loss(report, t, usize::MAX);
        s.push_str(&format!(
            "loss by position at L = {largest}: positions < {t}: {} · positions >= {t}: {} (nats per token)\n",
            before.map_or("-".to_string(), |(x, n)| format!("{x:.4} ({n} tokens)")),
            after.map_or("-".to_string(), |(x, n)| format!("{x:.4} ({n} tokens)")),
        ));
    }
    s
}

/// Runs `attention`.
pub fn attention(a: &AttentionSettings) -> Result<()> {
    if let Some(p) = &a.png
        && figure_extension(p, "--png").map_err(|e| eyre!(e))? != "png"
    {
        bail!("--png '{}': the file name must end in .png", p.display());
    }
    if let Some(p) = &a.svg
        && figure_extension(p, "--svg").map_err(|e| eyre!(e))? != "svg"
    {
        bail!("--svg '{}': the file name must end in .svg", p.display());
    }
    if a.length == 0 {
        bail!("--length must be at least 1");
    }
    if a.length > MAX_ATTENTION_LENGTH {
        bail!(
            "--length {} is too long for a full attention map (at most {MAX_ATTENTION_LENGTH}; use `stats` for longer inputs)",
            a.length
        );
    }
    check_outputs(
        Some(&a.model),
        Some(&a.input),
        a.slopes.as_ref(),
        &[("--png", &a.png), ("--svg", &a.svg), ("--json", &a.json)],
    )?;
    let loaded = a.model.load()?;
    let model = &loaded.model;
    let cfg = model.config();
    if a.layer >= cfg.n_layers {
        bail!(
            "--layer {} is out of range: '{}' has {} layers (0..{})",
            a.layer,
            loaded.name,
            cfg.n_layers,
            cfg.n_layers - 1
        );
    }
    if a.head >= cfg.n_heads {
        bail!(
            "--head {} is out of range: '{}' has {} heads (0..{})",
            a.head,
            loaded.name,
            cfg.n_heads,
            cfg.n_heads - 1
        );
    }
    if let Some(m) = cfg.max_len
        && a.length > m
    {
        bail!(
            "--length {} exceeds the model's limit of {m} tokens",
            a.length
        );
    }
    let stream = a.input.read(
        loaded.tokenizer.as_ref(),
        cfg.vocab_size,
        &loaded.name,
        Some(a.length),
    )?;
    if stream.ids.len() < a.length {
        bail!(
            "the input has {} but --length {} needs that many (hint: a shorter --length or a longer text)",
            crate::text::count(stream.ids.len(), "token"),
            a.length
        );
    }
    let slopes = override_slopes(a.slopes.as_ref(), &loaded)?;
    let modification = super::recipe::Modification {
        slopes: slopes.clone(),
        recipe: a.recipe,
    };
    modification
        .check(model, &loaded.name)
        .map_err(|e| eyre!(e))?;
    let at_len = modification
        .slopes_at(model, a.length)
        .map_err(|e| eyre!("attention failed: {}", one_line(e)))?;
    let slope = at_len.as_ref().map(|s| s[a.head]);
    let ids = &stream.ids[..a.length];
    let opts = modification
        .options_at(model, a.length)
        .map_err(|e| eyre!("attention failed: {}", one_line(e)))?;
    let probs = crate::eval::stats::attention_map_with(model, ids, a.layer, a.head, opts)
        .map_err(|e| eyre!("attention failed: {}", one_line(e)))?;
    let len = a.length;
    let mut sums = HeadSums::default();
    for (i, row) in probs.chunks(len).enumerate() {
        sums.add_query(i, &row[..=i]);
    }
    let means = sums.means();
    let title = format!(
        "{} · layer {} head {}{}{} · L = {len}",
        loaded.name,
        a.layer,
        a.head,
        slope.map_or(String::new(), |m| format!(" (slope {m:.4})")),
        a.recipe.map_or(String::new(), |r| format!(" · recipe {r}"))
    );
    let heatmap = AttentionHeatmap::from_flat(title, len, &probs);
    if let Some(p) = &a.json {
        let tokens = loaded.tokenizer.as_ref().map(|t| {
            ids.iter()
                .map(|&id| t.decode(&[id], false).unwrap_or_default())
                .collect::<Vec<_>>()
        });
        let doc = serde_json::json!({
            "model": loaded.name,
            "position": cfg.position.name(),
            "train_len": cfg.train_len,
            "layer": a.layer,
            "head": a.head,
            "length": len,
            "slope": slope,
            "recipe": a.recipe.map(|r| r.to_string()),
            "input": a.input.path().display().to_string(),
            "token_ids": ids,
            "tokens": tokens,
            "mean_distance": means.mean_distance,
            "mass90_distance": means.mass90_distance,
            "map": heatmap.map,
        });
        figures::write_data(p, &doc).map_err(|e| eyre!(e))?;
    }
    for p in [&a.png, &a.svg].into_iter().flatten() {
        figures::write(p, &heatmap).map_err(|e| eyre!(e))?;
    }
    writeln!(
        std::io::stdout(),
        "{} · layer {} head {} · slope {} · L = {len}: mean distance {:.2} tokens · 90% mass within {:.1} tokens · sink mass {}",
        loaded.name,
        a.layer,
        a.head,
        opt(slope, 4),
        means.mean_distance,
        means.mass90_distance,
        opt(means.sink_mass, 3)
    )?;
    Ok(())
}
