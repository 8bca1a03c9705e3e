//! The one channel into the main loop: terminal input and worker results arrive as [`Event`]s.

use super::worker::{Outbox, WorkerMsg};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// Everything the main loop reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key, mouse or resize event from the terminal.
    Input(crossterm::event::Event),
    /// A result from the worker.
    Worker(WorkerMsg),
    /// A termination signal (SIGTERM, SIGINT, SIGHUP, SIGQUIT) sent from outside: quit with the
    /// terminal restored.
    Signal(i32),
}

/// The signals that end the TUI cleanly instead of killing it with the terminal left raw.
pub const QUIT_SIGNALS: [i32; 4] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// Turns [`QUIT_SIGNALS`] into [`Event::Signal`]s on a thread (the handler itself only records the
/// signal; the main loop restores the terminal and exits with `128 + signal`).
pub fn spawn_signals(tx: Sender<Event>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(QUIT_SIGNALS)?;
    std::thread::Builder::new()
        .name("alibi-signals".to_string())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

impl Outbox for Sender<Event> {
    fn deliver(&self, msg: WorkerMsg) -> bool {
        self.send(Event::Worker(msg)).is_ok()
    }
}

/// How often the input thread checks whether the app is still running.
const POLL: Duration = Duration::from_millis(250);

/// Reads terminal events on a thread and forwards them until the receiver is gone.
pub fn spawn_input(tx: Sender<Event>) {
    let _ = std::thread::Builder::new()
        .name("alibi-input".to_string())
        .spawn(move || {
            loop {
                match crossterm::event::poll(POLL) {
                    Ok(true) => match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.send(Event::Input(ev)).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        });
}
