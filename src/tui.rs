//! The terminal UI: loads the models, starts the worker and the input thread, and runs the main
//! loop (block on the one event channel, drain what is queued, update, draw once).

pub mod app;
pub mod curve;
pub mod event;
pub mod export;
pub mod keymap;
pub mod messages;
pub mod palette;
pub mod tour;
pub mod ui;
pub mod views;
pub mod worker;

use crate::alibi::file::{read_slopes, write_slopes};
use crate::model::LoadedModel;
use crate::model::device::{ChosenDevice, DeviceSpec, choose_device, device_name, dtype_name};
use crate::model::load::load_model;
use crate::text::{Stream, tokenize};
use app::{App, Effect, ModelInfo};
use color_eyre::eyre::{Result, bail, eyre};
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, MouseButton, MouseEventKind,
};
use event::Event;
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use worker::{JobSender, ModelSlot};

/// What the TUI needs to start.
#[derive(Debug, Clone)]
pub struct TuiSettings {
    /// Main model folder (or repo id).
    pub model: PathBuf,
    /// The text to evaluate.
    pub text: PathBuf,
    /// Models to compare against.
    pub compare: Vec<PathBuf>,
    /// Device choice.
    pub device: DeviceSpec,
    /// dtype.
    pub dtype: candle_core::DType,
    /// The longest length (default: 16x the training length, bounded by the text).
    pub max_length: Option<usize>,
    /// Use only the first N tokens of the text (each model's own tokens).
    pub max_tokens: Option<usize>,
    /// Where `S`/`L` save and load slopes.
    pub slopes_file: PathBuf,
    /// Long-context recipes drawn as extra curves from the start.
    pub recipes: Vec<crate::alibi::recipe::Recipe>,
}

/// Factor over the training length the chart reaches by default.
pub const DEFAULT_EXTRAPOLATION: usize = 16;

fn model_info(m: &LoadedModel) -> ModelInfo {
    let cfg = m.model.config();
    ModelInfo {
        name: m.name.clone(),
        arch: cfg.arch.name().to_string(),
        position: cfg.position,
        train_len: cfg.train_len,
        n_layers: cfg.n_layers,
        n_heads: cfg.n_heads,
        device: device_name(&m.device.device),
        device_note: m.device.note.clone(),
        dtype: dtype_name(m.model.dtype()).to_string(),
        slopes: (cfg.position == crate::model::Position::Alibi).then(|| cfg.default_slopes()),
    }
}

fn stream_for(
    m: &LoadedModel,
    text: &str,
    path: &Path,
    max_tokens: Option<usize>,
) -> Result<Stream> {
    let tok = m.tokenizer.as_ref().ok_or_else(|| {
        eyre!(
            "model '{}' has no tokenizer.json; the TUI needs one to read --text",
            m.name
        )
    })?;
    let mut stream = tokenize(tok, text).map_err(|e| eyre!("'{}': {e}", path.display()))?;
    if let Some(n) = max_tokens {
        stream.truncate(n);
    }
    Ok(stream)
}

/// Loads everything and builds the app (no terminal yet), so errors print normally.
pub fn prepare(s: &TuiSettings) -> Result<(App, Vec<ModelSlot>)> {
    if s.max_tokens.is_some_and(|n| n < 2) {
        bail!("--max-tokens must be at least 2");
    }
    let text = crate::text::files::read_eval_text(&s.text)?;
    let device: ChosenDevice = choose_device(s.device)?;
    let main = load_model(&s.model, device.clone(), s.dtype)?;
    let main_stream = stream_for(&main, &text, &s.text, s.max_tokens)?;
    let cfg = main.model.config().clone();
    let available = main_stream.ids.len().saturating_sub(1);
    let mut lmax = s
        .max_length
        .unwrap_or(cfg.train_len * DEFAULT_EXTRAPOLATION)
        .min(available);
    if let Some(limit) = cfg.max_len {
        lmax = lmax.min(limit);
    }
    if s.max_length == Some(0) {
        bail!("--max-length must be at least 1");
    }
    if lmax < app::MIN_LENGTH {
        bail!(
            "'{}' has {}{}; the TUI needs at least {} (hint: {})",
            s.text.display(),
            crate::text::count(main_stream.ids.len(), "token"),
            if s.max_tokens.is_some() {
                " within --max-tokens"
            } else {
                ""
            },
            app::MIN_LENGTH + 1,
            if s.max_tokens.is_some() {
                "raise --max-tokens"
            } else {
                "use a longer text"
            }
        );
    }
    let tok = main.tokenizer.as_ref();
    let token_text: Vec<String> = main_stream
        .ids
        .iter()
        .map(|&id| {
            tok.and_then(|t| t.decode(&[id], false).ok())
                .unwrap_or_else(|| id.to_string())
        })
        .collect();
    let info = model_info(&main);
    let mut slots = vec![ModelSlot {
        loaded: main,
        stream: main_stream.clone(),
    }];
    let mut labels = Vec::new();
    let mut streams = vec![main_stream];
    for c in &s.compare {
        let m = load_model(c, device.clone(), s.dtype)?;
        let st = stream_for(&m, &text, &s.text, s.max_tokens)?;
        if st.windows(lmax) == 0 {
            bail!(
                "'{}' is too short for --compare model '{}' at length {lmax}",
                s.text.display(),
                m.name
            );
        }
        labels.push(format!("{} ({})", m.name, m.model.config().position));
        streams.push(st.clone());
        slots.push(ModelSlot {
            loaded: m,
            stream: st,
        });
    }
    let mut app = App::new(
        info,
        labels,
        streams,
        token_text,
        lmax,
        s.slopes_file.clone(),
    );
    for &r in &s.recipes {
        app.add_recipe(r);
        if let Some(e) = app.error.take() {
            bail!("{e}");
        }
    }
    app.message.clear();
    app.inputs = slots
        .iter()
        .map(|slot| ("--model".to_string(), slot.loaded.folder.clone()))
        .chain(std::iter::once(("--text".to_string(), s.text.clone())))
        .collect();
    Ok((app, slots))
}

