//! A seeded soak test of the TUI: random key, mouse and resize events and worker messages (current,
//! stale, errors, attention maps of odd sizes) drive `App` through `update`/`on_worker` as the
//! main loop does, and every event is followed by a render into a `TestBackend` of the current
//! size. Checks: no panic, the cursor in the grid and the chart range, head/layer/zoom/query in
//! bounds, and a message from an old generation changes neither the state nor the screen.
//!
//! Deterministic: a fixed xorshift seed (`ALIBI_SOAK_SEED` overrides it); `ALIBI_SOAK_EVENTS`
//! sets the events of the main run (default [`EVENTS`]).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::Position;
use alibi_explorer::model::attention_stats::HeadMeans;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, Effect, MAX_ZOOM, ModelInfo, chart_x_bounds};
use alibi_explorer::tui::keymap::{self, Action};
use alibi_explorer::tui::ui;
use alibi_explorer::tui::worker::{AttentionMap, Progress, StatsResult, Task, WorkerMsg};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers, MouseButton, MouseEvent,
    MouseEventKind,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use std::time::Instant;

/// Events of the main run.
const EVENTS: usize = 10_000;
/// Events of each edge-case model's run.
const EDGE_EVENTS: usize = 1_000;
/// The default seed.
const SEED: u64 = 0x5EED_A11B_1000_0001;

/// xorshift64*: tiny, deterministic, good enough to pick events.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// One model setup to soak.
struct Setup {
    position: Position,
    n_heads: usize,
    n_layers: usize,
    train_len: usize,
    lmax: usize,
    tokens: usize,
    compare: usize,
}

fn build(s: &Setup) -> App {
    let info = ModelInfo {
        name: "soak".into(),
        arch: "alibi-explorer".into(),
        position: s.position,
        train_len: s.train_len,
        n_layers: s.n_layers,
        n_heads: s.n_heads,
        device: "cpu".into(),
        device_note: "test".into(),
        dtype: "f32".into(),
        slopes: (s.position == Position::Alibi)
            .then(|| alibi_explorer::alibi::paper_slopes(s.n_heads)),
    };
    let stream = Stream {
        ids: (0..s.tokens as u32).map(|i| i % 97).collect(),
        bytes: Some((0..s.tokens as u32).map(|i| 1 + i % 4).collect()),
    };
    let labels = (0..s.compare).map(|i| format!("compare {i}")).collect();
    let text = (0..s.tokens).map(|i| format!("t{i}")).collect();
    App::new(
        info,
        labels,
        vec![stream; 1 + s.compare],
        text,
        s.lmax,
        "soak-slopes.json".into(),
    )
}

/// Every key the keymap knows, and a few it does not.
const KEYS: &[KeyCode] = &[
    KeyCode::Char('q'),
    KeyCode::Char('c'),
    KeyCode::Char('?'),
    KeyCode::Char(','),
    KeyCode::Char('.'),
    KeyCode::Char('['),
    KeyCode::Char(']'),
    KeyCode::Char('p'),
    KeyCode::Char('*'),
    KeyCode::Char('/'),
    KeyCode::Char('+'),
    KeyCode::Char('='),
    KeyCode::Char('-'),
    KeyCode::Char('z'),
    KeyCode::Char('x'),
    KeyCode::Char('h'),
    KeyCode::Char('l'),
    KeyCode::Char('r'),
    KeyCode::Char('S'),
    KeyCode::Char('L'),
    KeyCode::Char('b'),
    KeyCode::Char('e'),
    KeyCode::Char('a'),
    KeyCode::Char('m'),
    KeyCode::Char('t'),
    KeyCode::Char('v'),
    KeyCode::Char('s'),
    KeyCode::Char('d'),
    KeyCode::Char('y'),
    KeyCode::Esc,
    KeyCode::Enter,
    KeyCode::Tab,
    KeyCode::BackTab,
    KeyCode::Left,
    KeyCode::Right,
    KeyCode::Up,
    KeyCode::Down,
    KeyCode::PageUp,
    KeyCode::PageDown,
    KeyCode::Home,
    KeyCode::End,
    KeyCode::Char('§'),
    KeyCode::Char('\u{0}'),
    KeyCode::F(5),
    KeyCode::Delete,
    KeyCode::Null,
];

