//! The `alibi-explorer` binary: install error reporting, parse the command line, dispatch.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 in v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Keep freed memory instead of returning it to the OS after 10 ms: candle allocates a fresh
/// tensor per op, and re-faulting zeroed pages cost ~20% of training time (measured with perf).
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a global allocator option; called before any other thread starts.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// Errors are shown as one line: library backtraces (candle captures one into every error when
/// `RUST_BACKTRACE` is set) are not captured unless asked for with `RUST_LIB_BACKTRACE`. Panics
/// still honour `RUST_BACKTRACE`.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in main, before any other thread exists to read the
        // environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
}

fn main() {
    quiet_library_backtraces();
    tune_allocator();
    // Colour codes only where a terminal shows them: a report written to a file or a pipe stays
    // plain text.
    let hooks = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        color_eyre::config::HookBuilder::default()
    } else {
        color_eyre::config::HookBuilder::default().theme(color_eyre::config::Theme::new())
    };
    let _ = hooks.install();
    let cli = match alibi_explorer::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap's message without its usage block, on one line, with the help hint.
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{} (see --help)", msg.join(" "));
            std::process::exit(alibi_explorer::cli::EXIT_BAD_INPUT);
        }
    };
    if let Err(e) = alibi_explorer::cli::run(cli) {
        // The reader of our output went away (`| head`): end quietly, as ripgrep and fd do.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        // A signal stopped the work: say which, and what was left behind.
        if alibi_explorer::files::stop::received().is_some() {
            use alibi_explorer::files::stop;
            let left = e
                .chain()
                .find_map(|c| c.downcast_ref::<stop::Stopped>())
                .map_or(stop::NOTHING_WRITTEN.to_string(), |s| s.left.clone());
            eprintln!("{}", stop::message(&left));
            std::process::exit(stop::exit_code());
        }
        eprintln!(
            "error: {}",
            alibi_explorer::model::error::one_line(format!("{e:#}"))
        );
        std::process::exit(alibi_explorer::cli::EXIT_BAD_INPUT);
    }
}
