//! Reading a text corpus: every `.txt` file of a folder, checked and tokenized, with the token
//! ids cached next to the training output so a resumed run does not tokenize again.

use crate::text::files::{END_OF_TEXT, read_text, text_files};
use color_eyre::eyre::{Result, bail, eyre};
use std::path::Path;
use tokenizers::Tokenizer;

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

/// Encodes `text` on a thread of its own while this one watches for a stop request
/// ([`crate::files::stop`]): a book takes seconds to encode, and a signal ends the command at
/// once (the encoding thread is left to the process's exit). The outer error is the stop; the
/// inner one the tokenizer's.
fn encode_unless_stopped(
    tokenizer: &Tokenizer,
    text: String,
) -> Result<std::result::Result<tokenizers::Encoding, String>> {
    let tok = tokenizer.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(tok.encode(text.as_str(), false).map_err(|e| e.to_string()));
    });
    loop {
        if crate::files::stop::should_stop() {
            return Err(crate::files::stop::Stopped {
                left: crate::files::stop::NOTHING_WRITTEN.to_string(),
            }
            .into());
        }
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => return Ok(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the tokenizer stopped without an answer")
            }
        }
    }
}

/// Tokenizes every `.txt` file of `dir` in name order; `flag` is the option that named it.
pub fn load_corpus(dir: &Path, flag: &str, tokenizer: &Tokenizer) -> Result<Corpus> {
    let eot = tokenizer.token_to_id(END_OF_TEXT);
    let mut ids = Vec::new();
    let mut files = Vec::new();
    for path in text_files(dir, flag)? {
        let text = read_text(&path)?;
        let bytes = text.len();
        let enc = encode_unless_stopped(tokenizer, text)?
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
            bytes,
            tokens: enc.len(),
        });
    }
    if ids.is_empty() {
        bail!(
            "{flag} folder '{}' contains only empty files",
            dir.display()
        );
    }
    Ok(Corpus { ids, files })
}
