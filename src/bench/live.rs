//! `bench --live`: how the TUI feels on a model, measured without a terminal. It loads the model
//! and text exactly as the TUI does, starts the same worker with the same first jobs, and drives
//! the same `App` with the user's actions while the sweep runs: seconds to the first attention
//! map, the first progress, the first perplexity numbers, the cursor's number, the answers to a
//! layer, head, length and slope change, and the whole curve after that slope change (the
//! status bar's `sweep done`). A big model's figures go in docs/tui.md.

use crate::model::load::ModelSource;
use crate::model::memory::peak_rss_mib;
use crate::text::Input;
use crate::tui::TuiSettings;
use crate::tui::app::{App, Effect};
use crate::tui::event::Event;
use crate::tui::keymap::{Action, STEPS_PER_OCTAVE};
use crate::tui::ui::status::duration;
use crate::tui::worker::{self, JobSender, WorkerMsg};
use color_eyre::eyre::{Result, bail};
use std::fmt::Write as _;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// One timed moment.
struct Row {
    what: String,
    secs: f64,
    note: String,
}

struct Run {
    app: App,
    jobs: JobSender,
    rx: Receiver<Event>,
    started: Instant,
    timeout: Duration,
    /// When the first sweep progress arrived, and what it said.
    first_progress: Option<(f64, String)>,
}

impl Run {
    fn send(&self, effects: Vec<Effect>) {
        for fx in effects {
            if let Effect::Job(job) = fx {
                let _ = self.jobs.send(job);
            }
        }
    }

