//! Writing evaluation results: the stdout table, JSON, CSV, per-token JSON lines. Every file is
//! written through [`crate::files::OutputFile`] (renamed into place, or straight into a device).

use super::{Evaluation, Point};
use crate::files::OutputFile;
use std::io::Write;
use std::path::Path;

/// What the outputs say about the run besides the points.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    /// Model name.
    pub model: String,
    /// The model's training length.
    pub train_len: usize,
    /// Protocol name.
    pub protocol: String,
    /// Stride for `sliding`.
    pub stride: Option<usize>,
    /// Where the tokens came from.
    pub input: String,
    /// Tokens in the stream.
    pub stream_tokens: usize,
    /// The slopes used, when overridden or ALiBi.
    pub slopes: Option<Vec<f64>>,
    /// Device name.
    pub device: String,
    /// dtype name.
    pub dtype: String,
    /// The long-context recipe applied (`--recipe`), if any.
    pub recipe: Option<String>,
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// The stdout table; the training length is marked and lengths beyond it are flagged.
pub fn table(info: &RunInfo, eval: &Evaluation) -> String {
    let points: &[Point] = &eval.points;
    let mut s = format!(
        "model {}{} · protocol {}{} · train_len {} · {} from {}\n",
        info.model,
        info.recipe
            .as_ref()
            .map_or(String::new(), |r| format!(" · recipe {r}")),
        info.protocol,
        info.stride
            .map_or(String::new(), |st| format!(" (stride {st})")),
        info.train_len,
        crate::text::count(info.stream_tokens, "token"),
        info.input
    );
    s.push_str(&format!(
        "{:>8}  {:>9}  {:>9}  {:>9}  {:>22}  {:>13}\n",
        "length", "tokens", "unscored", "nll", "perplexity ± s.e.", "bits/byte"
    ));
    if !eval.kl.is_empty() {
        s.pop();
        s.push_str(&format!(
            "  {:>19}  {:>8}  {:>6}  {:>8}\n",
            "KL (nats) ± s.e.", "KL p99", "top-1", "Δp"
        ));
    }
    for (i, p) in points.iter().enumerate() {
        let kl = eval.kl.get(i).map_or(String::new(), |k| {
            format!(
                "  {:>19}  {:>8.4}  {:>6.3}  {:>+8.4}",
                format!("{:.4} ± {:.4}", k.mean, k.stderr),
                k.p99,
                k.top1_agreement,
                k.delta_p
            )
        });
        let mark = match p.length.cmp(&info.train_len) {
            std::cmp::Ordering::Equal => "  ← train_len",
            std::cmp::Ordering::Greater => "  (extrapolation)",
            std::cmp::Ordering::Less => "",
        };
        s.push_str(&format!(
            "{:>8}  {:>9}  {:>9}  {:>9.4}  {:>22}  {:>13}{kl}{mark}\n",
            p.length,
            p.tokens,
            p.unscored
                .map_or_else(|| "-".to_string(), |u| u.to_string()),
            p.nll,
            format!("{:.3} ± {:.3}", p.ppl, p.ppl_stderr),
            fmt_opt(p.bits_per_byte, 4),
        ));
    }
    s
}

/// The `--json` document.
pub fn json(info: &RunInfo, eval: &Evaluation) -> serde_json::Value {
    serde_json::json!({
        "model": info.model,
        "train_len": info.train_len,
        "protocol": info.protocol,
        "stride": info.stride,
        "input": info.input,
        "stream_tokens": info.stream_tokens,
        "device": info.device,
        "dtype": info.dtype,
        "slopes": info.slopes,
        "recipe": info.recipe,
        "points": points_json(eval),
        "position_nll": eval.position_nll,
        "position_loss": eval.position_loss,
    })
}

/// The points, each with its KL statistics under `kl` when `eval --kl` computed them.
fn points_json(eval: &Evaluation) -> serde_json::Value {
    let points = eval
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = serde_json::to_value(p).unwrap_or(serde_json::Value::Null);
            if let (Some(k), Some(obj)) = (eval.kl.get(i), v.as_object_mut()) {
                obj.insert(
                    "kl".to_string(),
                    serde_json::to_value(k).unwrap_or(serde_json::Value::Null),
                );
            }
            v
        })
        .collect();
    serde_json::Value::Array(points)
}

/// Writes `--json`.
pub fn write_json(path: &Path, info: &RunInfo, eval: &Evaluation) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    serde_json::to_writer_pretty(f.writer(), &json(info, eval)).map_err(|e| e.to_string())?;
    writeln!(f.writer()).map_err(|e| e.to_string())?;
    f.commit()
}

/// Writes `--csv`: one row per length.
pub fn write_csv(path: &Path, eval: &Evaluation) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    let w = f.writer();
    let io = |e: std::io::Error| e.to_string();
    writeln!(w, "length,tokens,nll,ppl,ppl_stderr,bits_per_byte").map_err(io)?;
    for p in &eval.points {
        writeln!(
            w,
            "{},{},{},{},{},{}",
            p.length,
            p.tokens,
            p.nll,
            p.ppl,
            p.ppl_stderr,
            p.bits_per_byte.map_or(String::new(), |b| b.to_string())
        )
        .map_err(io)?;
    }
    f.commit()
}

/// Writes `--per-token`: one JSON object per line for the largest length.
pub fn write_per_token(path: &Path, eval: &Evaluation) -> Result<(), String> {
    let mut f = OutputFile::create(path)?;
    let w = f.writer();
    for t in &eval.per_token {
        serde_json::to_writer(&mut *w, t).map_err(|e| e.to_string())?;
        writeln!(w).map_err(|e| e.to_string())?;
    }
    f.commit()
}
