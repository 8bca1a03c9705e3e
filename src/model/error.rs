//! Errors of loading a model, shared by the loader and the family modules (BLOOM, MPT, the hub),
//! so those modules can name them without importing the loader.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while loading a model; each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder does not exist.
    #[error(
        "model folder '{0}' does not exist (hint: pass a folder with config.json and model.safetensors)"
    )]
    Missing(PathBuf),
    /// A path that is not a folder.
    #[error(
        "'{0}' is not a folder (hint: --model takes the checkpoint folder, not a file inside it)"
    )]
    NotAFolder(PathBuf),
    /// A file the folder must contain.
    #[error("'{file}' not found (hint: {hint})")]
    MissingFile {
        /// The missing file.
        file: PathBuf,
        /// What to do.
        hint: String,
    },
    /// A file that could not be read.
    #[error("cannot read '{file}': {err}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// Malformed JSON or a config with wrong fields.
    #[error("'{file}' is not a valid config: {msg}")]
    BadConfig {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A weights file that is not valid safetensors, or tensors that do not match the config.
    #[error("'{file}': {msg}")]
    BadWeights {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tokenizer that cannot be parsed.
    #[error("'{file}' is not a valid tokenizer.json: {msg}")]
    BadTokenizer {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A device that cannot be used.
    #[error("{0}")]
    Device(String),
    /// A repo id that is not in the local Hugging Face cache.
    #[error(
        "'{repo_id}' is not a folder and is not in the Hugging Face cache at {cache} (hint: download it with `huggingface-cli download {repo_id}` or pass a folder)"
    )]
    NotCached {
        /// The repo id as given.
        repo_id: String,
        /// The cache root that was searched.
        cache: String,
    },
    /// A folder whose weights exist only as PyTorch pickles.
    #[error(
        "'{dir}' has only PyTorch pickle weights ({found}); alibi-explorer never unpickles (a pickle can run code): convert to safetensors (e.g. `python -c 'from transformers import AutoModelForCausalLM as M; M.from_pretrained(\"{dir}\").save_pretrained(\"OUT\", safe_serialization=True)'`)"
    )]
    Pickle {
        /// The folder.
        dir: PathBuf,
        /// The pickle file names found.
        found: String,
    },
    /// A config naming an architecture or option this program cannot compute.
    #[error("'{file}': {msg}")]
    Unsupported {
        /// The config file.
        file: PathBuf,
        /// What is not supported and what is.
        msg: String,
    },
}

/// Flattens an error's text to one line.
pub fn one_line(msg: impl fmt::Display) -> String {
    msg.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
