//! A stop request from outside: SIGINT (Ctrl-C), SIGTERM or SIGHUP, for the headless commands.
//!
//! A long command calls [`flag`] once before its work (which installs the handlers for the whole
//! process); from then on the model's forward ([`should_stop`], checked between layers and between
//! blocks of queries) and the commands' own loops stop within a block of work, and the binary
//! exits with the conventional status `128 + signal` ([`exit_code`]: 130 for SIGINT, 143 for
//! SIGTERM) after saying so on one line. Outputs are written only after the work, each through a
//! temporary file renamed into place, so a stopped command leaves nothing, or the complete
//! previous file.
//!
//! Work that must finish once started (the trainer's validation of a step already taken) runs
//! under a [`Shield`]: the request waits until it is dropped.
//!
//! The TUI does not use this module: it turns the same signals into events of its own loop
//! (`tui/event.rs`), so it can restore the terminal first.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that ask a headless command to stop.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The flag the handlers set, and the last signal they received.
struct State {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

static STATE: OnceLock<State> = OnceLock::new();

thread_local! {
    /// How many [`Shield`]s this thread holds.
    static SHIELD: Cell<u32> = const { Cell::new(0) };
}

/// The process's stop flag, set by SIGINT, SIGTERM or SIGHUP; the first call installs the
/// handlers (later calls return the same flag). If a handler cannot be installed the flag is
/// still returned, and that signal keeps its default action (the process ends).
pub fn flag() -> Arc<AtomicBool> {
    STATE
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let signal = Arc::new(AtomicUsize::new(0));
            for sig in STOP_SIGNALS {
                // The signal's number first, then the flag: whoever sees the flag sees the number.
                let _ = signal_hook::flag::register_usize(sig, signal.clone(), sig as usize);
                let _ = signal_hook::flag::register(sig, flag.clone());
            }
            State { flag, signal }
        })
        .flag
        .clone()
}

/// Whether a stop was requested (false until [`flag`] has installed the handlers).
pub fn requested() -> bool {
    STATE.get().is_some_and(|s| s.flag.load(Ordering::SeqCst))
}

/// Whether work on this thread should stop now: a stop was requested and the thread is not
/// holding a [`Shield`].
pub fn should_stop() -> bool {
    requested() && SHIELD.with(Cell::get) == 0
}

/// Holds stop requests off on this thread while it lives (they take effect once it is dropped).
#[must_use = "the shield holds only while it lives"]
pub struct Shield(());

impl Shield {
    /// Starts holding stop requests off.
    pub fn new() -> Self {
        SHIELD.with(|s| s.set(s.get() + 1));
        Self(())
    }
}

impl Default for Shield {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        SHIELD.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

/// The signal that asked to stop, if one did.
pub fn received() -> Option<i32> {
    let s = STATE.get()?;
    if !s.flag.load(Ordering::SeqCst) {
        return None;
    }
    match s.signal.load(Ordering::SeqCst) {
        0 => Some(SIGINT),
        n => i32::try_from(n).ok(),
    }
}

/// The signal's conventional name.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The exit status of a command stopped by [`received`]'s signal: `128 + signal` (130 when none).
pub fn exit_code() -> i32 {
    128 + received().unwrap_or(SIGINT)
}

/// The one line a stopped command prints: which signal, and what it left behind.
pub fn message(left: &str) -> String {
    let name = signal_name(received().unwrap_or(SIGINT));
    format!("interrupted by {name}: {left}")
}

/// The error a command returns when a signal stopped it, saying what it left behind (the
/// binary prints [`message`] with it and exits with [`exit_code`]). A command stopped without
/// one (an error raised inside the work) left nothing: its outputs come after the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// What the stopped command left, e.g. "a checkpoint at step 40 (resume with --resume)".
    pub left: String,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped: {}", self.left)
    }
}

impl std::error::Error for Stopped {}

/// What a command stopped with no [`Stopped`] error of its own left behind.
pub const NOTHING_WRITTEN: &str = "no output files were written";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shields_nest_and_are_released_when_dropped() {
        // No handler installed in this test process: nothing is requested.
        assert!(!should_stop());
        {
            let _outer = Shield::new();
            let _inner = Shield::new();
            assert_eq!(SHIELD.with(Cell::get), 2);
            assert!(!should_stop());
        }
        assert_eq!(SHIELD.with(Cell::get), 0);
    }

    #[test]
    fn names_and_codes_follow_the_convention() {
        assert_eq!(signal_name(SIGTERM), "SIGTERM");
        assert_eq!(128 + SIGTERM, 143);
        assert_eq!(128 + SIGINT, 130);
    }
}
