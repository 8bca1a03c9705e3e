//! `slopes` without a subcommand (ALiBi slopes and reach for a head count) and `inspect` (what a
//! model is).

use super::common::{ModelArgs, fmt_reach, reach_json};
use crate::alibi::{self, Preset, SlopeSpec};
use crate::model::device::{device_name, dtype_name};
use crate::model::{Position, init};
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use serde_json::json;
use std::io::Write;

/// Arguments of `slopes` without a subcommand: the slope table for a head count.
#[derive(Debug, Args)]
pub struct SlopesTableArgs {
    /// Number of attention heads.
    #[arg(long, required = true)]
    pub heads: Option<usize>,
    /// geometric | equal | linear | reversed | zero.
    #[arg(long, default_value = "geometric")]
    pub preset: Preset,
    /// Maximum bias of the geometric sequence (the paper uses 8: slopes start at 2^(-8/n)).
    #[arg(long, default_value_t = alibi::PAPER_MAX_BIAS, allow_negative_numbers = true, value_parser = super::common::max_bias)]
    pub max_bias: f64,
    /// Multiply every slope by this.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::common::slope_scale)]
    pub scale: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `slopes` (the table).
pub fn slopes(a: &SlopesTableArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let spec = SlopeSpec {
        preset: a.preset,
        max_bias: a.max_bias,
        scale: a.scale,
    };
    let heads = a
        .heads
        .ok_or_else(|| eyre!("slopes needs --heads N (or a subcommand: check, fit)"))?;
    let slopes = spec.slopes(heads)?;
    let reach: Vec<f64> = slopes.iter().map(|&m| alibi::reach(m)).collect();
    if a.json {
        let doc = json!({
            "heads": heads,
            "preset": a.preset.name(),
            "slopes": slopes,
            "reach": reach.iter().map(|&r| reach_json(r)).collect::<Vec<_>>(),
        });
        writeln!(out, "{doc}")?;
    } else {
        writeln!(
            out,
            "{}, preset {}, max bias {}, scale {}",
            crate::text::count(heads, "head"),
            a.preset,
            a.max_bias,
            a.scale
        )?;
        writeln!(
            out,
            "reach = ln(100)/slope: the distance at which the bias alone divides attention by 100"
        )?;
        writeln!(out, "{:>5}  {:>14}  {:>10}", "head", "slope", "reach")?;
        for (h, (m, r)) in slopes.iter().zip(&reach).enumerate() {
            writeln!(out, "{h:>5}  {m:>14.8}  {:>10}", fmt_reach(*r))?;
        }
    }
    Ok(())
}

/// Runs `inspect`.
pub fn inspect(a: &InspectArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let loaded = a.model.source().load()?;
    let cfg = loaded.model.config();
    let params = init::param_count(cfg);
    let slopes = cfg.default_slopes();
    let alibi = cfg.position == Position::Alibi;
    let device = device_name(&loaded.device.device);
    let dtype = dtype_name(loaded.model.dtype());
    if a.json {
        let heads: Vec<_> = slopes
            .iter()
            .enumerate()
            .map(|(h, &m)| json!({"head": h, "slope": m, "reach": reach_json(alibi::reach(m))}))
            .collect();
        let doc = json!({
            "model": loaded.name,
            "folder": loaded.folder,
            "architecture": cfg.arch.name(),
            "layers": cfg.n_layers,
            "heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_ff": cfg.d_ff,
            "parameters": params,
            "position": cfg.position.name(),
            "train_len": cfg.train_len,
            "max_len": cfg.max_len,
            "vocab_size": cfg.vocab_size,
            "dtype": dtype,
            "saved_dtype": cfg.saved_dtype,
            "device": device,
            "device_note": loaded.device.note,
            "tokenizer": loaded.tokenizer.is_some(),
            "slopes": if alibi { json!(heads) } else { serde_json::Value::Null },
        });
        writeln!(out, "{doc}")?;
        return Ok(());
    }
    writeln!(
        out,
        "model         {} ({})",
        loaded.name,
        loaded.folder.display()
    )?;
    writeln!(out, "architecture  {}", cfg.arch.name())?;
    writeln!(
        out,
        "size          {}, {}, d_model {}, d_ff {}, {} parameters ({:.2} M)",
        crate::text::count(cfg.n_layers, "layer"),
        crate::text::count(cfg.n_heads, "head"),
        cfg.d_model,
        cfg.d_ff,
        params,
        params as f64 / 1e6
    )?;
    writeln!(out, "position      {}", cfg.position)?;
    writeln!(out, "train_len     {} tokens", cfg.train_len)?;
    if let Some(m) = cfg.max_len {
        writeln!(out, "max_len       {m} tokens (hard limit)")?;
    }
    writeln!(
        out,
        "vocab         {} ({})",
        cfg.vocab_size,
        if loaded.tokenizer.is_some() {
            "tokenizer.json present"
        } else {
            "no tokenizer: use --token-ids"
        }
    )?;
    writeln!(
        out,
        "dtype         {dtype} (saved as {})",
        cfg.saved_dtype.as_deref().unwrap_or("unknown")
    )?;
    writeln!(out, "device        {device} ({})", loaded.device.note)?;
    if alibi {
        writeln!(
            out,
            "slopes        head  slope         reach (tokens until the bias divides attention by 100)"
        )?;
        for (h, m) in slopes.iter().enumerate() {
            writeln!(
                out,
                "              {h:>4}  {m:<12.8}  {}",
                fmt_reach(alibi::reach(*m))
            )?;
        }
        if cfg.alibi_form == crate::model::config::AlibiForm::FalconBf16 {
            writeln!(
                out,
                "              (slopes on the softmax logits: Falcon-RW adds M*j, rounded in bf16, to q.k and \
                 scales both by 1/sqrt(head_dim), so its own slopes are M = slope x {:.4})",
                (cfg.head_dim() as f64).sqrt()
            )?;
        }
    }
    Ok(())
}
