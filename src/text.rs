//! Text into tokens: text files and folders, token-id files, tokenization into a [`Stream`] with
//! the bytes each token covers (for bits per byte). Used by evaluation, training and the TUI.

pub mod files;

use color_eyre::eyre::{Result, bail, eyre};
use std::path::{Path, PathBuf};

/// The token stream being evaluated.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Token ids.
    pub ids: Vec<u32>,
    /// UTF-8 bytes each token covers, when the text is known.
    pub bytes: Option<Vec<u32>>,
}

impl Stream {
    /// The UTF-8 bytes token `i` covers, when the text is known (`None` past the end of the
    /// stream: a window that overruns it must not crash the app).
    pub fn bytes_of(&self, i: usize) -> Option<u32> {
        self.bytes.as_ref().and_then(|b| b.get(i).copied())
    }

    /// Keeps only the first `n` tokens (`--max-tokens`).
    pub fn truncate(&mut self, n: usize) {
        self.ids.truncate(n);
        if let Some(b) = self.bytes.as_mut() {
            b.truncate(n);
        }
    }

    /// How many windows of `len` input tokens fit without overlap (each needs `len + 1` tokens).
    pub fn windows(&self, len: usize) -> usize {
        self.ids.len().saturating_sub(1) / len.max(1)
    }
}

/// Tokenizes `text` and records how many bytes each token covers (differences of the end
/// offsets, so multi-byte characters split across tokens still sum to the text's length).
///
/// A malformed tokenizer.json can load and then panic inside tokenizers while encoding (a
/// `Replace` normalizer with an empty regex indexes past its alignments); that panic becomes an
/// error here.
pub fn tokenize(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
) -> std::result::Result<Stream, String> {
    let enc = std::panic::catch_unwind(|| tokenizer.encode(text, false))
        .map_err(|_| {
            "cannot tokenize: the tokenizers library panicked (is tokenizer.json malformed?)"
                .to_string()
        })?
        .map_err(|e| format!("cannot tokenize: {e}"))?;
    let mut bytes = Vec::with_capacity(enc.len());
    let mut prev_end = 0usize;
    for &(_, end) in enc.get_offsets() {
        let end = end.max(prev_end);
        bytes.push((end - prev_end) as u32);
        prev_end = end;
    }
    if let Some(last) = bytes.last_mut() {
        *last += (text.len().saturating_sub(prev_end)) as u32;
    }
    Ok(Stream {
        ids: enc.get_ids().to_vec(),
        bytes: Some(bytes),
    })
}

/// What to read tokens from: a text (file or folder of `.txt` files, tokenized with the model's
/// tokenizer) or a file of whitespace-separated token ids.
#[derive(Debug, Clone)]
pub enum Input {
    /// A UTF-8 text file or a folder of `.txt` files.
    Text(PathBuf),
    /// Whitespace-separated integer token ids.
    TokenIds(PathBuf),
}

impl Input {
    /// The path, for messages and reports.
    pub fn path(&self) -> &Path {
        match self {
            Input::Text(p) | Input::TokenIds(p) => p,
        }
    }

    /// Reads the input into a stream of at most `max_tokens` tokens (`Some(0)` is refused).
    /// `model_name` names the model in the hint when a text is given but it has no tokenizer.
    pub fn read(
        &self,
        tokenizer: Option<&tokenizers::Tokenizer>,
        vocab_size: usize,
        model_name: &str,
        max_tokens: Option<usize>,
    ) -> Result<Stream> {
        let mut stream = match self {
            Input::Text(t) => {
                let text = files::read_eval_text(t)?;
                let tok = tokenizer.ok_or_else(|| {
                    eyre!("model '{model_name}' has no tokenizer.json (hint: pass --token-ids FILE instead of --text)")
                })?;
                tokenize(tok, &text).map_err(|e| eyre!("'{}': {e}", t.display()))?
            }
            Input::TokenIds(f) => Stream {
                ids: files::read_token_ids(f, vocab_size)?,
                bytes: None,
            },
        };
        match max_tokens {
            Some(0) => bail!("--max-tokens must be at least 2"),
            Some(n) => stream.truncate(n),
            None => {}
        }
        Ok(stream)
    }
}
