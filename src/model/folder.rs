//! A checkpoint folder: its file names, the checks on it, finding its weight files (single or
//! sharded safetensors; pickles refused), reading its `config.json` (ours, BLOOM, MPT or
//! Falcon-RW) and its tokenizer.

use super::config::{Config, OUR_FORMAT};
use super::error::{LoadError, one_line};
use super::family::Family;
use super::{bloom, falcon, mpt};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// File names inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// The single weights file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The index of a sharded safetensors checkpoint (`weight_map`: tensor name -> shard file).
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Extensions of PyTorch pickle files, which are never loaded.
pub const PICKLE_EXTENSIONS: [&str; 4] = ["bin", "pt", "pth", "ckpt"];
/// The prefix transformers puts before the base model's tensors (`transformer.h.0...`).
pub const HF_BASE_PREFIX: &str = "transformer.";

/// The architectures `config.json` may name, for error messages.
pub const SUPPORTED: &str =
    "alibi-explorer's own checkpoints, bloom, mpt and Falcon-RW (falcon with alibi: true)";

/// Position methods of well-known non-ALiBi `model_type`s, for a helpful refusal.
const OTHER_POSITIONS: &[(&str, &str)] = &[
    ("llama", "rotary"),
    ("mistral", "rotary"),
    ("mixtral", "rotary"),
    ("qwen2", "rotary"),
    ("qwen3", "rotary"),
    ("gemma", "rotary"),
    ("gemma2", "rotary"),
    ("gemma3", "rotary"),
    ("phi", "rotary"),
    ("phi3", "rotary"),
    ("gpt_neox", "rotary"),
    ("gptj", "rotary"),
    ("stablelm", "rotary"),
    ("olmo", "rotary"),
    ("codegen", "rotary"),
    ("gpt2", "learned absolute"),
    ("opt", "learned absolute"),
    ("gpt_bigcode", "learned absolute"),
    ("gpt_neo", "learned absolute"),
];

/// Reads a JSON file of a checkpoint folder, at most `limit` bytes (an endless device or a huge
/// file is an error, not a memory exhaustion).
pub fn read_file(file: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    crate::files::read_limited(file, limit, "a JSON file").map_err(|msg| LoadError::Unreadable {
        file: file.to_path_buf(),
        msg,
    })
}

/// What a `config.json` describes: the normalised config, and the family for foreign checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The normalised config.
    pub config: Config,
    /// `None` for our own checkpoints.
    pub family: Option<Family>,
}

/// Why a known non-ALiBi `model_type` (or an unknown one) cannot be loaded.
fn unsupported_model_type(kind: &str) -> String {
    let position = OTHER_POSITIONS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| *p);
    match position {
        Some(p) => format!(
            "model_type '{kind}' uses {p} position embeddings, not ALiBi (supported: {SUPPORTED})"
        ),
        None => format!("unknown model_type '{kind}' (supported: {SUPPORTED})"),
    }
}

/// Reads `config.json` and recognises what it describes: our own format (`format`), or a Hugging
/// Face `model_type` (bloom, mpt, falcon with ALiBi); anything else is refused with the reason.
pub fn read_checkpoint_config(dir: &Path) -> Result<CheckpointConfig, LoadError> {
    let file = dir.join(CONFIG_FILE);
    for p in [dir, file.as_path()] {
        if let Some(msg) = crate::files::permission_problem(p) {
            return Err(LoadError::Permission(msg));
        }
    }
    if !file.is_file() {
        return Err(LoadError::MissingFile {
            file,
            hint: "a checkpoint folder needs config.json and model.safetensors (tokenizer.json for --text)"
                .to_string(),
        });
    }
    let bytes = read_file(&file, crate::files::MAX_JSON_BYTES)?;
    let bad = |msg: String| LoadError::BadConfig {
        file: file.clone(),
        msg,
    };
    let unsupported = |msg: String| LoadError::Unsupported {
        file: file.clone(),
        msg,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(one_line(e)))?;
    if let Some(format) = value.get("format") {
        if format.as_str() != Some(OUR_FORMAT) {
            return Err(bad(format!(
                "unknown format {format} (expected '{OUR_FORMAT}')"
            )));
        }
    } else if let Some(kind) = value.get("model_type") {
        let kind = kind.as_str().unwrap_or_default().to_string();
        let (config, family) = match kind.as_str() {
            "bloom" => {
                let raw: bloom::RawBloomConfig =
                    serde_json::from_value(value).map_err(|e| bad(one_line(e)))?;
                (bloom::to_config(&raw).map_err(unsupported)?, bloom::FAMILY)
            }
            "mpt" => {
                let raw: mpt::RawMptConfig =
                    serde_json::from_value(value).map_err(|e| bad(one_line(e)))?;
                (mpt::to_config(&raw).map_err(unsupported)?, mpt::FAMILY)
            }
            // RefinedWeb* are the Falcon configs from before transformers had Falcon.
            "falcon" | "RefinedWeb" | "RefinedWebModel" => {
                let raw: falcon::RawFalconConfig =
                    serde_json::from_value(value).map_err(|e| bad(one_line(e)))?;
                (
                    falcon::to_config(&raw).map_err(unsupported)?,
                    falcon::FAMILY,
                )
            }
            other => return Err(unsupported(unsupported_model_type(other))),
        };
        return Ok(CheckpointConfig {
            config,
            family: Some(family),
        });
    }
    let cfg: Config = serde_json::from_value(value).map_err(|e| bad(one_line(e)))?;
    cfg.validate().map_err(bad)?;
    Ok(CheckpointConfig {
        config: cfg,
        family: None,
    })
}

