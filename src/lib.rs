//! alibi-explorer: see how ALiBi works and why it lets a language model read past its training
//! length.
//!
//! Data flows one way:
//! `text --tokenizer--> tokens --model (worker)--> losses, attention --> App state --> widgets`.
//!
//! - [`alibi`]: slopes, presets, bias rows, reach. Pure numbers.
//! - [`model`]: config, transformer with attention capture, position schemes, loading/saving.
//! - [`eval`]: perplexity protocols, the one-pass sweep, outputs and plots.
//! - [`train`]: tokenizer training, corpus, optimiser loop, checkpoints.
//! - [`tui`]: the terminal UI (app state, keymap, worker thread, widgets).
//! - [`bench`]: speed/memory report (forward, sweep vs nonoverlap, long input, TUI frame).
//! - [`memory`]: memory estimates that turn impossible lengths into clear errors.
//! - [`embedded`]: the default model and text built into the binary.
//! - [`cli`]: command-line definitions and the headless commands.

pub mod alibi;
pub mod bench;
pub mod cli;
pub mod embedded;
pub mod eval;
pub mod memory;
pub mod model;
pub mod train;
pub mod tui;
