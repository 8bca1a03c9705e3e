//! Training checkpoints (parameters and AdamW moments in `state.safetensors`, progress in
//! `state.json`, written to a temporary folder and renamed into place) and the token cache that
//! spares a resumed run the tokenization.

use super::optim::AdamW;
use super::settings::TrainSettings;
use candle_core::{Device, Tensor};
use color_eyre::eyre::{Result, WrapErr, eyre};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run's settings (a resume must match them).
    pub settings: TrainSettings,
    /// Optimiser steps done.
    pub step: usize,
    /// Training time so far, in seconds.
    pub elapsed_s: f64,
    /// Training tokens seen so far.
    pub tokens_seen: usize,
    /// The latest training loss (nats/token).
    pub last_train_loss: Option<f64>,
    /// The latest validation loss (nats/token).
    pub last_valid_loss: Option<f64>,
    /// The latest copy test (runs with one).
    #[serde(default)]
    pub last_copy: Option<crate::eval::reach::CopyScore>,
    /// Sum of the training losses since the last line of the loss log, so a resumed run logs
    /// the same means as an uninterrupted one.
    #[serde(default)]
    pub window_loss_sum: f64,
    /// Steps since the last line of the loss log.
    #[serde(default)]
    pub window_steps: usize,
    /// Processes the run has taken so far (1 + resumes).
    #[serde(default)]
    pub processes: usize,
    /// The largest peak resident set size of those processes, MiB (Linux `VmHWM`; 0 elsewhere).
    #[serde(default)]
    pub peak_rss_mib: f64,
}

/// Writes token ids as little-endian u32s.
pub fn write_token_cache(path: &Path, ids: &[u32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(ids.len() * 4);
    for id in ids {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    std::fs::write(path, bytes).wrap_err_with(|| format!("cannot write '{}'", path.display()))
}

/// Reads a token cache; `None` when missing or malformed (the corpus is then tokenized again).
pub fn read_token_cache(path: &Path) -> Option<Vec<u32>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Writes a checkpoint folder atomically (temporary folder renamed into place): `tensors` (the
/// parameters and AdamW moments, named `param.NAME`, `m.NAME`, `v.NAME`) and the progress `ck`.
pub fn save_training_checkpoint(
    dir: &Path,
    tensors: &HashMap<String, Tensor>,
    ck: &CheckpointState,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    candle_core::safetensors::save(tensors, tmp.join("state.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(ck)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

/// The tensors of [`AdamW`]'s parameters and moments, named as checkpoints store them.
pub fn adamw_tensors(opt: &AdamW) -> HashMap<String, Tensor> {
    let mut tensors = HashMap::new();
    for p in &opt.params {
        tensors.insert(format!("param.{}", p.name), p.var.as_tensor().clone());
        tensors.insert(format!("m.{}", p.name), p.m.clone());
        tensors.insert(format!("v.{}", p.name), p.v.clone());
    }
    tensors
}

/// A loaded checkpoint: its progress and its tensors (on the CPU).
#[derive(Debug)]
pub struct Loaded {
    /// Progress and settings.
    pub state: CheckpointState,
    /// Parameters and moments by checkpoint name.
    pub tensors: HashMap<String, Tensor>,
    dir: std::path::PathBuf,
}

impl Loaded {
    /// The tensor `{prefix}.{name}`, checked against `shape`; missing or misshapen ones are a
    /// clear "corrupt checkpoint" error.
    pub fn get(&self, prefix: &str, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self
            .tensors
            .get(&format!("{prefix}.{name}"))
            .ok_or_else(|| corrupt(&self.dir, format!("missing {prefix}.{name}")))?;
        if t.dims() != shape {
            return Err(corrupt(
                &self.dir,
                format!(
                    "{prefix}.{name} has shape {:?}, expected {shape:?}",
                    t.dims()
                ),
            ));
        }
        Ok(t)
    }
}

fn corrupt(dir: &Path, what: String) -> color_eyre::Report {
    eyre!(
        "checkpoint '{}' is corrupt: {what} (hint: delete the folder to start over, or restore it)",
        dir.display()
    )
}

/// Reads a checkpoint folder; unreadable files are clear errors.
pub fn load_training_checkpoint(dir: &Path) -> Result<Loaded> {
    let state: CheckpointState = serde_json::from_slice(
        &crate::files::read_limited(
            &dir.join("state.json"),
            crate::files::MAX_JSON_BYTES,
            "a checkpoint state",
        )
        .map_err(|e| corrupt(dir, format!("state.json: {e}")))?,
    )
    .map_err(|e| corrupt(dir, format!("state.json: {e}")))?;
    let tensors = candle_core::safetensors::load(dir.join("state.safetensors"), &Device::Cpu)
        .map_err(|e| {
            corrupt(
                dir,
                format!("state.safetensors: {}", crate::model::error::one_line(e)),
            )
        })?;
    Ok(Loaded {
        state,
        tensors,
        dir: dir.to_path_buf(),
    })
}

/// Restores parameters and moments of `opt` from `loaded`.
pub fn restore_adamw(loaded: &Loaded, opt: &mut AdamW) -> Result<()> {
    for p in &mut opt.params {
        let dims = p.var.dims().to_vec();
        let dev = p.var.device().clone();
        p.var
            .set(&loaded.get("param", &p.name, &dims)?.to_device(&dev)?)?;
        p.m = loaded.get("m", &p.name, &dims)?.to_device(&dev)?;
        p.v = loaded.get("v", &p.name, &dims)?.to_device(&dev)?;
    }
    opt.step = loaded.state.step;
    Ok(())
}
