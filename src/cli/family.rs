//! `family`: ALiBi beside the position encodings it is compared with (KERPLE log and power, T5's
//! buckets, NoPE, rotary's long-term decay), as a table of each scheme's number at a few
//! distances and its prior's mean distance at a length; `--json FILE` writes the same. No model
//! needed: the numbers come from `alibi::family`.

use crate::alibi::family::{Family, Scheme, Value, fmt_param};
use clap::Args;
use color_eyre::eyre::{Result, eyre};
use serde_json::{Map, Value as Json, json};
use std::io::Write;
use std::path::PathBuf;

/// The distances the table shows.
pub const DISTANCES: [usize; 6] = [1, 4, 16, 64, 256, 1024];
/// The longest `--length`: the prior sums over every key, so this bounds the work.
pub const MAX_LENGTH: usize = 1 << 20;

/// Arguments of `family`.
#[derive(Debug, Args)]
pub struct FamilyArgs {
    /// The window whose last query the priors are computed for (keys 0..L-1).
    #[arg(long, default_value_t = 1024, value_name = "L")]
    pub length: usize,
    /// ALiBi's slope m (bias −m·d) [default: 1/16, a middle head of 8].
    #[arg(long, default_value_t = crate::alibi::family::DEFAULT_ALIBI_SLOPE, allow_negative_numbers = true, value_parser = super::common::slope)]
    pub slope: f64,
    /// KERPLE log's p (bias −p·ln(1 + a·d); the paper's r1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::common::kernel_param)]
    pub kerple_log_p: f64,
    /// KERPLE log's a (the paper's r2).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::common::kernel_param)]
    pub kerple_log_a: f64,
    /// KERPLE power's a (bias −a·d^p; the paper's r1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = super::common::kernel_param)]
    pub kerple_power_a: f64,
    /// KERPLE power's exponent p, 0 < p <= 2 (the paper's r2).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = super::common::kernel_power)]
    pub kerple_power_p: f64,
    /// T5's number of buckets (even; half of them exact distances).
    #[arg(long, default_value_t = crate::alibi::family::T5_BUCKETS)]
    pub t5_buckets: usize,
    /// T5's max_distance: every key this far back or farther shares the last bucket.
    #[arg(long, default_value_t = crate::alibi::family::T5_MAX_DISTANCE)]
    pub t5_max_distance: usize,
    /// Rotary's head dimension D (even).
    #[arg(long, default_value_t = crate::alibi::family::ROTARY_DIM, value_name = "D")]
    pub rotary_dim: usize,
    /// Rotary's base (θ_k = base^(−2k/D)).
    #[arg(long, default_value_t = crate::alibi::family::ROTARY_BASE, allow_negative_numbers = true, value_parser = super::common::rotary_base)]
    pub rotary_base: f64,
    /// Also write the table as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl FamilyArgs {
    /// The parameters, checked.
    pub fn family(&self) -> Result<Family> {
        let f = Family {
            alibi_slope: self.slope,
            kerple_log_p: self.kerple_log_p,
            kerple_log_a: self.kerple_log_a,
            kerple_power_a: self.kerple_power_a,
            kerple_power_p: self.kerple_power_p,
            t5_buckets: self.t5_buckets,
            t5_max_distance: self.t5_max_distance,
            rotary_dim: self.rotary_dim,
            rotary_base: self.rotary_base,
        };
        f.validate().map_err(|e| eyre!(e))?;
        Ok(f)
    }
}

/// What a scheme's number is called in the table and the JSON.
fn value_name(v: Value) -> &'static str {
    match v {
        Value::Bias => "bias",
        Value::Bucket => "bucket",
        Value::DecayBound => "decay_bound",
    }
}

/// The JSON document: the length, the distances and every scheme's numbers.
pub fn report(f: &Family, length: usize) -> Json {
    let schemes: Vec<Json> = Scheme::ALL
        .iter()
        .map(|&s| {
            let params: Map<String, Json> = f
                .params(s)
                .iter()
                .map(|p| (p.name.to_string(), json!(p.value)))
                .collect();
            json!({
                "name": s.name(),
                "title": s.title(),
                "formula": s.formula(),
                "source": s.source(),
                "value": value_name(s.value_kind()),
                "parameters": params,
                "values": DISTANCES.iter().map(|&d| f.value(s, d)).collect::<Vec<_>>(),
                "prior_mean_distance": f.prior_mean_distance(s, length),
                "no_prior": s.no_prior_reason(),
            })
        })
        .collect();
    json!({
        "length": length,
        "query": length - 1,
        "distances": DISTANCES,
        "schemes": schemes,
    })
}

/// Runs `family`.
pub fn run(a: &FamilyArgs) -> Result<()> {
    let f = a.family()?;
    if a.length == 0 || a.length > MAX_LENGTH {
        return Err(eyre!(
            "--length must be from 1 to {MAX_LENGTH} (got {})",
            a.length
        ));
    }
    if let Some(path) = &a.json {
        crate::files::check_output("--json", path).map_err(|e| eyre!(e))?;
    }
    let len = a.length;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Position-encoding family: each scheme's number at distance d = i − j, and the prior's mean \
         distance for the last query of {len} tokens (the bias alone, no content)"
    )?;
    let mut header = format!("{:<13} {:<33}", "scheme", "parameters");
    for d in DISTANCES {
        header.push_str(&format!(" {:>8}", format!("d={d}")));
    }
    header.push_str("  prior mean d");
    writeln!(out, "{header}")?;
    for s in Scheme::ALL {
        let mut row = format!("{:<13} {:<33}", s.title(), f.params_text(s));
        for d in DISTANCES {
            row.push_str(&format!(" {:>8}", fmt_param(f.value(s, d))));
        }
        match f.prior_mean_distance(s, len) {
            Some(m) => row.push_str(&format!("  {m:>12.1}")),
            None => row.push_str(&format!("  {:>12}", "—")),
        }
        writeln!(out, "{row}")?;
    }
    writeln!(out)?;
    for s in Scheme::ALL {
        let what = match s.value_kind() {
            Value::Bias => "",
            Value::Bucket => " (numbers: bucket index)",
            Value::DecayBound => " (numbers: decay bound, not a bias)",
        };
        let note = s
            .no_prior_reason()
            .map(|r| format!("; {r}"))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<13} {}{what} · {}{note}",
            s.title(),
            s.formula(),
            s.source()
        )?;
    }
    if let Some(path) = &a.json {
        let doc = report(&f, len);
        crate::files::write_bytes(path, format!("{doc:#}\n").as_bytes()).map_err(|e| eyre!(e))?;
    }
    Ok(())
}