const MODIFIERS: &[KeyModifiers] = &[
    KeyModifiers::NONE,
    KeyModifiers::NONE,
    KeyModifiers::NONE,
    KeyModifiers::SHIFT,
    KeyModifiers::CONTROL,
    KeyModifiers::ALT,
];

fn random_key(rng: &mut Rng) -> KeyEvent {
    let code = if rng.chance(90) {
        rng.pick(KEYS)
    } else {
        KeyCode::Char(char::from_u32(rng.below(0x3_0000) as u32).unwrap_or('x'))
    };
    let kind = rng.pick(&[
        KeyEventKind::Press,
        KeyEventKind::Press,
        KeyEventKind::Press,
        KeyEventKind::Repeat,
        KeyEventKind::Release,
    ]);
    KeyEvent {
        code,
        modifiers: rng.pick(MODIFIERS),
        kind,
        state: KeyEventState::NONE,
    }
}

fn random_coordinate(rng: &mut Rng, size: u16) -> u16 {
    match rng.below(6) {
        0 => 0,
        1 => u16::MAX,
        2 => size,
        3 => rng.next() as u16,
        _ => rng.below(usize::from(size) + 2) as u16,
    }
}

/// The mouse events the main loop acts on (`tui::on_input`), and some it ignores.
fn random_mouse(rng: &mut Rng, (w, h): (u16, u16)) -> MouseEvent {
    let kind = rng.pick(&[
        MouseEventKind::Down(MouseButton::Left),
        MouseEventKind::Down(MouseButton::Left),
        MouseEventKind::Drag(MouseButton::Left),
        MouseEventKind::Drag(MouseButton::Left),
        MouseEventKind::Down(MouseButton::Right),
        MouseEventKind::Up(MouseButton::Left),
        MouseEventKind::Moved,
        MouseEventKind::ScrollUp,
        MouseEventKind::ScrollDown,
        MouseEventKind::ScrollLeft,
    ]);
    MouseEvent {
        kind,
        column: random_coordinate(rng, w),
        row: random_coordinate(rng, h),
        modifiers: rng.pick(MODIFIERS),
    }
}

/// What `tui::on_input` does with a mouse event.
fn on_mouse(app: &mut App, m: MouseEvent) -> Vec<Effect> {
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
            app.update(Action::LengthAtColumn(m.column))
        }
        MouseEventKind::ScrollUp => app.update(Action::Zoom(true)),
        MouseEventKind::ScrollDown => app.update(Action::Zoom(false)),
        _ => Vec::new(),
    }
}

fn random_size(rng: &mut Rng) -> (u16, u16) {
    match rng.below(10) {
        0 => rng.pick(&[
            (1, 1),
            (0, 0),
            (0, 30),
            (120, 0),
            (79, 23),
            (80, 24),
            (1, 200),
        ]),
        1 => (rng.below(501) as u16, rng.below(201) as u16),
        2 => rng.pick(&[(500, 200), (u16::MAX, 1), (1, 2000), (500, 24), (80, 200)]),
        _ => (80 + rng.below(120) as u16, 24 + rng.below(40) as u16),
    }
}

/// An older generation than `now`, or `None` when there is none yet.
fn stale(rng: &mut Rng, now: u64) -> Option<u64> {
    (now > 0).then(|| now - 1 - rng.next() % now)
}

fn random_nll(rng: &mut Rng, len: usize) -> Vec<f32> {
    let odd = rng.chance(3);
    (0..len)
        .map(|_| {
            if odd {
                rng.pick(&[f32::NAN, f32::INFINITY, 0.0, 1e30, -1.0, f32::MIN_POSITIVE])
            } else {
                1.0 + 5.0 * rng.f32()
            }
        })
        .collect()
}

