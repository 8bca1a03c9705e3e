//! The model engine: one normalised config, the transformer (with attention statistics),
//! position schemes, loading.

pub mod attention_stats;
pub mod bloom;
pub mod config;
pub mod hub;
pub mod init;
pub mod load;
pub mod mpt;
pub mod ops;
pub mod position;
pub mod transformer;

pub use config::{Config, Position};
pub use load::{LoadError, LoadedModel};
pub use transformer::{ForwardOptions, Transformer};
