//! Byte-level BPE tokenizer training with the `tokenizers` crate (GPT-2 style), so any UTF-8
//! text encodes without unknown tokens.

use crate::text::files::{END_OF_TEXT, text_files};
use color_eyre::eyre::{Result, bail, eyre};
use std::path::Path;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// The smallest vocabulary that still holds the 256 byte symbols plus the special token.
pub const MIN_VOCAB: usize = 257;

/// Trains a byte-level BPE tokenizer on every `.txt` file under `data` and writes it to `out`.
pub fn train_tokenizer(data: &Path, vocab_size: usize, out: &Path) -> Result<Tokenizer> {
    if vocab_size < MIN_VOCAB {
        bail!(
            "--vocab-size must be at least {MIN_VOCAB} (256 bytes + {END_OF_TEXT}); got {vocab_size}"
        );
    }
    let files = text_files(data, "--data")?;
    // The output is checked before the (long) training: not one of the texts, and writable
    // where its folder already exists (a missing folder is created once training succeeded).
    let mut plan = crate::files::OutputPlan::new();
    plan.input("--data", data).output("--out", out);
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_none_or(Path::is_dir) {
        plan.check().map_err(|e| eyre!(e))?;
    } else {
        crate::files::resolve_output(out).map_err(|e| eyre!("--out: {e}"))?;
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build();
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_post_processor(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(|e| eyre!("cannot build tokenizer: {e}"))?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    tok.train_from_files(&mut trainer, names)
        .map_err(|e| eyre!("tokenizer training on '{}' failed: {e}", data.display()))?;
    let tok: Tokenizer = tok.into();
    if let Some(parent) = out.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| eyre!("cannot create '{}': {e}", parent.display()))?;
    }
    let json = tok
        .to_string(true)
        .map_err(|e| eyre!("cannot serialise the tokenizer: {e}"))?;
    crate::files::write_bytes(out, json.as_bytes()).map_err(|e| eyre!(e))?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_a_byte_level_tokenizer_that_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(50) + "Ünïcödé ✓ text\n";
        std::fs::write(dir.path().join("a.txt"), &text).unwrap();
        let out = dir.path().join("tok.json");
        let tok = train_tokenizer(dir.path(), 300, &out).unwrap();
        assert!(out.is_file());
        assert!(tok.get_vocab_size(true) <= 300);
        let probe = "A never-seen string: 漢字 and emoji 🚀";
        let enc = tok.encode(probe, false).unwrap();
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), probe);
        assert!(train_tokenizer(dir.path(), 10, &out).is_err());
    }
}
