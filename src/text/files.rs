//! Reading text: `.txt` files and folders (UTF-8 only, empty and binary files refused) and files of
//! whitespace-separated token ids.

use color_eyre::eyre::{Result, bail, eyre};
use std::path::{Path, PathBuf};

/// The end-of-text special token, inserted between documents.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The `.txt` files of `dir`, sorted by name (the data order must not depend on the file system);
/// `flag` is the option that named the folder (`--text`, `--data`, `--valid`), for the hints.
pub fn text_files(dir: &Path, flag: &str) -> Result<Vec<PathBuf>> {
    if let Some(msg) = crate::files::permission_problem(dir) {
        bail!("{flag}: {msg}");
    }
    if !dir.is_dir() {
        bail!(
            "{flag} folder '{}' does not exist (hint: point {flag} at a folder of UTF-8 .txt files)",
            dir.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| eyre!("cannot read '{}': {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{flag} folder '{}' has no .txt files (hint: point {flag} at a folder of UTF-8 .txt files)",
            dir.display()
        );
    }
    Ok(files)
}

/// Reads a text file, rejecting non-UTF-8 (binary) content with a clear message.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::files::read_limited(path, crate::files::MAX_TEXT_BYTES, "a text")
        .map_err(|e| eyre!(e))?;
    String::from_utf8(bytes).map_err(|e| {
        eyre!(
            "'{}' is not UTF-8 text (invalid byte at offset {}); binary files cannot be evaluated",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Reads whitespace-separated token ids, checking each against the vocabulary.
pub fn read_token_ids(path: &Path, vocab: usize) -> Result<Vec<u32>> {
    let text = read_text(path)?;
    let mut ids = Vec::new();
    for (pos, word) in text.split_whitespace().enumerate() {
        let id: u32 = word
            .parse()
            .map_err(|_| eyre!("'{}': '{word}' at position {pos} is not a token id (expected whitespace-separated integers)", path.display()))?;
        if id as usize >= vocab {
            bail!(
                "'{}': token id {id} at position {pos} is outside the model's vocabulary (valid ids: 0 to {}; the vocabulary has {vocab})",
                path.display(),
                vocab.saturating_sub(1)
            );
        }
        ids.push(id);
    }
    if ids.is_empty() {
        bail!("'{}' contains no token ids", path.display());
    }
    Ok(ids)
}

/// Reads the text to evaluate: a UTF-8 file, or every `.txt` file of a folder (in name order,
/// separated by a blank line); it must not be empty or binary.
pub fn read_eval_text(path: &Path) -> Result<String> {
    let text = if path.is_dir() {
        let mut parts = Vec::new();
        for f in text_files(path, "--text")? {
            parts.push(read_text(&f)?);
        }
        parts.join("\n\n")
    } else {
        read_text(path)?
    };
    if text.trim().is_empty() {
        bail!(
            "'{}' is empty (hint: give a text with at least a few hundred words)",
            path.display()
        );
    }
    if text.contains('\0') {
        bail!(
            "'{}' contains NUL bytes: it looks like a binary file, not text",
            path.display()
        );
    }
    Ok(text)
}
