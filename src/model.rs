//! The model engine: one normalised config, the transformer, position schemes, loading.
//!
//! - [`config`]: the one normalised [`Config`]; [`bloom`], [`mpt`] and [`falcon`] (Falcon-RW)
//!   turn their families' `config.json` into it and map their tensor names ([`family`] is what they tell the loader).
//! - [`transformer`], [`position`], [`ops`], [`kernels`], [`init`]: the network, its position
//!   schemes, the custom ops with their backward passes, the vectorised CPU kernels inference
//!   uses, and random initialisation.
//! - Loading, bottom-up: [`error`] (what can go wrong), [`device`] (device and dtype), [`hub`]
//!   (the local Hugging Face cache), [`folder`] (a checkpoint folder's files and config),
//!   [`weights`] (safetensors in and out), [`load`] (a whole model, dispatched by family).
//! - [`memory`]: estimates that turn impossible lengths into clear errors.
//! - [`attention_stats`]: per-head attention statistics accumulated inside blocked attention.
//! - [`prefill`]: long forwards a piece at a time (chunked windows, layer inputs kept), so the
//!   TUI's worker can pause them between pieces.

pub mod attention_stats;
pub mod bloom;
pub mod config;
pub mod device;
pub mod error;
pub mod falcon;
pub mod family;
pub mod folder;
pub mod hub;
pub mod init;
pub mod kernels;
pub mod load;
pub mod memory;
pub mod mpt;
pub mod ops;
pub mod position;
pub mod prefill;
pub mod transformer;
pub mod weights;

pub use config::{Config, Position};
pub use error::LoadError;
pub use load::LoadedModel;
pub use transformer::{ForwardOptions, Transformer};
