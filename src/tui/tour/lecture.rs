//! `tour --export DIR`: the tour as a lecture for a projector. The app and worker run headless;
//! each step's state is set as in the TUI, the step waits for its numbers, then its panel is
//! written as SVG and PNG (with the JSON of its data) by the same writers as `w`, its card as
//! Markdown with the live numbers filled in (`step-NN.md`), and `index.md` links every slide.

use super::Tour;
use super::live::{complete, fill};
use crate::tui::app::{App, Effect};
use crate::tui::event::Event;
use crate::tui::export::write_export;
use crate::tui::keymap::Focus;
use crate::tui::views::AttnView;
use crate::tui::worker::{self, JobSender, ModelSlot};
use color_eyre::eyre::{Result, bail, eyre};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long a step waits for its numbers by default.
pub const DEFAULT_STEP_TIMEOUT_S: u64 = 300;

/// Refuses a folder that already holds files: a lecture is written into a new or empty folder,
/// so nothing is ever overwritten.
pub fn check_fresh(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(format!(
                    "--export '{}' is not empty (hint: give a new or empty folder; a lecture never overwrites files)",
                    dir.display()
                ))
            } else {
                Ok(())
            }
        }
        Err(_) => Ok(()),
    }
}

/// The file name of step `i`'s card (from 0).
pub fn card_file(i: usize) -> String {
    format!("step-{:02}.md", i + 1)
}

fn panel_name(app: &App) -> &'static str {
    match app.focus {
        Focus::Chart => "perplexity",
        Focus::Slopes => "slopes",
        Focus::Bias => "bias",
        Focus::Attention => app.view.name(),
    }
}

struct Headless {
    app: App,
    jobs: JobSender,
    rx: Receiver<Event>,
}

impl Headless {
    fn send(&self, effects: Vec<Effect>) {
        for fx in effects {
            if let Effect::Job(job) = fx {
                let _ = self.jobs.send(job);
            }
        }
    }

    /// Whether the current step has everything it shows: every curve swept, the panel's data for
    /// this state, and every number of its card.
    fn ready(&self) -> bool {
        let app = &self.app;
        let Some(t) = &app.tour else { return true };
        let step = t.current();
        let numbers = std::iter::once(&step.title)
            .chain(&step.body)
            .chain(step.task.as_ref().map(|t| &t.text))
            .all(|l| complete(app, l));
        let curves = app.curves.iter().all(|c| c.done);
        let refined = app.curves.iter().all(|c| c.refined.is_some());
        let panel = match app.focus {
            Focus::Chart => refined,
            Focus::Slopes | Focus::Bias => true,
            Focus::Attention => match app.view {
                AttnView::Heatmap => app.attention.as_ref().is_some_and(|m| {
                    m.layer == app.layer && m.head == app.head && m.len == app.attention_len()
                }),
                AttnView::Sensitivity => {
                    let s = &app.sensitivity;
                    !app.is_alibi()
                        || s.baseline.is_some()
                            && s.progress.1 > 0
                            && s.progress.0 >= s.progress.1
                            && s.slopes == app.slopes
                }
                _ => app.export().is_ok(),
            },
        };
        numbers && curves && panel
    }

    /// Feeds worker messages to the app until the step is ready; false on timeout.
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        while !self.ready() {
            if crate::files::stop::requested() {
                return Err(crate::files::stop::Stopped {
                    left: crate::files::stop::NOTHING_WRITTEN.to_string(),
                }
                .into());
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(Event::Worker(msg)) => {
                    if let worker::WorkerMsg::Error { msg, .. } = &msg
                        && !crate::files::stop::requested()
                    {
                        bail!("the worker failed: {msg}");
                    }
                    self.app.on_worker(msg);
                    // Some views ask for more once the first results are in.
                    let fx = self.app.stats_jobs();
                    self.send(fx);
                }
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the worker stopped")
                }
            }
        }
        Ok(true)
    }
}

