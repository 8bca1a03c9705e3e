//! Where a run's parameters start: a fresh initialisation from the seed, or `--init`'s model (a
//! continuation stage on a finished model, e.g. the copy mix on a shipped one).

use super::settings::TrainSettings;
use crate::model::config::Config;
use crate::model::init::init_params;
use candle_core::{Device, Tensor};
use color_eyre::eyre::{Result, bail, eyre};
use std::collections::HashMap;

/// The parameters a run starts from: `--init`'s model (checked against the run's shape and
/// position scheme, every tensor by name and shape) or a fresh initialisation from the seed.
pub(super) fn initial_params(
    s: &TrainSettings,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let Some(dir) = &s.init else {
        return Ok(init_params(&s.model, s.seed, device)?);
    };
    let cfg = crate::model::folder::read_config(dir)
        .map_err(|e| eyre!("--init '{}': {e}", dir.display()))?;
    let m = &s.model;
    let shape = |c: &Config| {
        (
            c.position,
            c.train_len,
            c.d_model,
            c.n_layers,
            c.n_heads,
            c.d_ff,
            c.vocab_size,
        )
    };
    if shape(&cfg) != shape(m) {
        bail!(
            "--init '{}' is a {} model at train_len {} (d_model {}, {} layers, {} heads, d_ff {}, vocab {}); this run trains {} at {} (d_model {}, {} layers, {} heads, d_ff {}, vocab {}) (hint: give the run the same shape and position scheme)",
            dir.display(),
            cfg.position,
            cfg.train_len,
            cfg.d_model,
            cfg.n_layers,
            cfg.n_heads,
            cfg.d_ff,
            cfg.vocab_size,
            m.position,
            m.train_len,
            m.d_model,
            m.n_layers,
            m.n_heads,
            m.d_ff,
            m.vocab_size
        );
    }
    let file = dir.join("model.safetensors");
    let loaded = candle_core::safetensors::load(&file, device)
        .map_err(|e| eyre!("--init: cannot read '{}': {e}", file.display()))?;
    let mut params = HashMap::new();
    for (name, dims, _) in crate::model::init::param_specs(m) {
        let t = loaded.get(&name).ok_or_else(|| {
            eyre!("--init: '{}' has no tensor '{name}' (hint: --init takes a model trained by `train`)", file.display())
        })?;
        if t.dims() != dims.as_slice() {
            bail!(
                "--init: '{}' has '{name}' of shape {:?}, expected {dims:?}",
                file.display(),
                t.dims()
            );
        }
        params.insert(name, t.to_dtype(candle_core::DType::F32)?);
    }
    Ok(params)
}

/// `s` with the ALiBi slopes of `--init`'s model when the run names none of its own (a model
/// trained with `--learn-slopes` or `--slopes` keeps its slopes in `config.json`, not among the
/// weights), so the continuation attends as its starting model did and saves those slopes.
pub(super) fn with_init_slopes(s: &TrainSettings) -> Result<TrainSettings> {
    let mut out = s.clone();
    if let (Some(dir), None) = (&s.init, &s.model.slopes) {
        let cfg = crate::model::folder::read_config(dir)
            .map_err(|e| eyre!("--init '{}': {e}", dir.display()))?;
        if cfg.position == s.model.position && cfg.n_heads == s.model.n_heads {
            out.model.slopes = cfg.slopes;
        }
    }
    Ok(out)
}
