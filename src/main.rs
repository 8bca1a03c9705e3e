//! The `alibi-explorer` binary: install error reporting, parse the command line, dispatch.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let _ = color_eyre::install();
    let cli = alibi_explorer::cli::Cli::parse();
    if let Err(e) = alibi_explorer::cli::run(cli) {
        eprintln!(
            "error: {}",
            alibi_explorer::model::load::one_line(format!("{e:#}"))
        );
        std::process::exit(alibi_explorer::cli::EXIT_BAD_INPUT);
    }
}
