//! The default model and text, embedded in the binary so `alibi-explorer` opens the TUI from any
//! folder, even when the repository's `assets/` is not beside the binary. When the assets are
//! there (a clone), they are used directly; otherwise the embedded copies are written once to a
//! cache folder and loaded from there like any other checkpoint.

use std::path::{Path, PathBuf};

/// `(file name, bytes)` of the default model folder.
pub const DEFAULT_MODEL: [(&str, &[u8]); 3] = [
    (
        "config.json",
        include_bytes!("../assets/models/alibi/config.json"),
    ),
    (
        "model.safetensors",
        include_bytes!("../assets/models/alibi/model.safetensors"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../assets/models/alibi/tokenizer.json"),
    ),
];

/// The default text.
pub const DEFAULT_TEXT: &[u8] = include_bytes!("../assets/texts/default.txt");

/// The repository's assets folder as it was at build time.
pub fn assets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// Where embedded copies are written: `$XDG_CACHE_HOME` or `~/.cache`, then
/// `alibi-explorer/<version>`; the temp folder when neither is known.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("alibi-explorer").join(env!("CARGO_PKG_VERSION"))
}

fn write_missing(dir: &Path, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        let path = dir.join(name);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !same {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

/// The default model folder: the repository's, else the embedded copy unpacked under `cache`.
pub fn default_model_dir(cache: &Path) -> std::io::Result<PathBuf> {
    let repo = assets_dir().join("models").join("alibi");
    if repo.join("config.json").is_file() && repo.join("model.safetensors").is_file() {
        return Ok(repo);
    }
    let dir = cache.join("models").join("alibi");
    write_missing(&dir, &DEFAULT_MODEL)?;
    Ok(dir)
}

/// The default text file: the repository's, else the embedded copy unpacked under `cache`.
pub fn default_text(cache: &Path) -> std::io::Result<PathBuf> {
    let repo = assets_dir().join("texts").join("default.txt");
    if repo.is_file() {
        return Ok(repo);
    }
    let dir = cache.join("texts");
    write_missing(&dir, &[("default.txt", DEFAULT_TEXT)])?;
    Ok(dir.join("default.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_copies_match_the_assets_and_unpack_to_a_loadable_model() {
        let assets = assets_dir().join("models").join("alibi");
        for (name, bytes) in DEFAULT_MODEL {
            assert_eq!(
                std::fs::read(assets.join(name)).unwrap(),
                bytes,
                "{name} differs from assets/"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let unpacked = dir.path().join("models").join("alibi");
        write_missing(&unpacked, &DEFAULT_MODEL).unwrap();
        let cpu = crate::model::device::ChosenDevice {
            device: candle_core::Device::Cpu,
            note: String::new(),
        };
        let loaded =
            crate::model::load::load_model(&unpacked, cpu, candle_core::DType::F32).unwrap();
        assert_eq!(
            loaded.model.config().position,
            crate::model::Position::Alibi
        );
        assert!(loaded.tokenizer.is_some());
        // Unpacking again is a no-op.
        write_missing(&unpacked, &DEFAULT_MODEL).unwrap();
        assert!(std::str::from_utf8(DEFAULT_TEXT).unwrap().len() > 40_000);
    }
}
