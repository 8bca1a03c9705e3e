//! What the headless commands share on the console: a flag that Ctrl-C (and SIGTERM) sets, so a
//! long run stops between batches and writes no partial files, and a progress line on stderr
//! when it is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The process's stop flag, set by Ctrl-C, SIGTERM or SIGHUP ([`crate::files::stop::flag`]:
/// installed once, shared by every caller).
pub fn interrupt_flag() -> Arc<AtomicBool> {
    crate::files::stop::flag()
}

/// A progress callback printing `\r<what>: done/total windows` on stderr when it is a terminal.
pub fn window_progress(what: &'static str) -> impl Fn(usize, usize) {
    let tty = std::io::stderr().is_terminal();
    move |done, total| {
        if tty {
            eprint!("\r{what}: {done}/{total} windows   ");
            let _ = std::io::stderr().flush();
        }
    }
}
