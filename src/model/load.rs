//! Loading and saving checkpoints, and choosing the device and dtype.
//!
//! Our checkpoint is a folder: `config.json` (the normalised [`Config`]), `model.safetensors` and
//! `tokenizer.json` (Hugging Face tokenizers format). Weights are memory-mapped and read lazily.

use super::config::{Config, OUR_FORMAT};
use super::transformer::Transformer;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// File names inside a checkpoint folder.
pub const CONFIG_FILE: &str = "config.json";
/// The single weights file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

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

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// A GPU when the binary has the feature and one is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU by ordinal.
    Cuda(usize),
    /// Apple's Metal.
    Metal,
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "metal" => Ok(Self::Metal),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!("unknown device '{s}' (expected auto, cpu, cuda, cuda:N or metal)")
                }),
        }
    }
}

/// A short name for a device: `cpu`, `cuda:0`, `metal`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The chosen device plus a note saying why (shown by `inspect` and the status bar).
#[derive(Debug, Clone)]
pub struct ChosenDevice {
    /// The device.
    pub device: Device,
    /// Why it was chosen, e.g. "auto: no GPU support in this build".
    pub note: String,
}

/// Resolves a [`DeviceSpec`]. `auto` tries CUDA, then Metal, then falls back to the CPU with a note;
/// an explicit GPU request that cannot be met is an error.
pub fn choose_device(spec: DeviceSpec) -> Result<ChosenDevice, LoadError> {
    let cpu = |note: &str| ChosenDevice {
        device: Device::Cpu,
        note: note.to_string(),
    };
    match spec {
        DeviceSpec::Cpu => Ok(cpu("requested")),
        DeviceSpec::Cuda(n) => Device::new_cuda(n)
            .map(|device| ChosenDevice {
                device,
                note: "requested".to_string(),
            })
            .map_err(|e| {
                LoadError::Device(format!(
                    "cannot use cuda:{n}: {} (hint: build with --features cuda on a machine with an NVIDIA GPU, or use --device cpu)",
                    one_line(e)
                ))
            }),
        DeviceSpec::Metal => Device::new_metal(0)
            .map(|device| ChosenDevice {
                device,
                note: "requested".to_string(),
            })
            .map_err(|e| {
                LoadError::Device(format!(
                    "cannot use metal: {} (hint: build with --features metal on macOS, or use --device cpu)",
                    one_line(e)
                ))
            }),
        DeviceSpec::Auto => {
            if cfg!(feature = "cuda") {
                match Device::new_cuda(0) {
                    Ok(device) => {
                        return Ok(ChosenDevice {
                            device,
                            note: "auto: CUDA GPU found".to_string(),
                        });
                    }
                    Err(e) => {
                        return Ok(cpu(&format!("auto: CUDA unavailable ({}), using CPU", one_line(e))));
                    }
                }
            }
            if cfg!(feature = "metal") {
                match Device::new_metal(0) {
                    Ok(device) => {
                        return Ok(ChosenDevice {
                            device,
                            note: "auto: Metal GPU found".to_string(),
                        });
                    }
                    Err(e) => {
                        return Ok(cpu(&format!("auto: Metal unavailable ({}), using CPU", one_line(e))));
                    }
                }
            }
            Ok(cpu("auto: built without GPU support"))
        }
    }
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(format!("unknown dtype '{s}' (expected f32, f16 or bf16)")),
    }
}

/// The name of a dtype as the CLI spells it.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F64 => "f64",
        _ => "f32",
    }
}

/// A model ready to run, with what `inspect` and the TUI show about it.
pub struct LoadedModel {
    /// The transformer.
    pub model: Transformer,
    /// The tokenizer, when the folder has one.
    pub tokenizer: Option<tokenizers::Tokenizer>,
    /// The folder the model came from.
    pub folder: PathBuf,
    /// A display name (the folder's name).
    pub name: String,
    /// The chosen device and why.
    pub device: ChosenDevice,
}

fn read_file(file: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(file).map_err(|err| LoadError::Io {
        file: file.to_path_buf(),
        err,
    })
}