/// Checks that every one of `outputs` can be written and replaces none of `inputs` (by any path
/// or link): the rule of every headless writer ([`crate::files::OutputPlan`]), for the TUI's
/// saves and exports, checked again at each write since links can change while it runs.
pub fn check_writes(inputs: &[(String, PathBuf)], outputs: &[(&str, &Path)]) -> Result<(), String> {
    let mut plan = crate::files::OutputPlan::new();
    for (what, p) in inputs {
        plan.input(what, p);
    }
    for (what, p) in outputs {
        plan.output(what, p);
    }
    plan.check()
}

fn set_mouse(on: bool) {
    let mut out = std::io::stdout();
    let _ = if on {
        crossterm::execute!(out, EnableMouseCapture)
    } else {
        crossterm::execute!(out, DisableMouseCapture)
    };
}

/// Set to `panic` or `error` to make the first input event of the TUI (or a headless command, at
/// its start) fail that way: the end-to-end tests check that every way out restores the terminal
/// and that reports are plain text off a terminal.
pub const FAULT_ENV: &str = "ALIBI_EXPLORER_FAULT";

/// Fails as [`FAULT_ENV`] asks (no-op when it is not set).
pub fn inject_fault() -> Result<()> {
    match std::env::var(FAULT_ENV).as_deref() {
        Ok("panic") => panic!("{FAULT_ENV}=panic: a panic for the end-to-end test"),
        Ok("error") => bail!("{FAULT_ENV}=error: an error for the end-to-end test"),
        _ => Ok(()),
    }
}

/// Refuses to draw the TUI when standard output is not a terminal (`alibi-explorer > out.txt`
/// would draw into the file while the screen stays blank) or standard input is not one (no keys
/// could reach it).
pub fn check_terminal(stdout_tty: bool, stdin_tty: bool) -> Result<()> {
    if !stdout_tty {
        bail!(
            "standard output is not a terminal: the TUI draws on the terminal (hint: run it without redirecting its output, or use a headless command such as `alibi-explorer eval --json FILE`)"
        );
    }
    if !stdin_tty {
        bail!(
            "standard input is not a terminal: the TUI reads keys from it (hint: run it from a terminal, or use a headless command such as `alibi-explorer eval`)"
        );
    }
    Ok(())
}

/// Carries out effects; file results are fed back into the app.
fn apply(app: &mut App, effects: Vec<Effect>, jobs: &JobSender) {
    // In order: the jobs of an action go out as the app lists them (the main curve first).
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    while let Some(fx) = queue.pop_front() {
        match fx {
            Effect::Job(job) => {
                let _ = jobs.send(job);
            }
            Effect::SetMouse(on) => set_mouse(on),
            fx @ (Effect::Export(_) | Effect::SaveSlopes(..) | Effect::LoadSlopes(_)) => {
                queue.extend(apply_file_effect(app, fx, Path::new(".")));
            }
        }
    }
}

