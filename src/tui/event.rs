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