/// Reads and validates our `config.json`.
pub fn read_config(dir: &Path) -> Result<Config, LoadError> {
    let file = dir.join(CONFIG_FILE);
    if !file.is_file() {
        return Err(LoadError::MissingFile {
            file,
            hint: "a checkpoint folder needs config.json, model.safetensors and tokenizer.json"
                .to_string(),
        });
    }
    let bytes = read_file(&file)?;
    let bad = |msg: String| LoadError::BadConfig {
        file: file.clone(),
        msg,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(one_line(e)))?;
    if let Some(format) = value.get("format").and_then(|f| f.as_str())
        && format != OUR_FORMAT
    {
        return Err(bad(format!(
            "unknown format '{format}' (expected '{OUR_FORMAT}')"
        )));
    }
    if value.get("model_type").is_some() && value.get("format").is_none() {
        let kind = value["model_type"].as_str().unwrap_or("?");
        return Err(bad(format!(
            "this is a Hugging Face '{kind}' config; its loader is not available in this build"
        )));
    }
    let cfg: Config = serde_json::from_value(value).map_err(|e| bad(one_line(e)))?;
    cfg.validate().map_err(bad)?;
    Ok(cfg)
}

/// Checks that `dir` is an existing folder.
pub fn check_folder(dir: &Path) -> Result<(), LoadError> {
    if !dir.exists() {
        return Err(LoadError::Missing(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(LoadError::NotAFolder(dir.to_path_buf()));
    }
    Ok(())
}

/// Loads a tokenizer file.
pub fn load_tokenizer(file: &Path) -> Result<tokenizers::Tokenizer, LoadError> {
    tokenizers::Tokenizer::from_file(file).map_err(|e| LoadError::BadTokenizer {
        file: file.to_path_buf(),
        msg: one_line(e),
    })
}

/// Opens the safetensors file(s) and builds the transformer, turning candle's messages about
/// missing tensors and wrong shapes into errors that name the file.
pub fn build_from_safetensors(
    cfg: &Config,
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<Transformer, LoadError> {
    let name = files.first().cloned().unwrap_or_default();
    for f in files {
        if !f.is_file() {
            return Err(LoadError::MissingFile {
                file: f.clone(),
                hint: "the weights file is missing; re-download or re-save the checkpoint"
                    .to_string(),
            });
        }
    }
    // SAFETY: the files are memory-mapped read-only; we never write to them while mapped.
    #[allow(unsafe_code)]
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }.map_err(|e| {
        LoadError::BadWeights {
            file: name.clone(),
            msg: format!(
                "not a valid safetensors file ({}); the file may be truncated or corrupt",
                one_line(e)
            ),
        }
    })?;
    Transformer::new(cfg, vb).map_err(|e| LoadError::BadWeights {
        file: name,
        msg: format!("{} (the weights do not match config.json)", one_line(e)),
    })
}

/// Loads one of our checkpoint folders onto `device` in `dtype`.
pub fn load_model(
    dir: &Path,
    device: ChosenDevice,
    dtype: DType,
) -> Result<LoadedModel, LoadError> {
    check_folder(dir)?;
    let cfg = read_config(dir)?;
    let model = build_from_safetensors(&cfg, &[dir.join(WEIGHTS_FILE)], dtype, &device.device)?;
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
    Ok(LoadedModel {
        model,
        tokenizer,
        name: dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string()),
        folder: dir.to_path_buf(),
        device,
    })
}

/// Writes a checkpoint folder: config (with `saved_dtype`), weights converted to `dtype`, and the
/// tokenizer when given. Files are written next to their final names and renamed into place.
pub fn save_checkpoint(
    dir: &Path,
    cfg: &Config,
    params: &HashMap<String, Tensor>,
    dtype: DType,
    tokenizer_json: Option<&Path>,
) -> Result<(), LoadError> {
    let io = |file: &Path, err| LoadError::Io {
        file: file.to_path_buf(),
        err,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut cfg = cfg.clone();
    cfg.saved_dtype = Some(dtype_name(dtype).to_string());
    let converted = params
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<HashMap<_, _>>>()
        .map_err(|e| LoadError::BadWeights {
            file: dir.join(WEIGHTS_FILE),
            msg: one_line(e),
        })?;
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join(format!("{WEIGHTS_FILE}.tmp"));
    candle_core::safetensors::save(&converted, &tmp).map_err(|e| LoadError::BadWeights {
        file: weights.clone(),
        msg: one_line(e),
    })?;
    std::fs::rename(&tmp, &weights).map_err(|e| io(&weights, e))?;
    let config = dir.join(CONFIG_FILE);
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| LoadError::BadConfig {
        file: config.clone(),
        msg: one_line(e),
    })?;
    std::fs::write(&config, json + "\n").map_err(|e| io(&config, e))?;
    if let Some(src) = tokenizer_json {
        let dst = dir.join(TOKENIZER_FILE);
        if src != dst {
            std::fs::copy(src, &dst).map_err(|e| io(&dst, e))?;
        }
    }
    Ok(())
}