fn attention_map(rng: &mut Rng, app: &App) -> AttentionMap {
    let n = app.attention_len();
    let len = rng.pick(&[0, 1, 2, 3, 7, n, n, n, n.saturating_sub(1), n + 1, 300]);
    AttentionMap {
        len,
        layer: rng.below(app.info.n_layers.max(1) + 1),
        head: rng.below(app.info.n_heads.max(1) + 1),
        probs: (0..len * len).map(|_| rng.f32()).collect(),
    }
}

/// Which kind of worker message, and whether it is from an old generation.
fn random_worker(rng: &mut Rng, app: &App) -> (WorkerMsg, bool) {
    let curves = app.curves.len();
    let lmax = app.lmax;
    let tokens = app.curves[0].stream.ids.len();
    let curve = if rng.chance(90) {
        rng.below(curves)
    } else {
        curves + rng.below(3)
    };
    let old = rng.chance(30);
    let generation = if old { stale(rng, app.sweep_gen) } else { None };
    let stale_msg = generation.is_some() && curve == 0;
    let generation = generation.unwrap_or(app.sweep_gen);
    match rng.below(13) {
        0..=4 => {
            let len = match rng.below(4) {
                0 => rng.below(lmax + 4),
                1 => 8 + rng.below(lmax),
                _ => lmax,
            };
            // Windows the worker sends fit in the stream; a few do not (a stale job over a
            // stream it no longer knows), and must not crash the app either.
            let start = if rng.chance(95) {
                rng.below(tokens.saturating_sub(len).max(1))
            } else {
                rng.below(tokens + 2 * lmax)
            };
            let total = rng.below(10);
            let msg = WorkerMsg::Window {
                generation,
                curve,
                start,
                nll: random_nll(rng, len),
                done: rng.below(total + 2),
                total,
                refine: rng.chance(30),
            };
            (msg, stale_msg)
        }
        5 => (
            WorkerMsg::SweepDone {
                generation,
                curve,
                secs: f64::from(rng.f32()) * 100.0,
                refine: rng.chance(50),
            },
            stale_msg,
        ),
        6..=8 => {
            let map = attention_map(rng, app);
            match stale(rng, app.attn_gen).filter(|_| old) {
                Some(g) => (WorkerMsg::Attention { generation: g, map }, true),
                None => (
                    WorkerMsg::Attention {
                        generation: app.attn_gen,
                        map,
                    },
                    false,
                ),
            }
        }
        9 => {
            // Attention statistics of any length and shape (a result for another model's head
            // count must not crash the views either).
            let len = 1 + rng.below(lmax + 4);
            let n_heads = if rng.chance(80) {
                app.info.n_heads
            } else {
                rng.below(5)
            };
            let layers = if rng.chance(80) {
                app.info.n_layers
            } else {
                rng.below(3)
            };
            let bins = rng.below(14);
            let heads = (0..n_heads * layers)
                .map(|_| HeadMeans {
                    queries: rng.below(1000) as u64,
                    mean_distance: f64::from(rng.f32()) * len as f64,
                    entropy: f64::from(rng.f32()) * 5.0,
                    entropy_norm: rng.chance(80).then(|| f64::from(rng.f32())),
                    mass90_distance: f64::from(rng.f32()) * len as f64,
                    sink_mass: rng.chance(70).then(|| f64::from(rng.f32())),
                    profile: (0..bins).map(|_| f64::from(rng.f32())).collect(),
                })
                .collect();
            (
                WorkerMsg::Stats {
                    generation,
                    stats: StatsResult {
                        len,
                        windows: rng.below(9),
                        heads,
                        n_heads,
                    },
                },
                old,
            )
        }
        10 => {
            // A piece of a long window: any length, offset and size, in order or not.
            let len = match rng.below(3) {
                0 => rng.below(lmax + 4),
                _ => lmax,
            };
            let offset = if rng.chance(70) {
                app.curves[curve.min(curves - 1)].acc.partial_positions(len)
            } else {
                rng.below(len + 3)
            };
            let total = rng.below(4);
            let pieces = rng.below(len.max(1) + 2);
            let msg = WorkerMsg::WindowPart {
                generation,
                curve,
                start: rng.below(tokens + lmax),
                len,
                offset,
                nll: random_nll(rng, pieces),
                done: rng.below(total + 2),
                total,
                refine: rng.chance(30),
            };
            (msg, stale_msg)
        }
        11 => {
            let task = rng.pick(&[Task::Sweep, Task::Refine, Task::Attention]);
            let wild = |rng: &mut Rng| match rng.below(5) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -1.0,
                _ => f64::from(rng.f32()) * 1e4,
            };
            let layers = rng.below(40);
            let len = rng.below(lmax * 2 + 2);
            let msg = WorkerMsg::Progress {
                generation: if task == Task::Attention {
                    app.attn_gen
                } else {
                    generation
                },
                progress: Progress {
                    task,
                    curve,
                    layer: (rng.below(layers + 2), layers),
                    tokens: (rng.below(len + 2), len),
                    tokens_per_s: wild(rng),
                    eta_s: wild(rng),
                },
            };
            (msg, stale_msg && task != Task::Attention)
        }
        _ => (
            WorkerMsg::Error {
                generation: rng.next() % (app.sweep_gen + app.attn_gen + 2),
                msg: rng
                    .pick(&[
                        "sweep: out of memory",
                        "attention: shape mismatch",
                        "",
                        "a very long error message that will not fit in the status bar at all, no matter how wide the terminal is, because it goes on and on",
                    ])
                    .to_string(),
            },
            false,
        ),
    }
}