/// Reads and validates `config.json` into the normalised [`Config`]: ours, BLOOM's, MPT's or
/// Falcon-RW's.
pub fn read_config(dir: &Path) -> Result<Config, LoadError> {
    read_checkpoint_config(dir).map(|c| c.config)
}

/// Checks that `dir` is an existing folder.
pub fn check_folder(dir: &Path) -> Result<(), LoadError> {
    if let Some(msg) = crate::files::permission_problem(dir) {
        return Err(LoadError::Permission(msg));
    }
    if !dir.exists() {
        return Err(LoadError::Missing(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(LoadError::NotAFolder(dir.to_path_buf()));
    }
    Ok(())
}

/// Loads a tokenizer file.
///
/// tokenizers 0.23 panics on some broken files instead of returning an error (`expect("Helper")`
/// on a `decoder` cut short, `expect("Precompiled")` on a bad `precompiled_charsmap`), so the JSON
/// is checked first (a truncated download is the common case) and a panic while reading it is
/// turned into an error.
pub fn load_tokenizer(file: &Path) -> Result<tokenizers::Tokenizer, LoadError> {
    let bad = |msg: String| LoadError::BadTokenizer {
        file: file.to_path_buf(),
        msg,
    };
    let bytes = read_file(file, crate::files::MAX_TOKENIZER_BYTES)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(|e| {
        bad(format!(
            "not valid JSON ({}); the file may be truncated",
            one_line(e)
        ))
    })?;
    std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(&bytes))
        .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            bad(format!(
                "the tokenizers library panicked reading it ({}); the file is malformed",
                one_line(why)
            ))
        })?
        .map_err(|e| bad(one_line(e)))
}

/// The `weight_map` of a sharded checkpoint's index: (tensor name, shard file name) pairs.
pub fn read_index(index: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let bad = |msg: String| LoadError::BadWeights {
        file: index.to_path_buf(),
        msg,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&read_file(index, crate::files::MAX_JSON_BYTES)?)
            .map_err(|e| bad(one_line(e)))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            bad(
                r#"no "weight_map" (expected {"weight_map": {"tensor name": "shard file"}})"#
                    .into(),
            )
        })?;
    map.iter()
        .map(|(tensor, file)| {
            let file = file
                .as_str()
                .filter(|f| {
                    let p = Path::new(f);
                    !f.is_empty()
                        && p.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                })
                .ok_or_else(|| {
                    bad(format!(
                        "weight_map entry '{tensor}' must name a shard file inside the folder (got {file})"
                    ))
                })?;
            Ok((tensor.clone(), file.to_string()))
        })
        .collect()
}

/// PyTorch pickle files in `dir`, by name, sorted.
fn pickle_files(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.path()
                        .extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| PICKLE_EXTENSIONS.contains(&x))
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The safetensors files of a checkpoint folder: `model.safetensors`, or every shard named by
/// `model.safetensors.index.json` (each must exist). A folder with only PyTorch pickles is refused.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let shards: BTreeSet<String> = read_index(&index)?.into_iter().map(|(_, f)| f).collect();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            let file = dir.join(&shard);
            if !file.is_file() {
                return Err(LoadError::MissingFile {
                    file,
                    hint: format!(
                        "'{}' lists it as a shard; download the missing shard or the whole checkpoint again",
                        index.display()
                    ),
                });
            }
            files.push(file);
        }
        return Ok(files);
    }
    let pickles = pickle_files(dir);
    if !pickles.is_empty() {
        let shown = pickles
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if pickles.len() > 3 { ", ..." } else { "" };
        return Err(LoadError::Pickle {
            dir: dir.to_path_buf(),
            found: format!("{shown}{more}"),
        });
    }
    Err(LoadError::MissingFile {
        file: single,
        hint: format!(
            "a checkpoint folder needs {WEIGHTS_FILE}, or {INDEX_FILE} and the shards it lists"
        ),
    })
}
