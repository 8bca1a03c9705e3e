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
    /// A file or folder this user may not read ([`crate::files::permission_problem`]'s message).
    #[error("{0}")]
    Permission(String),
    /// A file that could not be read.
    #[error("cannot read '{file}': {err}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// A file that could not be read whole (too big, a folder, an OS error), with the message.
    #[error("{msg}")]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// What happened, naming the file.
        msg: String,
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

/// Flattens an error's text to one line, leaving out any backtrace in it (candle appends one to
/// its errors when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` is set: indented numbered frames,
/// each followed by indented `at FILE:LINE` lines, or `disabled backtrace`).
pub fn one_line(msg: impl fmt::Display) -> String {
    let text = msg.to_string();
    let mut kept = Vec::new();
    let mut in_backtrace = false;
    for raw in text.lines() {
        let line = raw.trim();
        let indented = raw.starts_with(' ');
        let is_frame = indented
            && line
                .split_once(": ")
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_frame || (in_backtrace && indented && line.starts_with("at ")) {
            in_backtrace = true;
            continue;
        }
        if matches!(line, "disabled backtrace" | "unsupported backtrace") {
            continue;
        }
        in_backtrace = false;
        if !line.is_empty() {
            kept.push(line);
        }
    }
    kept.join(" ")
}