/// The state a stale message must not touch (everything the status bar and panels read).
fn fingerprint(app: &App) -> String {
    let c = &app.curves[0];
    format!(
        "{:?} {} {:?} {} {} {:?} {:?} {:?} {:?} {} {:?} {:?} {} {} {}",
        c.acc.windows(),
        c.acc.partial_positions(app.lmax),
        c.live,
        c.total,
        c.done,
        c.secs,
        c.refine,
        c.refined,
        app.attention,
        app.query,
        app.error,
        app.point_at_cursor().map(|p| (p.ppl.to_bits(), p.tokens)),
        app.cursor,
        app.pan,
        app.message,
    )
}

fn check_invariants(app: &App, step: usize) {
    let ctx = || format!("after event {step}");
    assert!(
        app.cursor < app.grid.len(),
        "cursor out of the grid {}",
        ctx()
    );
    let (lo, hi) = chart_x_bounds(&app.grid);
    let x = (app.length() as f64).log2();
    assert!(lo <= x && x <= hi, "cursor off the chart {}", ctx());
    assert!(
        app.head < app.info.n_heads.max(1),
        "head {} {}",
        app.head,
        ctx()
    );
    assert!(
        app.layer < app.info.n_layers.max(1),
        "layer {} {}",
        app.layer,
        ctx()
    );
    assert!(
        (1..=MAX_ZOOM).contains(&app.zoom) && app.zoom.is_power_of_two(),
        "zoom {} {}",
        app.zoom,
        ctx()
    );
    let n = app.attention_len();
    assert!(app.query < n, "query {} >= {n} {}", app.query, ctx());
    let (first, count) = app.view();
    assert!(
        first + count <= n && count >= 1,
        "view {first}+{count} > {n} {}",
        ctx()
    );
    assert_eq!(app.pan, first, "pan outside the view {}", ctx());
    if app.is_alibi() {
        assert_eq!(app.slopes.len(), app.info.n_heads, "slopes {}", ctx());
    }
}

/// The main loop's chart mapping (set before each draw when the layout fits).
fn set_chart_columns(app: &mut App, (w, h): (u16, u16)) {
    if let Some(areas) = ui::layout(Rect::new(0, 0, w, h)) {
        let plot = ui::plot_area(areas.chart);
        app.chart_columns = Some((plot.x, plot.width));
    }
}

fn draw(term: &mut Terminal<TestBackend>, app: &App) {
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
}

