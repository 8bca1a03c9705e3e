//! alibi-explorer: see how ALiBi works and why it lets a language model read past its training
//! length.
//!
//! Data flows one way:
//! `text --tokenizer--> tokens --model (worker)--> losses, attention --> App state --> widgets`.
//!
//! The modules are layers; each imports only from the layers above it in this list (a test,
//! `tests/suite/architecture.rs`, keeps it so and refuses import cycles between files):
//!
//! - [`files`]: bounded reads of input files and the one writer every output goes through
//!   (outputs checked against inputs before the work; devices and pipes written to, not replaced).
//! - [`alibi`]: slopes, presets, bias rows, reach, the prior's statistics, slope-list checks; slopes
//!   files. Pure numbers.
//! - [`embedded`]: the default model and text built into the binary.
//! - [`model`]: config, transformer with attention capture, position schemes, loading and saving
//!   (folder, safetensors, device, families), memory estimates, long forwards in pieces (prefill).
//! - [`text`]: text files and folders, token-id files, tokenization into a stream with bytes.
//! - [`eval`]: perplexity protocols, the one-pass sweep, attention statistics, per-head sensitivity,
//!   outputs, plots and slide figures; the `eval`, `stats`, `attention` and `ablate` commands.
//! - [`train`]: tokenizer training, corpus, optimiser loop, checkpoints; fitting slopes.
//! - [`tui`]: the terminal UI (app state, keymap, worker thread, widgets).
//! - [`bench`]: speed/memory report (forward, sweep vs nonoverlap, long input, TUI frame), and the
//!   live TUI timed headless.
//! - [`cli`]: command-line definitions, resolved into the settings above, and dispatch.

pub mod alibi;
pub mod bench;
pub mod cli;
pub mod embedded;
pub mod eval;
pub mod files;
pub mod model;
pub mod text;
pub mod train;
pub mod tui;
