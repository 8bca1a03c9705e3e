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

use super::config::{Arch, Config, OUR_FORMAT};
use super::transformer::Transformer;
use super::{bloom, hub, init, mpt};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
pub const SUPPORTED: &str = "alibi-explorer's own checkpoints, bloom and mpt";

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
    ("falcon", "rotary"),
    ("gpt2", "learned absolute"),
    ("opt", "learned absolute"),
    ("gpt_bigcode", "learned absolute"),
    ("gpt_neo", "learned absolute"),
];

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

/// Why a GPU could not be used, in one line: candle's error without the backtrace it carries, with
/// the common CUDA driver errors said in words (the code stays in parentheses).
pub fn gpu_error_reason(e: &candle_core::Error) -> String {
    let mut e = e;
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = inner;
    }
    describe_gpu_error(&e.to_string())
}

/// Puts the common CUDA driver error codes found in `msg` into words; other messages are returned
/// on one line.
pub fn describe_gpu_error(msg: &str) -> String {
    const KNOWN: [(&str, &str); 6] = [
        (
            "CUDA_ERROR_STUB_LIBRARY",
            "no NVIDIA driver: only a stub libcuda was found",
        ),
        ("CUDA_ERROR_NO_DEVICE", "no CUDA device is visible"),
        (
            "CUDA_ERROR_INVALID_DEVICE",
            "there is no CUDA device with that number",
        ),
        (
            "CUDA_ERROR_INSUFFICIENT_DRIVER",
            "the NVIDIA driver is older than the CUDA version this binary was built with",
        ),
        (
            "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
            "the NVIDIA driver is older than the nvcc that compiled the kernels (build with an nvcc no newer than the CUDA version nvidia-smi shows)",
        ),
        ("CUDA_ERROR_OUT_OF_MEMORY", "the GPU is out of memory"),
    ];
    let first = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error");
    // candle appends a backtrace after the error on the same line ("... 0: candle_core::...").
    let first = first.split(" 0: ").next().unwrap_or(first).trim();
    KNOWN
        .iter()
        .find(|(code, _)| first.contains(code))
        .map_or_else(
            || first.to_string(),
            |(code, words)| format!("{words} ({code})"),
        )
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
            "metal" | "metal:0" => Ok(Self::Metal),
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
                    "cannot use cuda:{n}: {} (hint: {}, or use --device cpu)",
                    gpu_error_reason(&e),
                    if cfg!(feature = "cuda") {
                        "check nvidia-smi, and that the CUDA libraries are on LD_LIBRARY_PATH (README, GPU)"
                    } else {
                        "this binary was built without CUDA: build with --features cuda"
                    }
                ))
            }),
        DeviceSpec::Metal => Device::new_metal(0)
            .map(|device| ChosenDevice {
                device,
                note: "requested".to_string(),
            })
            .map_err(|e| {
                LoadError::Device(format!(
                    "cannot use metal: {} (hint: {}, or use --device cpu)",
                    gpu_error_reason(&e),
                    if cfg!(feature = "metal") {
                        "Metal needs Apple silicon or a Mac GPU"
                    } else {
                        "this binary was built without Metal: build with --features metal on macOS"
                    }
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
                        return Ok(cpu(&format!(
                            "auto: CUDA unavailable ({}), using CPU",
                            gpu_error_reason(&e)
                        )));
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
                        return Ok(cpu(&format!(
                            "auto: Metal unavailable ({}), using CPU",
                            gpu_error_reason(&e)
                        )));
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
    /// The folder the model came from (a cache snapshot for a repo id).
    pub folder: PathBuf,
    /// A display name: the repo id when one was given, else the folder's name.
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

/// Our name for a Hugging Face `torch_dtype` (`float32` -> `f32`), if it is one we know.
pub fn hf_dtype_name(s: &str) -> Option<String> {
    let name = match s {
        "float32" => "f32",
        "float16" => "f16",
        "bfloat16" => "bf16",
        "float64" => "f64",
        _ => return None,
    };
    Some(name.to_string())
}

/// A checkpoint family other than our own: how its tensors map onto our names.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Which architecture.
    pub arch: Arch,
    /// `(our name, checkpoint name)` pairs; `{i}` stands for the block index, and checkpoint
    /// names may carry the `transformer.` prefix or not.
    pub names: &'static [(&'static str, &'static str)],
    /// Re-lays out a tensor (given with our name) after it is read, e.g. a fused projection.
    pub relayout: fn(&Config, &str, Tensor) -> candle_core::Result<Tensor>,
    /// A hint for a checkpoint tensor (name without prefix) that the config does not call for.
    pub unexpected_hint: fn(&str) -> Option<&'static str>,
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
fn unsupported_model_type(kind: &str, value: &serde_json::Value) -> String {
    let falcon = matches!(kind, "falcon" | "RefinedWeb" | "RefinedWebModel");
    if falcon && value.get("alibi").and_then(serde_json::Value::as_bool) == Some(true) {
        return format!(
            "model_type '{kind}' with alibi: true is an ALiBi model, but Falcon's layout is not \
             supported (supported: {SUPPORTED})"
        );
    }
    let position = if falcon {
        Some("rotary")
    } else {
        OTHER_POSITIONS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| *p)
    };
    match position {
        Some(p) => format!(
            "model_type '{kind}' uses {p} position embeddings, not ALiBi (supported: {SUPPORTED})"
        ),
        None => format!("unknown model_type '{kind}' (supported: {SUPPORTED})"),
    }
}

/// Reads `config.json` and recognises what it describes: our own format (`format`), or a Hugging
/// Face `model_type` (bloom, mpt); anything else is refused with the reason.
pub fn read_checkpoint_config(dir: &Path) -> Result<CheckpointConfig, LoadError> {
    let file = dir.join(CONFIG_FILE);
    if !file.is_file() {
        return Err(LoadError::MissingFile {
            file,
            hint: "a checkpoint folder needs config.json and model.safetensors (tokenizer.json for --text)"
                .to_string(),
        });
    }
    let bytes = read_file(&file)?;
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
            other => return Err(unsupported(unsupported_model_type(other, &value))),
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

/// Reads and validates `config.json` into the normalised [`Config`]: ours, BLOOM's or MPT's.
pub fn read_config(dir: &Path) -> Result<Config, LoadError> {
    read_checkpoint_config(dir).map(|c| c.config)
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

/// The `weight_map` of a sharded checkpoint's index: (tensor name, shard file name) pairs.
fn read_index(index: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let bad = |msg: String| LoadError::BadWeights {
        file: index.to_path_buf(),
        msg,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&read_file(index)?).map_err(|e| bad(one_line(e)))?;
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

/// The memory-mapped safetensors files of one checkpoint, with each tensor's file.
pub struct Checkpoint {
    files: Vec<PathBuf>,
    maps: Vec<MmapedSafetensors>,
    routing: HashMap<String, usize>,
}

impl Checkpoint {
    /// Maps `files` (read-only) and reads their headers; a tensor in two files is an error.
    pub fn open(files: &[PathBuf]) -> Result<Self, LoadError> {
        let mut maps = Vec::with_capacity(files.len());
        let mut routing = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            // SAFETY: the file is memory-mapped read-only and we never write to it while mapped;
            // like every mmap reader we rely on no other process truncating it meanwhile.
            #[allow(unsafe_code)]
            let map =
                unsafe { MmapedSafetensors::new(file) }.map_err(|e| LoadError::BadWeights {
                    file: file.clone(),
                    msg: format!(
                        "not a valid safetensors file ({}); the file may be truncated or corrupt",
                        one_line(e)
                    ),
                })?;
            for (name, _) in map.tensors() {
                if let Some(prev) = routing.insert(name.clone(), i) {
                    return Err(LoadError::BadWeights {
                        file: file.clone(),
                        msg: format!(
                            "tensor '{name}' is also in '{}'; a tensor must be stored once",
                            files[prev].display()
                        ),
                    });
                }
            }
            maps.push(map);
        }
        Ok(Self {
            files: files.to_vec(),
            maps,
            routing,
        })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routing.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The first weights file, to name in errors about the checkpoint as a whole.
    pub fn first_file(&self) -> &Path {
        self.files.first().map_or(Path::new(""), PathBuf::as_path)
    }

    /// The file holding `name` (the first file when there is no such tensor).
    pub fn file_of(&self, name: &str) -> &Path {
        let i = self.routing.get(name).copied().unwrap_or(0);
        self.files.get(i).map_or(Path::new(""), PathBuf::as_path)
    }

    /// The shape and dtype of `name`, read from the header.
    pub fn info(&self, name: &str) -> Option<(Vec<usize>, Option<DType>)> {
        let view = self.maps.get(*self.routing.get(name)?)?.get(name).ok()?;
        Some((view.shape().to_vec(), DType::try_from(view.dtype()).ok()))
    }

    /// Reads `name` onto the CPU in its stored dtype.
    pub fn load(&self, name: &str) -> Result<Tensor, LoadError> {
        let file = self.file_of(name).to_path_buf();
        let i = self.routing.get(name).copied().unwrap_or(0);
        self.maps
            .get(i)
            .ok_or_else(|| candle_core::Error::Msg("no weights file".into()))
            .and_then(|m| m.load(name, &Device::Cpu))
            .map_err(|e| LoadError::BadWeights {
                file,
                msg: format!("cannot read tensor '{name}': {}", one_line(e)),
            })
    }

    /// Checks that every tensor the index assigns to a shard is in that shard.
    fn check_index(&self, index: &Path, dir: &Path) -> Result<(), LoadError> {
        for (tensor, shard) in read_index(index)? {
            if self.file_of(&tensor) != dir.join(&shard) || !self.routing.contains_key(&tensor) {
                return Err(LoadError::BadWeights {
                    file: index.to_path_buf(),
                    msg: format!(
                        "lists tensor '{tensor}' in '{shard}', but that shard does not hold it"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Translates `name` through one `(from, to)` pattern pair, where `{i}` stands for a block index.
fn translate_one(from: &str, to: &str, name: &str) -> Option<String> {
    match from.split_once("{i}") {
        None => (from == name).then(|| to.to_string()),
        Some((pre, post)) => {
            let mid = name.strip_prefix(pre)?.strip_suffix(post)?;
            let i: usize = mid.parse().ok()?;
            (i.to_string() == mid).then(|| to.replace("{i}", mid))
        }
    }
}

/// Translates a name through the first matching `(from, to)` pattern pair.
fn translate<'a>(
    mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
    name: &str,
) -> Option<String> {
    pairs.find_map(|(from, to)| translate_one(from, to, name))
}

/// A short description of a config's sizes for error messages.
fn describe(cfg: &Config) -> String {
    format!(
        "{}: vocab_size {}, d_model {}, {} layers, {} heads, d_ff {}",
        cfg.arch.name(),
        cfg.vocab_size,
        cfg.d_model,
        cfg.n_layers,
        cfg.n_heads,
        cfg.d_ff
    )
}

/// Pairs every parameter `cfg` needs (our name) with its checkpoint tensor, checking that every
/// checkpoint tensor is used and every shape matches the config.
fn map_tensor_names(
    cfg: &Config,
    family: &Family,
    ckpt: &Checkpoint,
) -> Result<Vec<(String, String)>, LoadError> {
    let specs = init::param_specs(cfg);
    let wanted: HashMap<&str, &[usize]> = specs
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_slice()))
        .collect();
    let first_file = ckpt.first_file().to_path_buf();
    let mut found: HashMap<String, String> = HashMap::new();
    let names = ckpt.names();
    for &src in &names {
        let bare = src.strip_prefix(HF_BASE_PREFIX).unwrap_or(src);
        let ours = translate(family.names.iter().map(|&(o, t)| (t, o)), bare);
        match ours {
            Some(ours) if wanted.contains_key(ours.as_str()) => {
                if let Some(prev) = found.insert(ours, src.to_string()) {
                    return Err(LoadError::BadWeights {
                        file: ckpt.file_of(src).to_path_buf(),
                        msg: format!("tensors '{prev}' and '{src}' hold the same parameter"),
                    });
                }
            }
            // A stored copy of the tied embedding: transformers ties it to the embedding too.
            Some(ours) if ours == "lm_head.weight" && cfg.tie_embeddings => {}
            _ => {
                let hint =
                    (family.unexpected_hint)(bare).map_or_else(String::new, |h| format!("; {h}"));
                return Err(LoadError::BadWeights {
                    file: ckpt.file_of(src).to_path_buf(),
                    msg: format!(
                        "unexpected tensor '{src}' for config.json ({}){hint} (every tensor must be used, \
                         or the result would not be the model)",
                        describe(cfg)
                    ),
                });
            }
        }
    }
    let prefixed = names.iter().any(|n| n.starts_with(HF_BASE_PREFIX));
    let mut pairs = Vec::with_capacity(specs.len());
    for (ours, shape, _) in &specs {
        let Some(src) = found.remove(ours) else {
            let theirs = translate(family.names.iter().copied(), ours).unwrap_or(ours.clone());
            let prefix = if prefixed && !theirs.starts_with("lm_head") {
                HF_BASE_PREFIX
            } else {
                ""
            };
            return Err(LoadError::BadWeights {
                file: first_file,
                msg: format!(
                    "missing tensor '{prefix}{theirs}' that config.json ({}) calls for",
                    describe(cfg)
                ),
            });
        };
        let got = ckpt.info(&src).map(|(s, _)| s).unwrap_or_default();
        if got != *shape {
            return Err(LoadError::BadWeights {
                file: ckpt.file_of(&src).to_path_buf(),
                msg: format!(
                    "tensor '{src}' has shape {got:?} but config.json ({}) implies {shape:?}",
                    describe(cfg)
                ),
            });
        }
        pairs.push((ours.clone(), src));
    }
    Ok(pairs)
}

/// Builds the transformer from a BLOOM or MPT checkpoint: every tensor is renamed, re-laid out
/// where the family needs it, converted to `dtype` and moved to `device`, one at a time.
pub fn build_foreign(
    cfg: &Config,
    family: &Family,
    ckpt: &Checkpoint,
    dtype: DType,
    device: &Device,
) -> Result<Transformer, LoadError> {
    let pairs = map_tensor_names(cfg, family, ckpt)?;
    let mut cfg = cfg.clone();
    let mut tensors = HashMap::with_capacity(pairs.len());
    for (ours, src) in pairs {
        if ours == "tok_emb.weight"
            && let Some((_, Some(stored))) = ckpt.info(&src)
        {
            cfg.saved_dtype = Some(dtype_name(stored).to_string());
        }
        let t = ckpt.load(&src)?;
        let t = (family.relayout)(&cfg, &ours, t)
            .and_then(|t| t.to_device(device))
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| LoadError::BadWeights {
                file: ckpt.file_of(&src).to_path_buf(),
                msg: format!("cannot convert tensor '{src}': {}", one_line(e)),
            })?;
        tensors.insert(ours, t);
    }
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    Transformer::new(&cfg, vb).map_err(|e| LoadError::BadWeights {
        file: ckpt.first_file().to_path_buf(),
        msg: format!("{} (the weights do not match config.json)", one_line(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_errors_are_one_line_words_without_the_backtrace() {
        // What candle 0.11 printed here for a cuda build whose libcuda is a stub.
        let seen = "DriverError(CUDA_ERROR_STUB_LIBRARY, \"<Failure when calling cuGetErrorString()>\") 0: candle_core::error::Error::bt 1: <core::result::Result<O,E> as candle_core::cuda_backend::error::WrapErr<O>>::w";
        assert_eq!(
            describe_gpu_error(seen),
            "no NVIDIA driver: only a stub libcuda was found (CUDA_ERROR_STUB_LIBRARY)"
        );
        assert_eq!(
            describe_gpu_error(
                "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")\n   0: bt"
            ),
            "no CUDA device is visible (CUDA_ERROR_NO_DEVICE)"
        );
        assert_eq!(
            describe_gpu_error("Metal error no metal device\nmore"),
            "Metal error no metal device"
        );
        assert_eq!(describe_gpu_error(""), "unknown error");
        let wrapped = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg(
                "DriverError(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, \"x\")".into(),
            )),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let reason = gpu_error_reason(&wrapped);
        assert!(
            reason.starts_with("the NVIDIA driver is older than the nvcc"),
            "{reason}"
        );
        assert!(
            !reason.contains('\n') && !reason.contains("backtrace"),
            "{reason}"
        );
    }
}