/// Runs `events` random events on `app`; returns how many were stale messages.
fn soak(mut app: App, seed: u64, events: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut size = (120, 40);
    let mut term = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();
    let _ = app.start();
    set_chart_columns(&mut app, size);
    draw(&mut term, &app);
    let mut stale_seen = 0;
    for step in 0..events {
        let effects = match rng.below(100) {
            0..=44 => {
                let key = random_key(&mut rng);
                keymap::map_key(key, app.focus, app.help)
                    .map(|a| app.update(a))
                    .unwrap_or_default()
            }
            45..=59 => {
                let m = random_mouse(&mut rng, size);
                on_mouse(&mut app, m)
            }
            60..=64 => {
                size = random_size(&mut rng);
                term = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();
                Vec::new()
            }
            _ => {
                let (msg, is_stale) = random_worker(&mut rng, &app);
                if is_stale {
                    stale_seen += 1;
                    let before_state = fingerprint(&app);
                    let before_screen = term.backend().buffer().clone();
                    app.on_worker(msg.clone());
                    assert_eq!(
                        fingerprint(&app),
                        before_state,
                        "a stale message changed the state (event {step}): {msg:?}"
                    );
                    set_chart_columns(&mut app, size);
                    draw(&mut term, &app);
                    assert!(
                        *term.backend().buffer() == before_screen,
                        "a stale message changed the screen (event {step})"
                    );
                    check_invariants(&app, step);
                    continue;
                }
                app.on_worker(msg);
                Vec::new()
            }
        };
        for fx in effects {
            if let Effect::LoadSlopes(_) = fx {
                let result = match rng.below(3) {
                    0 => Err("cannot read 'soak-slopes.json': no such file".to_string()),
                    1 => Ok(vec![0.25; app.info.n_heads]),
                    _ => Ok(vec![0.5; rng.below(app.info.n_heads + 3)]),
                };
                let _ = app.slopes_loaded(result);
            }
        }
        // The main loop stops on quit; the soak carries on with the same state.
        app.quit = false;
        set_chart_columns(&mut app, size);
        draw(&mut term, &app);
        check_invariants(&app, step);
    }
    stale_seen
}

fn seed() -> u64 {
    env_number("ALIBI_SOAK_SEED").unwrap_or(SEED)
}

#[test]
fn soak_alibi_model_with_compare() {
    let events = env_number("ALIBI_SOAK_EVENTS").map_or(EVENTS, |n| n as usize);
    let app = build(&Setup {
        position: Position::Alibi,
        n_heads: 12,
        n_layers: 3,
        train_len: 16,
        lmax: 256,
        tokens: 900,
        compare: 2,
    });
    let start = Instant::now();
    let stale = soak(app, seed(), events);
    eprintln!(
        "soak: {events} events ({stale} stale messages) in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        stale > events / 50,
        "too few stale messages to test: {stale}"
    );
}

#[test]
fn soak_edge_models() {
    let setups = [
        // No slopes to edit.
        Setup {
            position: Position::Rotary,
            n_heads: 4,
            n_layers: 2,
            train_len: 16,
            lmax: 128,
            tokens: 400,
            compare: 0,
        },
        // A one-length grid, one head, one layer.
        Setup {
            position: Position::Alibi,
            n_heads: 1,
            n_layers: 1,
            train_len: 64,
            lmax: 5,
            tokens: 12,
            compare: 0,
        },
        // Lengths past the attention cap.
        Setup {
            position: Position::Alibi,
            n_heads: 6,
            n_layers: 1,
            train_len: 512,
            lmax: 3000,
            tokens: 6100,
            compare: 1,
        },
    ];
    let start = Instant::now();
    for (i, s) in setups.iter().enumerate() {
        soak(build(s), seed() ^ (i as u64 + 1), EDGE_EVENTS);
    }
    eprintln!(
        "soak: {} events on edge models in {:.2}s",
        setups.len() * EDGE_EVENTS,
        start.elapsed().as_secs_f64()
    );
}

// Regressions the soak found.

fn small_alibi_app() -> App {
    build(&Setup {
        position: Position::Alibi,
        n_heads: 4,
        n_layers: 2,
        train_len: 16,
        lmax: 64,
        tokens: 100,
        compare: 0,
    })
}

