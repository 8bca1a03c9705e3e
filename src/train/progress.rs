//! Training progress on stderr: an indicatif bar (steps, tokens/s, loss, ETA) when stderr is a
//! terminal, one plain line per loss-log line otherwise (logs, pipes, CI).

use crate::eval::reach::CopyScore;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Where progress goes.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
}

impl Progress {
    /// Progress of a run of `total` steps starting at `start` (a resumed run).
    pub fn new(total: usize, start: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:28.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▌ "),
            );
            bar.set_position(start as u64);
            bar.reset_eta();
            bar
        });
        Self { bar, total }
    }

    /// After each step: the bar moves (plain output waits for [`Self::logged`]).
    pub fn step(
        &self,
        step: usize,
        loss: f64,
        tokens_per_s: f64,
        valid: Option<f64>,
        copy: Option<CopyScore>,
    ) {
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!(
                "{tokens_per_s:.0} tokens/s  loss {loss:.4}  valid {}{}",
                valid.map_or("-".to_string(), |v| format!("{v:.4}")),
                copy_text(copy)
            ));
        }
    }

    /// After a line of the loss log: a plain line when there is no bar.
    #[allow(clippy::too_many_arguments)]
    pub fn logged(
        &self,
        step: usize,
        mean_loss: f64,
        valid: Option<f64>,
        copy: Option<CopyScore>,
        lr: f64,
        tokens_per_s: f64,
        elapsed_s: f64,
        eta_s: f64,
    ) {
        if self.bar.is_none() {
            eprintln!(
                "step {step}/{} loss {mean_loss:.4} valid {}{} lr {lr:.2e} {tokens_per_s:.0} tokens/s elapsed {elapsed_s:.0}s ETA {eta_s:.0}s",
                self.total,
                valid.map_or("-".to_string(), |v| format!("{v:.4}")),
                copy_text(copy)
            );
        }
    }

    /// A message that must not be drawn over.
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Leaves the bar where it is (a stopped or finished run).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// The copy test on the progress line: ` copy GAIN±SE ind SCORE@LAYER.HEAD` (nothing without one).
pub fn copy_text(copy: Option<CopyScore>) -> String {
    copy.map_or(String::new(), |c| {
        format!(
            " copy {:.2}±{:.2} ind {:.2}@{}.{}",
            c.gain, c.gain_stderr, c.induction, c.induction_head.0, c.induction_head.1
        )
    })
}
