//! The integration tests, one binary (each file a module, as ripgrep keeps its tests): a test
//! binary links candle once instead of once a file. `cargo test --release --test suite MODULE::`
//! runs one file's tests (e.g. `cli::`).

mod ablate;
mod architecture;
mod cli;
mod docs;
mod eval;
mod family;
mod family_view;
mod fast_kernels;
mod fast_train;
mod figures;
mod fit;
mod fuzz;
mod golden;
mod gpu;
mod hardening;
mod hf;
mod model;
mod outputs;
mod prefill;
mod readme;
mod recipe_curves;
mod recipes;
mod results_in_docs;
mod slopes_check;
mod soak;
mod stats;
mod stats_cli;
mod tour;
mod tour_e2e;
mod train;
mod tui;
mod tui_e2e;
mod views;
mod worker;