/// A window that runs past the end of the stream indexed the byte counts out of bounds.
#[test]
fn window_past_the_end_of_the_stream_does_not_panic() {
    let mut app = small_alibi_app();
    app.on_worker(WorkerMsg::Window {
        generation: app.sweep_gen,
        curve: 0,
        start: 90,
        nll: vec![2.0; 64],
        done: 1,
        total: 1,
        refine: false,
    });
    assert_eq!(app.curves[0].acc.windows(), 1);
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    draw(&mut term, &app);
}

/// An attention map of length 0 made the heatmap divide by zero; a map whose values do not
/// fill `len x len` would index past them. Both are dropped with an error.
#[test]
fn empty_or_short_attention_maps_are_dropped() {
    let mut app = small_alibi_app();
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    for (len, values) in [(0, 0), (3, 8)] {
        app.error = None;
        app.on_worker(WorkerMsg::Attention {
            generation: app.attn_gen,
            map: AttentionMap {
                len,
                layer: 0,
                head: 0,
                probs: vec![0.5; values],
            },
        });
        assert!(app.attention.is_none());
        assert!(app.error.as_deref().unwrap().contains("dropped"));
        draw(&mut term, &app);
    }
}

/// The TUI's writers in a hostile folder: random keys with many `S` and `w` presses, while the
/// slopes file and the export names are pointed (by path or symbolic link) at the model's files
/// and the text. Every write goes through the main loop's own effect handler; at the end no
/// input has changed, and the writes that were allowed did happen.
#[test]
fn soak_writers_never_replace_an_input() {
    use alibi_explorer::tui::apply_file_effect;
    use alibi_explorer::tui::export::export_files;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    let inputs: Vec<std::path::PathBuf> = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .map(|n| model.join(n))
        .chain(std::iter::once(dir.path().join("text.txt")))
        .collect();
    for (i, p) in inputs.iter().enumerate() {
        std::fs::write(p, format!("input {i}")).unwrap();
    }
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut app = build(&Setup {
        position: Position::Alibi,
        n_heads: 4,
        n_layers: 2,
        train_len: 16,
        lmax: 128,
        tokens: 400,
        compare: 0,
    });
    app.inputs = vec![
        ("--model".into(), model.clone()),
        ("--text".into(), inputs[3].clone()),
    ];
    let _ = app.start();
    let mut rng = Rng::new(seed());
    let key = |c: char| KeyEvent {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    };
    let (mut saved, mut exported) = (0, 0);
    for step in 0..600 {
        let k = match rng.below(10) {
            0..=2 => key('S'),
            3..=5 => key('w'),
            _ => random_key(&mut rng),
        };
        // Point the slopes file somewhere: an input, a link to one, or a fresh file.
        let target = &inputs[rng.below(inputs.len())];
        app.slopes_file = match rng.below(3) {
            0 => target.clone(),
            1 => {
                let link = out.join(format!("link-{step}.json"));
                std::os::unix::fs::symlink(target, &link).unwrap();
                link
            }
            _ => out.join(format!("slopes-{step}.json")),
        };
        let effects = keymap::map_key(k, app.focus, app.help)
            .map(|a| app.update(a))
            .unwrap_or_default();
        for fx in effects {
            if let Effect::Export(e) = &fx {
                // Half the time the export's names already exist as links to inputs.
                if rng.below(2) == 0 {
                    for f in export_files(&out, e) {
                        let _ = std::fs::remove_file(&f);
                        std::os::unix::fs::symlink(&inputs[rng.below(inputs.len())], &f).unwrap();
                    }
                }
            }
            let was_save = matches!(fx, Effect::SaveSlopes(..));
            let was_export = matches!(fx, Effect::Export(_));
            app.error = None;
            let _ = apply_file_effect(&mut app, fx, &out);
            if app.error.is_none() {
                saved += usize::from(was_save);
                exported += usize::from(was_export);
            }
        }
        app.quit = false;
    }
    for (i, p) in inputs.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(p).unwrap(),
            format!("input {i}"),
            "{}",
            p.display()
        );
    }
    assert!(saved > 10, "too few allowed saves to test: {saved}");
    eprintln!("writers soak: {saved} saves and {exported} exports allowed");
}
