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

/// Writes a checkpoint folder atomically (temporary folder renamed into place).
pub fn save_training_checkpoint(dir: &Path, opt: &AdamW, ck: &CheckpointState) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for p in &opt.params {
        tensors.insert(format!("param.{}", p.name), p.var.as_tensor().clone());
        tensors.insert(format!("m.{}", p.name), p.m.clone());
        tensors.insert(format!("v.{}", p.name), p.v.clone());
    }
    candle_core::safetensors::save(&tensors, tmp.join("state.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(ck)?)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

/// Restores parameters and moments into `opt`; corrupt or mismatched files are clear errors.
pub fn load_training_checkpoint(dir: &Path, opt: &mut AdamW) -> Result<CheckpointState> {
    let corrupt = |what: String| {
        eyre!(
            "checkpoint '{}' is corrupt: {what} (hint: delete the folder to start over, or restore it)",
            dir.display()
        )
    };
    let state: CheckpointState = serde_json::from_slice(
        &crate::files::read_limited(
            &dir.join("state.json"),
            crate::files::MAX_JSON_BYTES,
            "a checkpoint state",
        )
        .map_err(|e| corrupt(format!("state.json: {e}")))?,
    )
    .map_err(|e| corrupt(format!("state.json: {e}")))?;
    let tensors = candle_core::safetensors::load(dir.join("state.safetensors"), &Device::Cpu)
        .map_err(|e| {
            corrupt(format!(
                "state.safetensors: {}",
                crate::model::error::one_line(e)
            ))
        })?;
    for p in &mut opt.params {
        let get = |prefix: &str| -> Result<Tensor> {
            let t = tensors
                .get(&format!("{prefix}.{}", p.name))
                .ok_or_else(|| corrupt(format!("missing {prefix}.{}", p.name)))?;
            if t.shape() != p.var.shape() {
                return Err(corrupt(format!(
                    "{prefix}.{} has shape {:?}, expected {:?}",
                    p.name,
                    t.dims(),
                    p.var.dims()
                )));
            }
            Ok(t.to_device(p.var.device())?)
        };
        p.var.set(&get("param")?)?;
        p.m = get("m")?;
        p.v = get("v")?;
    }
    opt.step = state.step;
    Ok(state)
}
