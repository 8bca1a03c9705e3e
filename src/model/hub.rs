//! Resolving `--model` to a folder: a path as given, or a Hugging Face repo id (`owner/name`)
//! looked up in the local Hugging Face cache. Never touches the network.
//!
//! Follows the cache layout `huggingface_hub` writes (its `file_download.py` and `constants.py`):
//! `<cache>/models--owner--name/refs/main` holds the commit hash of the snapshot that the `main`
//! branch pointed to when the files were downloaded, and `snapshots/<hash>/` holds the files (as
//! links into `blobs/`). The cache root is `$HF_HUB_CACHE`, else the legacy
//! `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`.

use super::error::LoadError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The folder inside a cached repo that holds one folder per downloaded commit.
const SNAPSHOTS_DIR: &str = "snapshots";
/// The file naming the commit the `main` branch resolved to.
const MAIN_REF: &str = "refs/main";

/// Where a `--model` argument led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The checkpoint folder.
    pub folder: PathBuf,
    /// The repo id, when the argument was one and was found in the cache.
    pub repo_id: Option<String>,
}

/// Whether `s` has the shape of a Hugging Face repo id: `owner/name`, each part made of ASCII
/// letters, digits, `-`, `_` and `.`, neither part starting with `.` or `-`.
pub fn looks_like_repo_id(s: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.len() <= 96
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match s.split_once('/') {
        Some((owner, name)) => part_ok(owner) && part_ok(name),
        None => false,
    }
}

/// The Hugging Face hub cache root, from environment variables read through `var` (so tests
/// need not change the process environment). `None` when no variable and no home is known.
pub fn cache_root_with(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return Some(p);
    }
    if let Some(home) = set("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(xdg) = set("XDG_CACHE_HOME") {
        return Some(xdg.join("huggingface").join("hub"));
    }
    set("HOME").map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// The Hugging Face hub cache root from this process's environment.
pub fn cache_root() -> Option<PathBuf> {
    cache_root_with(|name| std::env::var_os(name))
}

/// The snapshot folder of `repo_id` in the cache at `root`: the commit in `refs/main` when that
/// snapshot exists, else the newest snapshot (the only one, usually). `None` when the repo has no
/// snapshot in this cache.
pub fn find_in_cache(root: &Path, repo_id: &str) -> Option<PathBuf> {
    let repo_dir = root.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshots = repo_dir.join(SNAPSHOTS_DIR);
    if let Ok(hash) = std::fs::read_to_string(repo_dir.join(MAIN_REF)) {
        let hash = hash.trim();
        let dir = snapshots.join(hash);
        if !hash.is_empty() && !hash.contains(['/', '\\']) && dir.is_dir() {
            return Some(dir);
        }
    }
    // No usable ref: take the most recently modified snapshot.
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        })
        .map(|e| e.path())
}

/// Resolves `spec` with the cache at `cache` (`None`: no cache location is known): an existing
/// path is returned as is; a missing path shaped like `owner/name` is looked up in the cache.
pub fn resolve_with_cache(spec: &Path, cache: Option<&Path>) -> Result<ResolvedModel, LoadError> {
    if spec.exists() {
        return Ok(ResolvedModel {
            folder: spec.to_path_buf(),
            repo_id: None,
        });
    }
    let Some(id) = spec.to_str().filter(|s| looks_like_repo_id(s)) else {
        return Err(LoadError::Missing(spec.to_path_buf()));
    };
    match cache.and_then(|root| find_in_cache(root, id)) {
        Some(folder) => Ok(ResolvedModel {
            folder,
            repo_id: Some(id.to_string()),
        }),
        None => Err(LoadError::NotCached {
            repo_id: id.to_string(),
            cache: cache.map_or_else(
                || "(unknown: set HF_HUB_CACHE or HF_HOME)".to_string(),
                |c| c.display().to_string(),
            ),
        }),
    }
}

/// Resolves a `--model` argument with this process's Hugging Face cache.
pub fn resolve_model_path(spec: &Path) -> Result<ResolvedModel, LoadError> {
    resolve_with_cache(spec, cache_root().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_id_shapes() {
        for ok in [
            "bigscience/bloom-560m",
            "mosaicml/mpt-7b",
            "a/b",
            "org_1/x.y-z",
        ] {
            assert!(looks_like_repo_id(ok), "{ok}");
        }
        for bad in [
            "bloom",
            "a/b/c",
            "/abs/path",
            "./a",
            "a/",
            "../x",
            "a b/c",
            "owner/.hidden",
        ] {
            assert!(!looks_like_repo_id(bad), "{bad}");
        }
    }

    #[test]
    fn cache_root_precedence() {
        let env = |pairs: &[(&'static str, &'static str)]| {
            let pairs = pairs.to_vec();
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = [
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(cache_root_with(env(&all)), Some(PathBuf::from("/c")));
        assert_eq!(
            cache_root_with(env(&all[1..])),
            Some(PathBuf::from("/h/hub"))
        );
        assert_eq!(
            cache_root_with(env(&all[2..])),
            Some(PathBuf::from("/x/huggingface/hub"))
        );
        assert_eq!(
            cache_root_with(env(&all[3..])),
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        assert_eq!(
            cache_root_with(env(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/h")])),
            Some(PathBuf::from("/h/hub"))
        );
        assert_eq!(cache_root_with(env(&[])), None);
    }
}