/// Carries out a file effect (a `w` export into `dir`, an `S` save, an `L` load) as the main loop
/// does, and returns the effects that follow from it; other effects are returned unchanged.
/// Every write is checked against [`App::inputs`] first ([`check_writes`]).
pub fn apply_file_effect(app: &mut App, fx: Effect, dir: &Path) -> Vec<Effect> {
    match fx {
        Effect::Export(export) => {
            let files = export::export_files(dir, &export);
            let outputs: Vec<(&str, &Path)> =
                files.iter().map(|f| ("w export", f.as_path())).collect();
            let result = check_writes(&app.inputs, &outputs)
                .and_then(|()| export::write_export(dir, &export));
            app.exported(result);
            Vec::new()
        }
        Effect::SaveSlopes(path, slopes) => {
            match check_writes(&app.inputs, &[("S (the slopes file)", &path)])
                .and_then(|()| write_slopes(&path, &slopes))
            {
                Ok(()) => {
                    app.message = format!(
                        "saved {} to {}",
                        crate::text::count(slopes.len(), "slope"),
                        path.display()
                    );
                }
                Err(e) => app.error = Some(e),
            }
            Vec::new()
        }
        Effect::LoadSlopes(path) => app.slopes_loaded(read_slopes(&path)),
        other => vec![other],
    }
}

/// Handles one terminal event.
fn on_input(app: &mut App, ev: &TermEvent) -> Vec<Effect> {
    match ev {
        TermEvent::Key(key) => keymap::map_key(*key, app.focus, app.help)
            .map(|a| app.update(a))
            .unwrap_or_default(),
        TermEvent::Mouse(m) => match m.kind {
            MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
                app.update(keymap::Action::LengthAtColumn(m.column))
            }
            MouseEventKind::ScrollUp => app.update(keymap::Action::Zoom(true)),
            MouseEventKind::ScrollDown => app.update(keymap::Action::Zoom(false)),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Runs the TUI until the user quits.
pub fn run(settings: &TuiSettings) -> Result<()> {
    let (app, slots) = prepare(settings)?;
    run_prepared(app, slots, |_| Vec::new())
}

/// Runs the TUI on a prepared app; `setup` runs after the first jobs are sent (the tour opens
/// there) and returns its own effects.
pub fn run_prepared(
    mut app: App,
    slots: Vec<ModelSlot>,
    setup: impl FnOnce(&mut App) -> Vec<Effect>,
) -> Result<()> {
    // Bad options and inputs are reported first (with or without a terminal), then a missing
    // terminal, before the screen is touched.
    check_terminal(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::io::IsTerminal::is_terminal(&std::io::stdin()),
    )?;
    let (tx, rx) = channel::<Event>();
    let jobs = worker::spawn(slots, tx.clone());
    // Mouse capture must be undone on panic too (ratatui's hook restores the rest).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        set_mouse(false);
        let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
        hook(info);
    }));
    // From here on, termination signals come in as events, so every way out restores the terminal.
    event::spawn_signals(tx.clone())
        .map_err(|e| eyre!("cannot install the signal handlers: {e}"))?;
    let mut terminal = ratatui::try_init().map_err(|e| eyre!("cannot open the terminal: {e} (the TUI needs an interactive terminal; use the headless commands otherwise)"))?;
    set_mouse(app.mouse);
    event::spawn_input(tx);
    let start = app.start();
    apply(&mut app, start, &jobs);
    let more = setup(&mut app);
    apply(&mut app, more, &jobs);
    let mut signal = None;
    let result = (|| -> Result<()> {
        loop {
            let size = terminal.size()?;
            if let Some((areas, _)) = ui::screen_layout(
                &app,
                ratatui::layout::Rect::new(0, 0, size.width, size.height),
            ) {
                let plot = ui::plot_area(areas.chart);
                app.chart_columns = Some((plot.x, plot.width));
            }
            terminal.draw(|f| f.render_widget(&app, f.area()))?;
            let Ok(first) = rx.recv() else { return Ok(()) };
            let mut events = vec![first];
            events.extend(rx.try_iter());
            for ev in events {
                let fx = match ev {
                    Event::Input(ev) => {
                        inject_fault()?;
                        on_input(&mut app, &ev)
                    }
                    Event::Worker(msg) => {
                        app.on_worker(msg);
                        Vec::new()
                    }
                    Event::Signal(sig) => {
                        signal = Some(sig);
                        return Ok(());
                    }
                };
                apply(&mut app, fx, &jobs);
            }
            if app.quit {
                return Ok(());
            }
        }
    })();
    set_mouse(false);
    let _ = terminal.show_cursor();
    ratatui::restore();
    if let Some(sig) = signal {
        // The conventional status of a process ended by a signal.
        std::process::exit(128 + sig);
    }
    result
}