    fn since_start(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Feeds worker messages to the app until the app's state satisfies `done` (checked first).
    fn until_state(&mut self, what: &str, done: impl Fn(&App) -> bool) -> Result<f64> {
        if done(&self.app) {
            return Ok(0.0);
        }
        self.until(what, |app, _| done(app))
    }

    /// Feeds worker messages to the app until `done` holds; the seconds it took.
    fn until(&mut self, what: &str, done: impl Fn(&App, &WorkerMsg) -> bool) -> Result<f64> {
        let t = Instant::now();
        loop {
            let left = self.timeout.saturating_sub(t.elapsed());
            if left.is_zero() {
                bail!(
                    "{what}: no answer within {} s (hint: raise --live-timeout)",
                    self.timeout.as_secs()
                );
            }
            let msg = match self.rx.recv_timeout(left) {
                Ok(Event::Worker(m)) => m,
                Ok(_) => continue,
                Err(_) => bail!(
                    "{what}: no answer within {} s (hint: raise --live-timeout)",
                    self.timeout.as_secs()
                ),
            };
            if let WorkerMsg::Error { msg, .. } = &msg {
                bail!("{what}: the worker failed: {msg}");
            }
            if let WorkerMsg::Progress { progress, .. } = &msg
                && self.first_progress.is_none()
                && progress.task != crate::tui::worker::Task::Attention
            {
                self.first_progress =
                    Some((self.since_start(), crate::tui::ui::status::live(progress)));
            }
            self.app.on_worker(msg.clone());
            if done(&self.app, &msg) {
                return Ok(t.elapsed().as_secs_f64());
            }
        }
    }

    /// Applies `action` and times the attention map it asks for (and, for a slope edit, the new
    /// curve's first numbers).
    fn answer(&mut self, what: &str, action: Action, rows: &mut Vec<Row>) -> Result<()> {
        let during = !self.app.curves[0].done;
        let fx = self.app.update(action);
        self.send(fx);
        let generation = self.app.attn_gen;
        let secs = self.until(
            what,
            |_, m| matches!(m, WorkerMsg::Attention { generation: g, .. } if *g == generation),
        )?;
        let note = format!(
            "layer {}, head {}, length {}{}",
            self.app.layer,
            self.app.head,
            self.app.attention_len(),
            if during {
                ", during the sweep"
            } else {
                ", after the sweep"
            }
        );
        rows.push(Row {
            what: format!("{what}: its attention map"),
            secs,
            note,
        });
        Ok(())
    }
}

/// Runs the live section on `model` and the text of `input`, waiting at most `timeout_s` seconds
/// for each answer, and returns its report.
pub fn run(model: &ModelSource, input: &Input, timeout_s: u64) -> Result<String> {
    let Input::Text(text) = input else {
        bail!("bench --live needs --text FILE (the TUI reads a text with the model's tokenizer)");
    };
    let started = Instant::now();
    let slopes_file = std::env::temp_dir().join(format!("alibi-live-{}.json", std::process::id()));
    let settings = TuiSettings {
        model: model.path.clone(),
        text: text.clone(),
        compare: Vec::new(),
        device: model.device,
        dtype: model.dtype,
        max_length: None,
        max_tokens: None,
        slopes_file,
        recipes: Vec::new(),
    };
    let (mut app, slots) = crate::tui::prepare(&settings)?;
    let load = started.elapsed().as_secs_f64();
    let (tx, rx) = channel::<Event>();
    let jobs = worker::spawn(slots, tx);
    let start = app.start();
    let mut run = Run {
        app,
        jobs,
        rx,
        started,
        timeout: Duration::from_secs(timeout_s.max(1)),
        first_progress: None,
    };
    run.send(start);
    let mut rows = vec![Row {
        what: "model and text loaded, worker started".into(),
        secs: load,
        note: format!(
            "{} tokens, sweep window {}",
            run.app.curves[0].stream.ids.len(),
            run.app.lmax
        ),
    }];
    let first = run.app.attn_gen;
    run.until(
        "the first attention map",
        |_, m| matches!(m, WorkerMsg::Attention { generation, .. } if *generation == first),
    )?;
    rows.push(Row {
        what: "first attention map".into(),
        secs: run.since_start(),
        note: format!("layer 0, length {}", run.app.attention_len()),
    });
    run.until_state("the first perplexity numbers", |app| {
        app.curves[0].acc.has_data()
    })?;
    if let Some((secs, note)) = run.first_progress.clone() {
        rows.push(Row {
            what: "first progress in the status bar".into(),
            secs,
            note,
        });
    }
    let first_covered = covered(&run.app);
    rows.push(Row {
        what: "first perplexity numbers".into(),
        secs: run.since_start(),
        note: format!("lengths up to {first_covered}"),
    });
    run.until_state("the perplexity at the cursor", |app| {
        app.point_at_cursor().is_some()
    })?;
    rows.push(Row {
        what: "perplexity at the cursor".into(),
        secs: run.since_start(),
        note: format!("length {} (train_len)", run.app.length()),
    });
    run.answer("next layer (])", Action::Layer(1), &mut rows)?;
    run.answer("next head (.)", Action::Head(1), &mut rows)?;
    run.answer(
        "cursor an octave shorter (Shift+←)",
        Action::MoveLength(-STEPS_PER_OCTAVE),
        &mut rows,
    )?;
    let during = !run.app.curves[0].done;
    let secs_map = {
        let fx = run.app.update(Action::ScaleAll(1.25));
        run.send(fx);
        let generation = run.app.attn_gen;
        run.until(
            "the slope edit's attention map",
            |_, m| matches!(m, WorkerMsg::Attention { generation: g, .. } if *g == generation),
        )?
    };
    let secs_curve = secs_map
        + run.until_state("the slope edit's first numbers", |app| {
            app.curves[0].acc.has_data()
        })?;
    let when = if during {
        "during the sweep"
    } else {
        "after the sweep"
    };
    rows.push(Row {
        what: "slope edit (* x1.25): its attention map".into(),
        secs: secs_map,
        note: when.into(),
    });
    rows.push(Row {
        what: "slope edit: the new curve's first numbers".into(),
        secs: secs_curve,
        note: format!("lengths up to {}", covered(&run.app)),
    });
    // The whole curve, as the status bar's `sweep done in` reports it: a slope edit starts a fresh
    // sweep over the same windows as the first one.
    let secs_whole =
        secs_curve + run.until_state("the whole new curve", |app| app.curves[0].done)?;
    rows.push(Row {
        what: "slope edit: the whole new curve (sweep done)".into(),
        secs: secs_whole,
        note: format!("lengths up to {}", run.app.lmax)
            + &run.app.curves[0].secs.map_or_else(String::new, |s| {
                format!("; the worker's own timer: {s:.1} s")
            }),
    });
    let eta = run.app.curves[0].live.as_ref().map(|p| {
        format!(
            "{:.0} tok/s, window ETA {}",
            p.tokens_per_s,
            duration(p.eta_s)
        )
    });
    report(input, &run.app, &rows, eta)
}

/// The longest grid length the main curve covers now.
fn covered(app: &App) -> usize {
    app.curves[0].points(&app.grid).map_or(0, |p| {
        p.iter()
            .filter(|x| x.tokens > 0)
            .map(|x| x.length)
            .max()
            .unwrap_or(0)
    })
}

fn report(input: &Input, app: &App, rows: &[Row], eta: Option<String>) -> Result<String> {
    let mut r = String::new();
    writeln!(r, "# alibi-explorer live TUI benchmark\n")?;
    writeln!(
        r,
        "Model `{}` ({}, {} layers, {} heads, train_len {}), {} on {} ({}); text `{}`. \
         The TUI's worker and app driven headless (`bench --live`): times after start, except \
         the answers to the user's actions (latency from the key).\n",
        app.info.name,
        app.info.position,
        app.info.n_layers,
        app.info.n_heads,
        app.info.train_len,
        app.info.dtype,
        app.info.device,
        app.info.device_note,
        match input {
            Input::Text(p) | Input::TokenIds(p) => p.display().to_string(),
        }
    )?;
    writeln!(r, "| moment | seconds | detail |\n| --- | ---: | --- |")?;
    for row in rows {
        writeln!(r, "| {} | {:.1} | {} |", row.what, row.secs, row.note)?;
    }
    if let Some(eta) = eta {
        writeln!(r, "\nThe sweep was still running at the end: {eta}.")?;
    }
    if let Some(rss) = peak_rss_mib() {
        writeln!(r, "\nPeak RSS of the process: {rss:.0} MiB.")?;
    }
    Ok(r)
}