/// Writes the lecture of `tour` into `dir` (checked beforehand with [`check_fresh`] and
/// `files::check_output_dir`). A lecture that fails or is stopped by a signal
/// ([`crate::files::stop`]) takes back what it wrote: the folder is left as it was found.
pub fn export(
    app: App,
    slots: Vec<ModelSlot>,
    tour: Tour,
    dir: &Path,
    step_timeout_s: u64,
) -> Result<()> {
    let created = !dir.exists();
    let mut written = Vec::new();
    let result = write_lecture(app, slots, tour, dir, step_timeout_s, &mut written);
    if result.is_err() {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result
}

fn write_lecture(
    mut app: App,
    slots: Vec<ModelSlot>,
    tour: Tour,
    dir: &Path,
    step_timeout_s: u64,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| eyre!("--export: cannot create '{}': {e}", dir.display()))?;
    // One writer per lecture folder: a second `tour --export` here is refused, naming this one.
    let _lock = crate::files::lock::lock_folder("--export", dir).map_err(|e| eyre!(e))?;
    let (tx, rx) = channel::<Event>();
    let jobs = worker::spawn(slots, tx);
    let start = app.start();
    let mut h = Headless { app, jobs, rx };
    h.send(start);
    let fx = h.app.open_tour(tour.clone());
    h.send(fx);
    let timeout = Duration::from_secs(step_timeout_s);
    let mut index = String::new();
    let _ = writeln!(index, "# {}\n", tour.title);
    for l in &tour.intro {
        let _ = writeln!(index, "{}", fill(&h.app, l));
    }
    let _ = writeln!(index);
    let n = tour.steps.len();
    for i in 0..n {
        let mut fx = h.app.tour_go(i);
        fx.extend(h.app.stats_jobs());
        h.send(fx);
        let t0 = Instant::now();
        let complete = h.wait(timeout)?;
        let app = &h.app;
        let step = &tour.steps[i];
        let title = fill(app, &step.title);
        let stem = format!("step-{:02}-{}", i + 1, panel_name(app));
        let figure = match app.export() {
            Ok(Effect::Export(mut e)) => {
                e.stem.clone_from(&stem);
                let stem_path = |ext: &str| dir.join(format!("{}.{ext}", e.stem));
                written.extend(["svg", "png", "json"].map(stem_path));
                write_export(dir, &e).map_err(|e| eyre!("--export: {e}"))?;
                Some(stem)
            }
            _ => None,
        };
        let mut md = String::new();
        let _ = writeln!(md, "# {}. {title}\n", i + 1);
        if let Some(stem) = &figure {
            let _ = writeln!(md, "![{title}]({stem}.svg)\n");
            let _ = writeln!(md, "([PNG]({stem}.png), [data]({stem}.json))\n");
        }
        for l in &step.body {
            let _ = writeln!(md, "{}", fill(app, l));
        }
        if let Some(task) = &step.task {
            let _ = writeln!(md, "\n**Try it:** {}", fill(app, &task.text));
        }
        let _ = writeln!(
            md,
            "\n---\n\n*{}, length {} ({:.2}x train_len {}), slopes: {}.{}*",
            app.info.name,
            app.length(),
            app.length() as f64 / app.info.train_len.max(1) as f64,
            app.info.train_len,
            app.slopes_label,
            if complete {
                String::new()
            } else {
                format!(" Some numbers were still computing after {step_timeout_s} s.")
            }
        );
        md.push('\n');
        let nav: Vec<String> = [
            (i > 0).then(|| format!("[← previous]({})", card_file(i - 1))),
            Some("[index](index.md)".to_string()),
            (i + 1 < n).then(|| format!("[next →]({})", card_file(i + 1))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(md, "{}", nav.join(" · "));
        written.push(dir.join(card_file(i)));
        crate::files::write_bytes(&dir.join(card_file(i)), md.as_bytes())
            .map_err(|e| eyre!("--export: {e}"))?;
        let _ = writeln!(index, "{}. [{title}]({})", i + 1, card_file(i));
        eprintln!(
            "step {}/{n}: {title}: {}{} ({:.1}s)",
            i + 1,
            card_file(i),
            figure
                .as_ref()
                .map_or(String::new(), |s| format!(", {s}.{{svg,png,json}}")),
            t0.elapsed().as_secs_f64()
        );
    }
    written.push(dir.join("index.md"));
    crate::files::write_bytes(&dir.join("index.md"), index.as_bytes())
        .map_err(|e| eyre!("--export: {e}"))?;
    println!("wrote {} slides and index.md to {}", n, dir.display());
    Ok(())
}
