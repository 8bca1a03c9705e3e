//! Loading and saving checkpoints, and choosing the device and dtype.
//!
//! Our checkpoint is a folder: `config.json` (the normalised [`Config`]), `model.safetensors` and
//! `tokenizer.json` (Hugging Face tokenizers format). Weights are memory-mapped and read lazily.
//!
//! The same folder layout serves Hugging Face BLOOM and MPT checkpoints: `config.json`'s
//! `model_type` picks the family (`bloom.rs`, `mpt.rs`), whose table maps every checkpoint tensor
//! onto our names; weights come from `model.safetensors` or the shards listed in
//! `model.safetensors.index.json` (the layout of transformers' `save_pretrained`). A `--model`
//! that is not a folder may be a repo id in the local Hugging Face cache (`hub.rs`). PyTorch
//! pickles are refused: loading one can run arbitrary code.

use super::device::{ChosenDevice, DeviceSpec, choose_device};
use super::error::LoadError;
use super::folder::{
    CheckpointConfig, INDEX_FILE, TOKENIZER_FILE, WEIGHTS_FILE, check_folder, load_tokenizer,
    read_checkpoint_config, weight_files,
};
use super::hub;
use super::transformer::Transformer;
use super::weights::{Checkpoint, build_foreign, build_from_safetensors};
use candle_core::DType;
use std::path::{Path, PathBuf};

/// A model ready to run, with what `inspect` and the TUI show about it.
pub struct LoadedModel {
    /// The transformer.
    pub model: Transformer,
    /// The tokenizer, when the folder has one.
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// The folder the model came from (a cache snapshot for a repo id).
    pub folder: PathBuf,
    /// A display name: the repo id when one was given, else the folder's name.
    pub name: String,
    /// The chosen device and why.
    pub device: ChosenDevice,
}

/// Loads a checkpoint onto `device` in `dtype`. `dir` is a folder (ours, BLOOM or MPT) or a
/// Hugging Face repo id found in the local cache.
pub fn load_model(
    dir: &Path,
    device: ChosenDevice,
    dtype: DType,
) -> Result<LoadedModel, LoadError> {
    let resolved = hub::resolve_model_path(dir)?;
    let dir = resolved.folder.as_path();
    check_folder(dir)?;
    let CheckpointConfig {
        config: cfg,
        family,
    } = read_checkpoint_config(dir)?;
    let files = weight_files(dir)?;
    let model = match &family {
        None => build_from_safetensors(&cfg, &files, dtype, &device.device)?,
        Some(family) => {
            let ckpt = Checkpoint::open(&files)?;
            if !dir.join(WEIGHTS_FILE).is_file() {
                // `weight_files` took the shards of the index.
                ckpt.check_index(&dir.join(INDEX_FILE), dir)?;
            }
            build_foreign(&cfg, family, &ckpt, dtype, &device.device)?
        }
    };
    let tok_file = dir.join(TOKENIZER_FILE);
    let tokenizer = if tok_file.is_file() {
        let tok = load_tokenizer(&tok_file)?;
        let tok_vocab = tok.get_vocab_size(true);
        if tok_vocab > cfg.vocab_size {
            return Err(LoadError::BadTokenizer {
                file: tok_file,
                msg: format!(
                    "it has {tok_vocab} tokens but the model's vocab_size is {}",
                    cfg.vocab_size
                ),
            });
        }
        Some(tok)
    } else {
        None
    };
    let name = resolved.repo_id.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string())
    });
    Ok(LoadedModel {
        model,
        tokenizer,
        name,
        folder: dir.to_path_buf(),
        device,
    })
}

/// Where a model comes from and how to run it: what `--model`, `--device` and `--dtype` say.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// A checkpoint folder or a Hugging Face repo id in the local cache.
    pub path: PathBuf,
    /// Which device to run on.
    pub device: DeviceSpec,
    /// The dtype the weights are converted to.
    pub dtype: DType,
}

impl ModelSource {
    /// Chooses the device and loads the model.
    pub fn load(&self) -> Result<LoadedModel, LoadError> {
        let device = choose_device(self.device)?;
        load_model(&self.path, device, self.dtype)
    }
}
