//! Reading weights from safetensors (memory-mapped, single file or shards; foreign tensor names
//! mapped through a [`Family`]) into a [`Transformer`], and writing our own checkpoints.

use super::config::Config;
use super::device::dtype_name;
use super::error::{LoadError, one_line};
use super::family::Family;
use super::folder::{CONFIG_FILE, HF_BASE_PREFIX, TOKENIZER_FILE, WEIGHTS_FILE, read_index};
use super::init;
use super::transformer::Transformer;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
            if let Some(msg) = crate::files::permission_problem(file) {
                return Err(LoadError::Permission(msg));
            }
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

    /// Reads `name` onto the CPU in its stored dtype; weights stored as integers or booleans are
    /// refused (read as numbers they would give a wrong model without an error).
    pub fn load(&self, name: &str) -> Result<Tensor, LoadError> {
        let file = self.file_of(name).to_path_buf();
        let i = self.routing.get(name).copied().unwrap_or(0);
        self.check_float(name)?;
        self.maps
            .get(i)
            .ok_or_else(|| candle_core::Error::Msg("no weights file".into()))
            .and_then(|m| m.load(name, &Device::Cpu))
            .map_err(|e| LoadError::BadWeights {
                file,
                msg: format!("cannot read tensor '{name}': {}", one_line(e)),
            })
    }

    /// Refuses `name` when it is stored as integers or booleans: read as numbers they would give
    /// a wrong model without an error (issue: an I64 weight evaluated to perplexity 119).
    pub fn check_float(&self, name: &str) -> Result<(), LoadError> {
        use safetensors::Dtype;
        let i = self.routing.get(name).copied().unwrap_or(0);
        let Some(view) = self.maps.get(i).and_then(|m| m.get(name).ok()) else {
            return Ok(());
        };
        let dtype = view.dtype();
        if matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            return Ok(());
        }
        Err(LoadError::BadWeights {
            file: self.file_of(name).to_path_buf(),
            msg: format!(
                "tensor '{name}' is stored as {dtype:?}; weights must be floating point (F32, F16, BF16 or F64) (hint: re-save the checkpoint with float weights)"
            ),
        })
    }

    /// Checks that every tensor the index assigns to a shard is in that shard.
    pub fn check_index(&self, index: &Path, dir: &Path) -> Result<(), LoadError> {
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
        "{}: vocab_size {}, d_model {}, n_layers {}, n_heads {}, d_ff {}",
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
        // (Unreadable files are reported by `Checkpoint::open`.)
        if !f.is_file() {
            return Err(LoadError::MissingFile {
                file: f.clone(),
                hint: "the weights file is missing; re-download or re-save the checkpoint"
                    .to_string(),
            });
        }
    }
    let ckpt = Checkpoint::open(files)?;
    for name in ckpt.names() {
        ckpt.check_float(name)?;
    }
    drop(ckpt);
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
    let bytes =
        safetensors::serialize(converted.iter(), None).map_err(|e| LoadError::BadWeights {
            file: weights.clone(),
            msg: one_line(e),
        })?;
    let written = |file: &Path, e: String| LoadError::Unreadable {
        file: file.to_path_buf(),
        msg: e,
    };
    crate::files::write_bytes(&weights, &bytes).map_err(|e| written(&weights, e))?;
    let config = dir.join(CONFIG_FILE);
    let json = serde_json::to_string_pretty(&cfg).map_err(|e| LoadError::BadConfig {
        file: config.clone(),
        msg: one_line(e),
    })?;
    crate::files::write_bytes(&config, (json + "\n").as_bytes())
        .map_err(|e| written(&config, e))?;
    if let Some(src) = tokenizer_json {
        let dst = dir.join(TOKENIZER_FILE);
        let same = match (std::fs::metadata(src), std::fs::metadata(&dst)) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                (a.dev(), a.ino()) == (b.dev(), b.ino())
            }
            _ => false,
        };
        if !same {
            let bytes = crate::files::read_limited(
                src,
                crate::files::MAX_TOKENIZER_BYTES,
                "a tokenizer.json",
            )
            .map_err(|e| written(src, e))?;
            crate::files::write_bytes(&dst, &bytes).map_err(|e| written(&dst, e))?;
        }
    }
    Ok(())
}
