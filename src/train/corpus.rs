//! Reading a text corpus: every `.txt` file of a folder, checked and tokenized, with the token
//! ids cached next to the training output so a resumed run does not tokenize again.

use color_eyre::eyre::{Result, bail, eyre};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The `.txt` files of `dir`, sorted by name (the data order must not depend on the file system).
pub fn text_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!(
            "data folder '{}' does not exist (hint: point --data at a folder of .txt files)",
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
            "data folder '{}' has no .txt files (hint: point --data at a folder of UTF-8 .txt files)",
            dir.display()
        );
    }
    Ok(files)
}

/// One file of a corpus and what it contributed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileStats {
    /// File name.
    pub file: String,
    /// Size in bytes.
    pub bytes: usize,
    /// Tokens after encoding.
    pub tokens: usize,
}

/// A tokenized corpus: the concatenated ids and per-file statistics.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Token ids of all files, separated by the end-of-text token.
    pub ids: Vec<u32>,
    /// Per-file statistics, in reading order.
    pub files: Vec<FileStats>,
}

/// Reads a text file, rejecting non-UTF-8 (binary) content with a clear message.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| eyre!("cannot read '{}': {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        eyre!(
            "'{}' is not UTF-8 text (invalid byte at offset {}); binary files cannot be evaluated",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Tokenizes every `.txt` file of `dir` in name order.
pub fn load_corpus(dir: &Path, tokenizer: &Tokenizer) -> Result<Corpus> {
    let eot = tokenizer.token_to_id(super::tokenizer::END_OF_TEXT);
    let mut ids = Vec::new();
    let mut files = Vec::new();
    for path in text_files(dir)? {
        let text = read_text(&path)?;
        let enc = tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| eyre!("cannot tokenize '{}': {e}", path.display()))?;
        if !ids.is_empty()
            && let Some(eot) = eot
        {
            ids.push(eot);
        }
        ids.extend_from_slice(enc.get_ids());
        files.push(FileStats {
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: text.len(),
            tokens: enc.len(),
        });
    }
    if ids.is_empty() {
        bail!("data folder '{}' contains only empty files", dir.display());
    }
    Ok(Corpus { ids, files })
}
