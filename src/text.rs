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

/// Tokenizes `text` and records the UTF-8 bytes each token covers, for bits per byte.
///
/// Tokens with their own offsets get the bytes between the previous token's end and theirs (so
/// skipped text, such as spaces a tokenizer drops, still counts). A character split into several
/// tokens (a byte-level BPE codes an emoji or a CJK character as up to 4 byte tokens, all with the
/// character's offsets) is shared by exact byte counts: a byte-level token's string has one
/// character per byte (GPT-2's byte-to-unicode alphabet) and a byte-fallback token `<0xNN>` is one
/// byte; when those do not add up to the character, its bytes are split evenly. The bytes of all
/// tokens add up to `text.len()`.
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
    let ids = enc.get_ids();
    let bytes = token_bytes(text.len(), enc.get_offsets(), |k| {
        tokenizer
            .id_to_token(ids[k])
            .and_then(|t| byte_len_of_token(&t))
    });
    Ok(Stream {
        ids: ids.to_vec(),
        bytes: Some(bytes),
    })
}

/// The bytes a token stands for when its string says so: `<0xNN>` is one byte, and a string of
/// GPT-2 byte-level characters has one byte per character. `None` otherwise.
fn byte_len_of_token(token: &str) -> Option<u32> {
    let is_fallback = token.len() == 6
        && token.starts_with("<0x")
        && token.ends_with('>')
        && token[3..5].chars().all(|c| c.is_ascii_hexdigit());
    if is_fallback {
        return Some(1);
    }
    token
        .chars()
        .all(is_byte_level_char)
        .then(|| token.chars().count() as u32)
}

/// Whether `c` belongs to GPT-2's byte-to-unicode alphabet (the 188 printable Latin-1 characters
/// stand for themselves, the other 68 bytes for U+0100..U+0143).
fn is_byte_level_char(c: char) -> bool {
    /// Characters U+0100.. that stand for the 68 non-printable bytes.
    const REMAPPED: u32 = 68;
    let u = c as u32;
    matches!(u, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) || (0x100..0x100 + REMAPPED).contains(&u)
}

/// Bytes per token from the tokens' byte offsets into a text of `text_len` bytes; `exact(k)` gives
/// token `k`'s own byte count when its string tells it (used for tokens sharing a character).
pub fn token_bytes(
    text_len: usize,
    offsets: &[(usize, usize)],
    exact: impl Fn(usize) -> Option<u32>,
) -> Vec<u32> {
    let mut bytes = vec![0u32; offsets.len()];
    let mut prev_end = 0usize;
    let mut k = 0;
    while k < offsets.len() {
        // A run of tokens with the same offsets covers one character (or a group of them).
        let mut k2 = k + 1;
        while k2 < offsets.len() && offsets[k2] == offsets[k] {
            k2 += 1;
        }
        let (start, end) = offsets[k];
        let end = end.min(text_len).max(prev_end);
        let own = end - start.clamp(prev_end, end);
        let gap = end - prev_end - own;
        let n = k2 - k;
        let exact: Option<Vec<u32>> = (n > 1)
            .then(|| (k..k2).map(&exact).collect::<Option<Vec<u32>>>())
            .flatten()
            .filter(|e| e.iter().map(|&b| b as usize).sum::<usize>() == own);
        match exact {
            Some(e) => bytes[k..k2].copy_from_slice(&e),
            None => {
                let (each, extra) = (own / n, own % n);
                for (i, b) in bytes[k..k2].iter_mut().enumerate() {
                    *b = (each + usize::from(i < extra)) as u32;
                }
            }
        }
        bytes[k] += gap as u32;
        prev_end = end;
        k = k2;
    }
    if let Some(last) = bytes.last_mut() {
        *last += text_len.saturating_sub(prev_end) as u32;
    }
    bytes
}

/// `n` and the noun, singular when `n` is 1 ("1 token", "2 tokens"): for messages and reports.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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

    /// The command-line flag the input came from, for messages.
    pub fn flag(&self) -> &'static str {
        match self {
            Input::Text(_) => "--text",
            Input::TokenIds(_) => "--token-ids",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_character_gives_each_byte_token_its_byte() {
        // An emoji as 4 byte-level tokens, all with the character's offsets.
        let offsets = [(0, 4); 4];
        let b = token_bytes(4, &offsets, |_| Some(1));
        assert_eq!(b, [1, 1, 1, 1]);
        // Unknown token strings: an even split that still adds up.
        let b = token_bytes(4, &[(0, 4); 3], |_| None);
        assert_eq!(b, [2, 1, 1]);
        // Text before and after: gaps go to the next token, the tail to the last.
        let b = token_bytes(9, &[(0, 2), (3, 6), (3, 6), (3, 6)], |_| Some(1));
        assert_eq!(b, [2, 2, 1, 4]);
        assert_eq!(b.iter().sum::<u32>(), 9);
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "token"), "1 token");
        assert_eq!(count(0, "token"), "0 tokens");
        assert_eq!(count(2, "window"), "2 windows");
    }

    #[test]
    fn byte_level_and_fallback_tokens_know_their_bytes() {
        assert_eq!(byte_len_of_token("ðŁĺ"), Some(3));
        assert_eq!(byte_len_of_token("Ġthe"), Some(4));
        assert_eq!(byte_len_of_token("<0xF0>"), Some(1));
        // A special token written in printable ASCII stands for its own text.
        assert_eq!(byte_len_of_token("<|endoftext|>"), Some(13));
        assert_eq!(byte_len_of_token("日"), None);
    }
}
