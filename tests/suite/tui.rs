//! TUI tests without a terminal: App updates driven by actions and worker messages, whole screens
//! rendered into a `TestBackend`, colours checked on the buffer, and the real worker end to end.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::Position;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, Effect, Metric, ModelInfo, length_grid};
use alibi_explorer::tui::keymap::{Action, Focus};
use alibi_explorer::tui::palette::PANEL_BG;
use alibi_explorer::tui::ui::{TOKENIZER_NOTICE, layout, plot_area};
use alibi_explorer::tui::worker::{AttentionMap, Job, WorkerMsg};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::Color;

fn info(position: Position) -> ModelInfo {
    ModelInfo {
        name: "tiny".into(),
        arch: "alibi-explorer".into(),
        position,
        train_len: 16,
        n_layers: 2,
        n_heads: 4,
        device: "cpu".into(),
        device_note: "test".into(),
        dtype: "f32".into(),
        slopes: (position == Position::Alibi).then(|| alibi_explorer::alibi::paper_slopes(4)),
    }
}

fn stream(n: usize) -> Stream {
    Stream {
        ids: (0..n as u32).map(|i| i % 50).collect(),
        bytes: None,
    }
}

fn app(position: Position) -> App {
    let s = stream(600);
    let text = (0..600).map(|i| format!("t{i}")).collect();
    App::new(
        info(position),
        vec!["base (sinusoidal)".into()],
        vec![s.clone(), s],
        text,
        256,
        "slopes.json".into(),
    )
}

fn screen(app: &App, w: u16, h: u16) -> (String, ratatui::buffer::Buffer) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
    let buf = term.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..h {
        for x in 0..w {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    (s, buf)
}

/// A window of curve 0, as the worker sends it.
fn window(
    generation: u64,
    start: usize,
    nll: Vec<f32>,
    (done, total): (usize, usize),
    refine: bool,
) -> WorkerMsg {
    WorkerMsg::Window {
        generation,
        curve: 0,
        start,
        nll,
        done,
        total,
        refine,
    }
}

fn feed_sweep(app: &mut App, curve: usize, generation: u64, scale: f32) {
    let total = 600 / 256;
    for w in 0..total {
        let nll: Vec<f32> = (0..256)
            .map(|p| scale * (3.0 + 2.0 / (1.0 + p as f32 / 8.0)))
            .collect();
        app.on_worker(WorkerMsg::Window {
            generation,
            curve,
            start: w * 256,
            nll,
            done: w + 1,
            total,
            refine: false,
        });
    }
    app.on_worker(WorkerMsg::SweepDone {
        generation,
        curve,
        secs: 0.5,
        refine: false,
    });
}

#[test]
fn grid_includes_train_len_and_lmax() {
    let g = length_grid(2048, 128);
    assert_eq!(g[0], 8);
    assert_eq!(*g.last().unwrap(), 2048);
    assert!(g.contains(&128));
    assert!(g.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(length_grid(5, 128), vec![5]);
}

#[test]
fn start_requests_every_sweep_and_attention() {
    let mut a = app(Position::Alibi);
    let fx = a.start();
    let sweeps = fx
        .iter()
        .filter(|f| matches!(f, Effect::Job(Job::Sweep { .. })))
        .count();
    assert_eq!(sweeps, 2);
    assert!(
        fx.iter()
            .any(|f| matches!(f, Effect::Job(Job::Attention { len: 16, .. }))),
        "{fx:?}"
    );
    // Every curve is refined too, after all the sweeps.
    let refines: Vec<usize> = fx
        .iter()
        .filter_map(|f| match f {
            Effect::Job(Job::Refine {
                curve,
                lmax: 256,
                min_len: 8,
                done: 0,
                ..
            }) => Some(*curve),
            _ => None,
        })
        .collect();
    assert_eq!(refines, vec![0, 1]);
    let last_sweep = fx
        .iter()
        .rposition(|f| matches!(f, Effect::Job(Job::Sweep { .. })))
        .unwrap();
    let first_refine = fx
        .iter()
        .position(|f| matches!(f, Effect::Job(Job::Refine { .. })))
        .unwrap();
    assert!(last_sweep < first_refine);
    assert_eq!(a.length(), 16, "cursor starts at the training length");
}

#[test]
fn cursor_moves_fine_and_coarse_and_requests_attention() {
    let mut a = app(Position::Alibi);
    let l0 = a.length();
    let fx = a.update(Action::MoveLength(16));
    assert_eq!(a.length(), 2 * l0, "an octave up");
    assert!(matches!(
        fx.as_slice(),
        [Effect::Job(Job::Attention { len: 32, .. })]
    ));
    a.update(Action::MoveLength(-1));
    assert!(a.length() < 32 && a.length() > 16);
    a.update(Action::LengthEnd(true));
    assert_eq!(a.length(), 256);
    assert!(
        a.update(Action::MoveLength(1)).is_empty(),
        "no job when the cursor cannot move"
    );
    a.update(Action::LengthTrain);
    assert_eq!(a.length(), 16);
}

#[test]
fn slope_edits_restart_the_sweep_and_keep_the_previous_curve() {
    let mut a = app(Position::Alibi);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    let before = a.point_at_cursor().unwrap();
    let fx = a.update(Action::NextPreset);
    assert_eq!(a.slopes_label, "preset geometric");
    assert!(fx.iter().any(|f| matches!(
        f,
        Effect::Job(Job::Sweep {
            generation: 1,
            curve: 0,
            ..
        })
    )));
    assert!(a.previous.is_some());
    assert!(a.point_at_cursor().is_none(), "the current curve restarts");
    // A stale window from generation 0 is dropped; generation 1 is kept.
    a.on_worker(window(0, 0, vec![9.0; 256], (1, 2), false));
    assert!(a.point_at_cursor().is_none());
    feed_sweep(&mut a, 0, 1, 1.1);
    let after = a.point_at_cursor().unwrap();
    assert!(after.nll > before.nll);
    // Per-head edits and scale.
    a.update(Action::Head(1));
    a.update(Action::ScaleHead(2.0));
    assert!((a.slopes[1] - 2.0 * alibi_explorer::alibi::paper_slopes(4)[1]).abs() < 1e-12);
    assert_eq!(a.slopes_label, "custom");
    a.update(Action::ScaleAll(0.5));
    assert!((a.slopes[0] - 0.5 * 0.25).abs() < 1e-12);
    a.update(Action::ResetSlopes);
    assert_eq!(a.slopes, alibi_explorer::alibi::paper_slopes(4));
    // A/B swap returns to the edited slopes.
    a.update(Action::SwapAB);
    assert!((a.slopes[0] - 0.125).abs() < 1e-12);
    // Save and load go through effects.
    assert!(
        matches!(a.update(Action::SaveSlopes).as_slice(), [Effect::SaveSlopes(_, s)] if s.len() == 4)
    );
    let fx = a.slopes_loaded(Ok(vec![0.1; 4]));
    assert!(!fx.is_empty());
    assert_eq!(a.slopes, vec![0.1; 4]);
    a.slopes_loaded(Ok(vec![0.1; 3]));
    assert!(a.error.as_ref().unwrap().contains("3 slopes"));
}

#[test]
fn non_alibi_models_refuse_slope_edits() {
    let mut a = app(Position::Sinusoidal);
    assert!(a.update(Action::NextPreset).is_empty());
    assert!(a.error.as_ref().unwrap().contains("sinusoidal"));
    let (s, _) = screen(&a, 160, 48);
    assert!(s.contains("no ALiBi slopes"), "{s}");
}

#[test]
fn attention_messages_of_old_generations_are_dropped() {
    let mut a = app(Position::Alibi);
    a.start();
    a.update(Action::Layer(1));
    let old = AttentionMap {
        len: 16,
        layer: 0,
        head: 0,
        probs: vec![0.0; 256],
    };
    a.on_worker(WorkerMsg::Attention {
        generation: 1,
        map: old,
    });
    assert!(a.attention.is_none());
    let generation = a.attn_gen;
    let mut probs = vec![0.0f32; 256];
    for q in 0..16 {
        for k in 0..=q {
            probs[q * 16 + k] = 1.0 / (q + 1) as f32;
        }
    }
    a.on_worker(WorkerMsg::Attention {
        generation,
        map: AttentionMap {
            len: 16,
            layer: 1,
            head: 0,
            probs,
        },
    });
    assert!(a.attention.is_some());
    a.update(Action::Focus(false));
    assert_eq!(a.focus, Focus::Attention);
    a.update(Action::Query(100));
    assert_eq!(a.query, 15);
    let top = a.top_attended(3);
    assert_eq!(top.len(), 3);
    assert!((top[0].1 - 1.0 / 16.0).abs() < 1e-6);
    a.update(Action::Zoom(true));
    assert_eq!(a.view(), (8, 8), "zoom follows the query");
}

#[test]
fn whole_screen_shows_every_panel_and_the_numbers() {
    let mut a = app(Position::Alibi);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    feed_sweep(&mut a, 1, 0, 1.3);
    let generation = a.attn_gen;
    let probs: Vec<f32> = (0..256)
        .map(|i| {
            if i % 16 <= i / 16 {
                1.0 / (i / 16 + 1) as f32
            } else {
                0.0
            }
        })
        .collect();
    a.on_worker(WorkerMsg::Attention {
        generation,
        map: AttentionMap {
            len: 16,
            layer: 0,
            head: 0,
            probs,
        },
    });
    let (s, buf) = screen(&a, 200, 60);
    for needle in [
        "Perplexity vs input length",
        "extrapolation →",
        "Slopes · model",
        "ALiBi bias per head · length 16",
        "Attention · layer 0 head 0 · length 16",
        "length 16 (1.00x train)",
        "sweep done",
        "base (sinusoidal)",
        "h0 m=0.250",
        "reach",
    ] {
        assert!(s.contains(needle), "missing '{needle}' in:\n{s}");
    }
    let p = a.point_at_cursor().unwrap();
    assert!(s.contains(&format!("ppl {:.2}", p.ppl)), "{s}");
    // The heatmap uses half blocks with viridis colours (truecolor or 256-colour).
    let mut heat_cells = 0;
    for y in 0..60 {
        for x in 100..200 {
            let c = &buf[(x, y)];
            if c.symbol() == "▀" && matches!(c.fg, Color::Rgb(..) | Color::Indexed(..)) {
                heat_cells += 1;
            }
        }
    }
    assert!(heat_cells > 50, "{heat_cells}");
    // Moving the cursor changes the status line's length and perplexity.
    a.update(Action::MoveLength(16));
    let (s2, _) = screen(&a, 200, 60);
    assert!(s2.contains("length 32 (2.00x train)"));
    let p2 = a.point_at_cursor().unwrap();
    assert!(s2.contains(&format!("ppl {:.2}", p2.ppl)));
    assert_ne!(format!("{:.2}", p.ppl), format!("{:.2}", p2.ppl));
}

#[test]
fn help_overlay_and_small_terminal() {
    let mut a = app(Position::Alibi);
    a.update(Action::ToggleHelp);
    let (s, _) = screen(&a, 120, 40);
    assert!(
        s.contains("Keys") && s.contains("jump to the training length"),
        "{s}"
    );
    let (s, _) = screen(&a, 60, 20);
    assert!(s.contains("terminal too small: 60x20"), "{s}");
}

#[test]
fn colours_fall_back_to_256() {
    let mut a = app(Position::Alibi);
    a.truecolor = false;
    let (_, buf) = screen(&a, 160, 48);
    let any_rgb = buf
        .content()
        .iter()
        .any(|c| matches!(c.fg, Color::Rgb(..)) || matches!(c.bg, Color::Rgb(..)));
    assert!(!any_rgb, "truecolor used although disabled");
}

#[test]
fn mouse_click_on_the_chart_moves_the_cursor() {
    let mut a = app(Position::Alibi);
    // What the main loop sets from the layout: plot columns 10..110.
    a.chart_columns = Some((10, 100));
    a.update(Action::LengthAtColumn(109));
    assert_eq!(a.length(), 256);
    a.update(Action::LengthAtColumn(10));
    assert_eq!(a.length(), 8);
    a.update(Action::LengthAtColumn(200));
    assert_eq!(a.length(), 8, "clicks outside the plot are ignored");
}

#[test]
fn refinement_windows_fill_short_lengths_and_show_progress() {
    let mut a = app(Position::Alibi);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    // The cursor is at 16: two 256-windows give 2 x 16 tokens.
    assert_eq!(a.point_at_cursor().unwrap().tokens, 2 * 16);
    let (s, _) = screen(&a, 160, 48);
    assert!(s.contains("sweep done in 0.5s"), "{s}");
    // Refinement windows of 128 (4 of them over 600 tokens) now serve length 16.
    for w in 0..4 {
        a.on_worker(window(0, w * 128, vec![2.0; 128], (w + 1, 10), true));
    }
    let p = a.point_at_cursor().unwrap();
    assert_eq!(p.tokens, 4 * 16);
    assert!((p.nll - 2.0).abs() < 1e-9, "{}", p.nll);
    assert_eq!(
        a.progress(),
        (2, 2),
        "the sweep's own progress is unchanged"
    );
    let (s, _) = screen(&a, 160, 48);
    assert!(s.contains("refining short lengths 4/10"), "{s}");
    // The longest length still comes from the sweep; a stale refinement is dropped after new slopes.
    a.update(Action::LengthEnd(true));
    assert_eq!(a.point_at_cursor().unwrap().tokens, 2 * 256);
    a.update(Action::NextPreset);
    a.on_worker(window(0, 0, vec![2.0; 128], (5, 10), true));
    assert!(a.point_at_cursor().is_none());
    for refine in [false, true] {
        a.on_worker(WorkerMsg::SweepDone {
            generation: 1,
            curve: 0,
            secs: 0.1,
            refine,
        });
    }
    assert_eq!(a.curves[0].refined, Some(0.1));
    let (s, _) = screen(&a, 160, 48);
    assert!(s.contains("refined in 0.1s"), "{s}");
}

#[test]
fn the_worker_sweeps_then_refines_and_new_slopes_cancel_the_old_refinement() {
    use alibi_explorer::eval::{Control, Protocol, SweepAccumulator, evaluate};
    use alibi_explorer::model::config::Config;
    use alibi_explorer::model::device::ChosenDevice;
    use alibi_explorer::model::init::random_model;
    use alibi_explorer::model::load::LoadedModel;
    use alibi_explorer::tui::event::Event;
    use alibi_explorer::tui::worker::{ModelSlot, refine_plan, spawn};
    use std::time::Duration;

    let model = || {
        random_model(
            &Config::ours(50, 16, 2, 4, 32, Position::Alibi, 8),
            5,
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let s = stream(200);
    let slot = ModelSlot {
        loaded: LoadedModel {
            model: model(),
            tokenizer: None,
            folder: ".".into(),
            name: "tiny".into(),
            device: ChosenDevice {
                device: candle_core::Device::Cpu,
                note: "test".into(),
            },
        },
        stream: s.clone(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let jobs = spawn(vec![slot], tx);
    let sweep = |generation| Job::Sweep {
        generation,
        curve: 0,
        slopes: None,
        lmax: 32,
    };
    let refine = |generation| Job::Refine {
        generation,
        curve: 0,
        slopes: None,
        lmax: 32,
        min_len: 4,
        done: 0,
    };
    jobs.send(sweep(0)).unwrap();
    jobs.send(refine(0)).unwrap();
    let mut acc = SweepAccumulator::new(32);
    let mut refine_windows = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Worker(WorkerMsg::Window {
                start, nll, refine, ..
            }) => {
                refine_windows += usize::from(refine);
                acc.add(&s, start, &nll);
            }
            Event::Worker(WorkerMsg::SweepDone { refine: true, .. }) => break,
            Event::Worker(WorkerMsg::Error { msg, .. }) => panic!("{msg}"),
            _ => {}
        }
    }
    assert_eq!(acc.windows_of(32), s.windows(32));
    assert_eq!(refine_windows, refine_plan(200, 32, 4).len());
    // Lengths 16, 8 and 4 are now exactly the non-overlapping protocol over the whole text.
    let non = evaluate(
        &model(),
        &s,
        &[4, 8, 16],
        Protocol::NonOverlap,
        None,
        &Control::default(),
    )
    .unwrap();
    for (got, want) in acc.points(&[4, 8, 16]).iter().zip(&non.points) {
        assert_eq!(got.tokens, want.tokens);
        assert!((got.nll - want.nll).abs() < 1e-5, "{got:?} vs {want:?}");
    }

    // New slopes while refining: the old refinement stops, the new sweep runs, then its refinement.
    jobs.send(sweep(1)).unwrap();
    jobs.send(refine(1)).unwrap();
    jobs.send(sweep(2)).unwrap();
    jobs.send(refine(2)).unwrap();
    let mut done = Vec::new();
    while done.last() != Some(&(2, true)) {
        if let Event::Worker(WorkerMsg::SweepDone {
            generation, refine, ..
        }) = rx.recv_timeout(Duration::from_secs(60)).unwrap()
        {
            done.push((generation, refine));
        }
    }
    assert_eq!(done.last(), Some(&(2, true)));
    assert!(
        !done.contains(&(1, true)),
        "generation 1's refinement was superseded: {done:?}"
    );
}

#[test]
fn max_tokens_limits_every_stream_and_the_chart() {
    use alibi_explorer::tui::{TuiSettings, prepare};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = |max_tokens| TuiSettings {
        model: root.join("assets/models/alibi"),
        text: root.join("assets/texts/default.txt"),
        compare: vec![root.join("assets/models/sinusoidal")],
        device: alibi_explorer::model::device::DeviceSpec::Cpu,
        dtype: candle_core::DType::F32,
        max_length: None,
        max_tokens,
        slopes_file: "slopes.json".into(),
        recipes: Vec::new(),
    };
    let (app, slots) = prepare(&settings(Some(1000))).unwrap();
    assert_eq!(
        app.lmax, 999,
        "the chart stops where the shortened text does"
    );
    assert_eq!(slots.len(), 2);
    for (slot, curve) in slots.iter().zip(&app.curves) {
        assert_eq!(slot.stream.ids.len(), 1000);
        assert_eq!(curve.stream.ids.len(), 1000);
        assert_eq!(slot.stream.bytes.as_ref().map(Vec::len), Some(1000));
    }
    assert_eq!(app.token_text.len(), 1000);
    let (full, _) = prepare(&settings(None)).unwrap();
    assert_eq!(
        full.lmax,
        alibi_explorer::tui::DEFAULT_EXTRAPOLATION * full.info.train_len,
        "16 x train_len of the default model by default"
    );
    let err = prepare(&settings(Some(5))).err().unwrap().to_string();
    assert!(err.contains("raise --max-tokens"), "{err}");
    let err = prepare(&settings(Some(1))).err().unwrap().to_string();
    assert!(err.contains("--max-tokens must be at least 2"), "{err}");
}

#[test]
fn esc_closes_what_is_open_before_it_quits() {
    use alibi_explorer::tui::keymap::{Focus, map_key};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
    let mut a = app(Position::Alibi);
    a.update(Action::Enlarge);
    assert!(a.enlarged);
    let action = map_key(esc, Focus::Bias, false).unwrap();
    a.update(action);
    assert!(!a.enlarged && !a.quit, "Esc closes the enlarged view");
    a.update(Action::ToggleHelp);
    a.update(map_key(esc, Focus::Bias, a.help).unwrap());
    assert!(!a.help && !a.quit, "Esc closes the help");
    a.update(map_key(esc, Focus::Bias, a.help).unwrap());
    assert!(a.quit, "Esc quits when nothing is open");
}

#[test]
fn slope_edits_that_leave_the_valid_range_are_refused() {
    let mut a = app(Position::Alibi);
    // Doubling every slope until it no longer fits f32: the edit that would overflow is refused
    // and the slopes stay finite.
    let mut refused = false;
    for _ in 0..200 {
        let before = a.slopes.clone();
        let fx = a.update(Action::ScaleAll(2.0));
        if fx.is_empty() {
            refused = true;
            assert_eq!(a.slopes, before);
            let e = a.error.clone().unwrap_or_default();
            assert!(e.contains("slopes unchanged") && e.contains("f32"), "{e}");
            break;
        }
    }
    assert!(refused, "scaling never hit the f32 limit");
    assert!(a.slopes.iter().all(|m| (*m as f32).is_finite()));
    // A loaded file with a negative slope is refused too.
    let before = a.slopes.clone();
    assert!(a.slopes_loaded(Ok(vec![0.5, -0.5, 0.25, 0.125])).is_empty());
    assert_eq!(a.slopes, before);
    assert!(a.error.clone().unwrap_or_default().contains("negative"));
    // ... and one with too few slopes.
    assert!(a.slopes_loaded(Ok(vec![0.5])).is_empty());
}

/// An app over the given streams (main model first, then one compare model each).
fn app_with(streams: Vec<Stream>) -> App {
    let text = (0..600).map(|i| format!("t{i}")).collect();
    let labels = (1..streams.len()).map(|i| format!("other{i}")).collect();
    App::new(
        info(Position::Alibi),
        labels,
        streams,
        text,
        256,
        "slopes.json".into(),
    )
}

fn with_attention(a: &mut App) {
    let generation = a.attn_gen;
    let probs: Vec<f32> = (0..256)
        .map(|i| {
            if i % 16 <= i / 16 {
                1.0 / (i / 16 + 1) as f32
            } else {
                0.0
            }
        })
        .collect();
    a.on_worker(WorkerMsg::Attention {
        generation,
        map: AttentionMap {
            len: 16,
            layer: 0,
            head: 0,
            probs,
        },
    });
}

fn cells(buf: &ratatui::buffer::Buffer, r: Rect) -> Vec<(u16, u16, &ratatui::buffer::Cell)> {
    let mut v = Vec::new();
    for y in r.top()..r.bottom() {
        for x in r.left()..r.right() {
            v.push((x, y, &buf[(x, y)]));
        }
    }
    v
}

#[test]
fn the_masked_future_is_blank_in_the_heatmap_and_the_bias_matrices() {
    for truecolor in [true, false] {
        for enlarged in [false, true] {
            let mut a = app(Position::Alibi);
            a.truecolor = truecolor;
            a.enlarged = enlarged;
            a.start();
            with_attention(&mut a);
            let (w, h) = (200, 60);
            let (_, buf) = screen(&a, w, h);
            let areas = layout(Rect::new(0, 0, w, h)).unwrap();
            let palette_colour = |c: Color| {
                if truecolor {
                    matches!(c, Color::Rgb(..))
                } else {
                    matches!(c, Color::Indexed(..))
                }
            };
            for (name, area) in [("bias", areas.bias), ("attention", areas.attention)] {
                let (mut upper, mut lower, mut blank) = (0, 0, 0);
                let mut last_was_pixel = false;
                for (x, y, c) in cells(&buf, area) {
                    let at =
                        format!("{name} ({x},{y}), truecolor {truecolor}, enlarged {enlarged}");
                    match c.symbol() {
                        // A glyph in Reset would show in the terminal's default colour.
                        "▀" => {
                            upper += 1;
                            assert!(palette_colour(c.fg) || c.fg == Color::White, "{at}: {c:?}");
                            assert!(
                                palette_colour(c.bg) || c.bg == Color::White || c.bg == PANEL_BG,
                                "{at}: {c:?}"
                            );
                        }
                        "▄" => {
                            lower += 1;
                            assert!(palette_colour(c.fg) || c.fg == Color::White, "{at}: {c:?}");
                            assert_eq!(c.bg, PANEL_BG, "{at}: the masked upper half");
                        }
                        " " if last_was_pixel => {
                            // The masked cells right of the diagonal.
                            blank += 1;
                            assert_eq!((c.fg, c.bg), (PANEL_BG, PANEL_BG), "{at}");
                        }
                        _ => {}
                    }
                    last_was_pixel = matches!(c.symbol(), "▀" | "▄");
                }
                assert!(upper > 20 && blank > 0, "{name}: {upper} ▀, {blank} blank");
                if name == "attention" || enlarged {
                    assert!(lower > 0, "{name}: the diagonal has cells masked on top");
                }
            }
        }
    }
}

#[test]
fn curves_that_share_cells_stay_visible_with_their_markers() {
    for truecolor in [true, false] {
        let mut a = app(Position::Alibi);
        a.truecolor = truecolor;
        a.start();
        // The same losses: the two curves fall into the very same cells everywhere.
        feed_sweep(&mut a, 0, 0, 1.0);
        feed_sweep(&mut a, 1, 0, 1.0);
        let (w, h) = (200, 60);
        let (_, buf) = screen(&a, w, h);
        let areas = layout(Rect::new(0, 0, w, h)).unwrap();
        let plot = plot_area(areas.chart);
        let count = |symbol: &str, fg: Color| {
            cells(&buf, plot)
                .iter()
                .filter(|(_, _, c)| c.symbol() == symbol && c.fg == fg)
                .count()
        };
        let main = Color::Cyan;
        let other = Color::Magenta;
        assert!(count("●", main) >= 3, "the main curve's markers");
        assert!(count("▲", other) >= 3, "the compare curve's markers");
        let legend_row = areas.chart.y + 1;
        let legend: String = (areas.chart.x..areas.chart.right())
            .map(|x| buf[(x, legend_row)].symbol().to_string())
            .collect();
        for (mark, colour) in [("━●━", main), ("━▲━", other)] {
            let at = legend
                .find(mark)
                .unwrap_or_else(|| panic!("{mark} in {legend}"));
            let col = areas.chart.x + legend[..at].chars().count() as u16 + 1;
            assert_eq!(buf[(col, legend_row)].fg, colour, "{legend}");
        }
    }
}

fn with_bytes(mut s: Stream, bytes_per_token: u32) -> Stream {
    s.bytes = Some(vec![bytes_per_token; s.ids.len()]);
    s
}

#[test]
fn y_switches_the_chart_and_the_status_bar_to_bits_per_byte() {
    let s = with_bytes(stream(600), 4);
    let mut a = app_with(vec![s.clone(), s]);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    feed_sweep(&mut a, 1, 0, 1.3);
    assert_eq!(a.metric, Metric::TokenPpl);
    let (s, _) = screen(&a, 200, 60);
    assert!(
        s.contains("Perplexity vs input length") && s.contains("   ppl"),
        "{s}"
    );
    let p = a.point_at_cursor().unwrap();
    assert!(s.contains(&format!("ppl {:.2}", p.ppl)), "{s}");
    assert!(a.update(Action::ToggleMetric).is_empty(), "no new work");
    assert_eq!(a.metric, Metric::BitsPerByte);
    let (s, _) = screen(&a, 200, 60);
    assert!(
        s.contains("Bits per byte vs input length") && s.contains("bits/B"),
        "{s}"
    );
    let bpb = p.bits_per_byte.unwrap();
    assert!((bpb - p.nll / std::f64::consts::LN_2 / 4.0).abs() < 1e-9);
    assert!(s.contains(&format!("bits/byte {bpb:.4}")), "{s}");
    // The y labels are bits per byte (around 1.3..2.3 here), no longer perplexities (~10..150).
    let labels: Vec<f64> = s
        .lines()
        .skip(1)
        .filter_map(|l| l.get(3..9).and_then(|t| t.trim().parse().ok()))
        .collect();
    assert!(labels.len() >= 3, "{labels:?}\n{s}");
    assert!(
        labels.iter().all(|&y| (0.5..4.0).contains(&y)),
        "{labels:?}"
    );
    // Then the KL view: nothing differs from the original yet, and the chart says so.
    a.update(Action::ToggleMetric);
    assert_eq!(a.metric, Metric::Kl);
    let (s, _) = screen(&a, 200, 60);
    assert!(s.contains("KL divergence from the original"), "{s}");
    assert!(s.contains("no curve differs from the original"), "{s}");
    a.update(Action::ToggleMetric);
    assert_eq!(a.metric, Metric::TokenPpl);
    let (s, _) = screen(&a, 200, 60);
    assert!(s.contains("Perplexity vs input length"), "{s}");
}

#[test]
fn bits_per_byte_without_byte_counts_shows_a_dash() {
    let mut a = app(Position::Alibi);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    a.update(Action::ToggleMetric);
    let (s, _) = screen(&a, 200, 60);
    assert!(s.contains("bits/byte - ("), "{s}");
    assert!(s.contains("no byte counts for this input"), "{s}");
}

#[test]
fn the_tokenizer_notice_shows_only_when_the_token_streams_differ() {
    let same = with_bytes(stream(600), 4);
    let mut other = with_bytes(stream(600), 4);
    other.ids[7] += 1;
    for (streams, differ) in [
        (vec![same.clone(), same.clone()], false),
        (vec![same.clone(), other], true),
    ] {
        let mut a = app_with(streams);
        assert_eq!(a.tokenizers_differ(), differ);
        a.start();
        feed_sweep(&mut a, 0, 0, 1.0);
        feed_sweep(&mut a, 1, 0, 1.3);
        let (s, _) = screen(&a, 200, 60);
        assert_eq!(s.contains(TOKENIZER_NOTICE), differ, "{s}");
        // In bits per byte the curves compare; the warning goes.
        a.update(Action::ToggleMetric);
        let (s, _) = screen(&a, 200, 60);
        assert!(!s.contains(TOKENIZER_NOTICE), "{s}");
        assert_eq!(s.contains("comparable across tokenizers"), differ, "{s}");
    }
}

#[test]
fn a_long_window_in_pieces_grows_the_curve_with_its_progress_and_provisional_points() {
    use alibi_explorer::tui::worker::{Progress, Task};
    let mut a = app(Position::Alibi);
    // Before anything: no number at the cursor.
    let (text, _) = screen(&a, 160, 45);
    assert!(text.contains("ppl …"), "{text}");
    a.on_worker(WorkerMsg::Progress {
        generation: 0,
        progress: Progress {
            task: Task::Sweep,
            curve: 0,
            layer: (6, 24),
            tokens: (0, 256),
            tokens_per_s: 71.6,
            eta_s: 153.0,
        },
    });
    let (text, _) = screen(&a, 160, 45);
    assert!(
        text.contains("window: 0/256 tok, layer 7/24, 72 tok/s, ETA 2m33s"),
        "{text}"
    );
    // On an 80x24 terminal the first line has no room: the progress leads the second one.
    let (small, _) = screen(&a, 80, 24);
    let last = small.lines().nth(23).unwrap();
    assert!(
        last.starts_with(" window: 0/256 tok, layer 7/24, 72 tok/s, ETA 2m33s"),
        "{small}"
    );
    // The first 64 positions of the first window: lengths up to 64 have numbers, so far.
    let nll: Vec<f32> = (0..256).map(|p| 3.0 + 1.0 / (1.0 + p as f32)).collect();
    a.on_worker(WorkerMsg::WindowPart {
        generation: 0,
        curve: 0,
        start: 0,
        len: 256,
        offset: 0,
        nll: nll[..64].to_vec(),
        done: 0,
        total: 2,
        refine: false,
    });
    let pts = a.curves[0].points(&a.grid).unwrap();
    assert!(
        pts.iter().all(|p| (p.tokens > 0) == (p.length <= 64)),
        "{pts:?}"
    );
    // The cursor (train_len 16) is covered already, provisionally.
    assert_eq!(a.point_at_cursor().map(|p| p.tokens), Some(16));
    assert!(!a.cursor_final());
    a.on_worker(WorkerMsg::WindowPart {
        generation: 0,
        curve: 0,
        start: 0,
        len: 256,
        offset: 64,
        nll: nll[64..].to_vec(),
        done: 1,
        total: 2,
        refine: false,
    });
    assert_eq!(a.curves[0].acc.windows_of(256), 1);
    assert!(
        a.curves[0].live.is_none(),
        "a complete window ends its progress"
    );
    let (text, buf) = screen(&a, 160, 45);
    assert!(text.contains("(16 tok, so far)"), "{text}");
    assert!(text.contains("● so far"), "{text}");
    // Provisional markers are grey, in the chart panel (top rows).
    let grey = (1..20).any(|y| {
        (0..100).any(|x| {
            let c = &buf[(x, y)];
            c.symbol() == "●" && c.fg == ratatui::style::Color::Gray
        })
    });
    assert!(grey, "{text}");
    // A stale piece (an older generation after a slope edit) changes nothing.
    let before = a.curves[0].acc.windows_of(256);
    a.update(alibi_explorer::tui::keymap::Action::ScaleAll(1.25));
    a.on_worker(WorkerMsg::WindowPart {
        generation: 0,
        curve: 0,
        start: 256,
        len: 256,
        offset: 0,
        nll: nll.clone(),
        done: 2,
        total: 2,
        refine: false,
    });
    assert!(!a.curves[0].acc.has_data() && before == 1);
    // After the sweep and its refinement every point is final.
    let generation = a.sweep_gen;
    feed_sweep(&mut a, 0, generation, 1.0);
    assert!(a.curves[0].is_final(256, 8) && !a.curves[0].is_final(8, 8));
    a.on_worker(WorkerMsg::SweepDone {
        generation: a.sweep_gen,
        curve: 0,
        secs: 1.0,
        refine: true,
    });
    assert!(a.cursor_final() && a.curves[0].is_final(8, 8));
    let (text, _) = screen(&a, 160, 45);
    // (The faded previous curve never finished: its points stay "so far" in the legend.)
    assert!(text.contains(", final)"), "{text}");
}

#[test]
fn length_labels_never_run_together_on_a_narrow_chart() {
    let s = stream(600);
    let text = (0..600).map(|i| format!("t{i}")).collect();
    let a = App::new(
        info(Position::Alibi),
        vec![],
        vec![s],
        text,
        16_384,
        "slopes.json".into(),
    );
    for (w, h) in [(80, 24), (100, 30), (200, 60)] {
        let (screen_text, _) = screen(&a, w, h);
        let axis = screen_text
            .lines()
            .find(|l| l.contains(" 8 ") && l.contains("16"))
            .unwrap_or_else(|| panic!("no length axis at {w}x{h}: {screen_text}"));
        for glued in [
            "256512",
            "5121024",
            "10242048",
            "20484096",
            "40968192",
            "819216384",
        ] {
            assert!(!axis.contains(glued), "{w}x{h}: {axis}");
        }
        // The shortest and the longest lengths are always labelled.
        assert!(axis.contains("16384"), "{w}x{h}: {axis}");
    }
}

#[test]
fn the_status_bar_shows_the_compared_models_at_the_cursor() {
    let mut a = app(Position::Alibi);
    a.start();
    feed_sweep(&mut a, 0, 0, 1.0);
    let (s, _) = screen(&a, 200, 60);
    let status = s.lines().nth(58).unwrap().to_string();
    assert!(status.contains("│ base …"), "nothing for it yet: {status}");
    feed_sweep(&mut a, 1, 0, 1.3);
    let compared = a.compared_at_cursor();
    assert_eq!(compared.len(), 1);
    let (name, p, fin) = compared[0];
    assert_eq!(fin, a.curves[1].is_final(a.length(), 8));
    assert!(!fin, "at 16 tokens the point waits for the refinement pass");
    let mark = "~";
    assert_eq!(name, "base", "the name without the position scheme");
    let (own, other) = (a.point_at_cursor().unwrap(), p.unwrap());
    // The compared curve's loss is 1.3x the main one's at every position.
    assert!(
        (other.nll - 1.3 * own.nll).abs() < 1e-4,
        "{own:?} {other:?}"
    );
    let (s, _) = screen(&a, 200, 60);
    let status = s.lines().nth(58).unwrap().to_string();
    assert!(
        status.contains(&format!("│ base {mark}{:.2}", other.ppl)),
        "{status}"
    );
    assert!(
        status.contains(" tok, "),
        "room for the token count: {status}"
    );
    // At the longest length the sweep's windows are final: no `~`.
    a.update(Action::LengthEnd(true));
    let (_, p, fin) = a.compared_at_cursor()[0];
    assert!(fin);
    let (s, _) = screen(&a, 200, 60);
    let status = s.lines().nth(58).unwrap().to_string();
    assert!(
        status.contains(&format!("│ base {:.2}", p.unwrap().ppl)),
        "{status}"
    );
    a.update(Action::LengthTrain);
    // At 80 columns a long name keeps its value and the token count gives way.
    let s1 = stream(600);
    let text = (0..600).map(|i| format!("t{i}")).collect();
    let mut long = App::new(
        info(Position::Alibi),
        vec!["sinusoidal-2x-books (sinusoidal)".into()],
        vec![s1.clone(), s1],
        text,
        256,
        "slopes.json".into(),
    );
    long.start();
    feed_sweep(&mut long, 0, 0, 1.0);
    feed_sweep(&mut long, 1, 0, 1.3);
    let (s, _) = screen(&long, 200, 60);
    assert!(s.lines().nth(58).unwrap().contains(" tok, "), "{s}");
    let (s, _) = screen(&long, 80, 24);
    let status = s.lines().nth(22).unwrap().to_string();
    let want = format!("│ sinusoidal-2x-books {mark}{:.2}", other.ppl);
    assert!(
        status.contains(&want) && !status.contains(" tok, "),
        "{status}"
    );
    // Bits per byte follows the chart's metric.
    let s2 = with_bytes(stream(600), 4);
    let mut b = app_with(vec![s2.clone(), s2]);
    b.start();
    feed_sweep(&mut b, 0, 0, 1.0);
    feed_sweep(&mut b, 1, 0, 1.3);
    b.update(Action::ToggleMetric);
    let bpb = b.compared_at_cursor()[0].1.unwrap().bits_per_byte.unwrap();
    let (s, _) = screen(&b, 200, 60);
    assert!(s.contains(&format!("│ other1 {mark}{bpb:.4}")), "{s}");
}

#[test]
fn the_bias_panel_names_its_white_line_only_past_train_len() {
    let mut a = app(Position::Alibi);
    a.start();
    let white_cells = |buf: &ratatui::buffer::Buffer, w: u16, h: u16| {
        let areas = layout(Rect::new(0, 0, w, h)).unwrap();
        cells(buf, areas.bias)
            .iter()
            .filter(|(_, _, c)| {
                matches!(c.symbol(), "▀" | "▄") && (c.fg == Color::White || c.bg == Color::White)
            })
            .count()
    };
    a.update(Action::LengthTrain);
    let (s, buf) = screen(&a, 200, 60);
    assert!(
        s.contains("ALiBi bias per head · length 16 · colour = e^bias"),
        "{s}"
    );
    assert!(!s.contains("white:"), "{s}");
    assert_eq!(white_cells(&buf, 200, 60), 0, "no line at train_len itself");
    for (w, h) in [(200, 60), (120, 40), (80, 24)] {
        a.update(Action::LengthTrain);
        a.update(Action::MoveLength(16));
        assert_eq!(a.length(), 32);
        let (s, buf) = screen(&a, w, h);
        // The widest panel keeps the colour key; narrower ones keep the line's meaning.
        let want = match w {
            200 => "length 32 · white: i-j = train_len 16 · colour = e^bias",
            120 => "length 32 · white: i-j = train_len 16",
            _ => "bias · white: i-j = 16",
        };
        assert!(s.contains(want), "{w}x{h}:\n{s}");
        if s.contains("too small for every head") {
            // 80x24: the heads only fit one at a time (e), where the line is drawn too.
            a.enlarged = true;
            let (s, buf) = screen(&a, w, h);
            assert!(s.contains("white: i-j = "), "{w}x{h} enlarged:\n{s}");
            assert!(white_cells(&buf, w, h) > 0, "{w}x{h} enlarged:\n{s}");
            a.enlarged = false;
        } else {
            assert!(white_cells(&buf, w, h) > 0, "{w}x{h}: the white line:\n{s}");
        }
    }
    // Models without ALiBi have no bias matrices, hence no line to name.
    let mut b = app(Position::Sinusoidal);
    b.start();
    b.update(Action::MoveLength(16));
    let (s, _) = screen(&b, 200, 60);
    assert!(!s.contains("white:"), "{s}");
}

/// Slopes scaled far past any real model (repeated `*`) keep to their columns: the slope, its
/// reach and the label stay short, and the label carries one factor, not one per key press.
#[test]
fn huge_slopes_keep_to_their_columns_and_one_factor() {
    let mut a = app(Position::Alibi);
    a.focus = Focus::Slopes;
    for _ in 0..300 {
        a.update(Action::ScaleAll(1.25));
    }
    assert_eq!(
        a.slopes_label.matches(" x").count(),
        1,
        "{}",
        a.slopes_label
    );
    assert!(a.slopes_label.chars().count() <= 20, "{}", a.slopes_label);
    for _ in 0..600 {
        a.update(Action::ScaleAll(0.8));
    }
    assert_eq!(
        a.slopes_label.matches(" x").count(),
        1,
        "{}",
        a.slopes_label
    );
    for (w, h) in [(120, 40), (200, 50)] {
        let (text, _) = screen(&a, w, h);
        // No number runs into its neighbour: no run of 12 or more digits anywhere.
        let longest = text
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest < 12, "a {longest}-digit number at {w}x{h}:\n{text}");
    }
    assert_eq!(
        alibi_explorer::tui::app::scaled_label("model x1.25", 1.25),
        "model x1.5625"
    );
    assert_eq!(
        alibi_explorer::tui::app::scaled_label("preset geometric", 2.0),
        "preset geometric x2"
    );
}

/// The TUI's writers (`S` slopes, `w` exports) follow the output rule of every command: a file
/// of a model folder or the text is never replaced, by its own path or through a link.
#[test]
fn tui_writes_never_replace_an_input() {
    use alibi_explorer::tui::check_writes;
    use std::path::PathBuf;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "some text").unwrap();
    let inputs: Vec<(String, PathBuf)> = vec![
        ("--model".into(), model.clone()),
        ("--text".into(), text.clone()),
    ];
    let link = dir.path().join("figure.json");
    std::os::unix::fs::symlink(model.join("tokenizer.json"), &link).unwrap();
    let relative = dir.path().join("model/../model/./config.json");
    for out in [
        model.join("config.json"),
        link.clone(),
        text.clone(),
        relative,
    ] {
        let e = check_writes(&inputs, &[("S (the slopes file)", &out)]).unwrap_err();
        assert!(e.contains("input"), "{}: {e}", out.display());
    }
    // A new file, even inside the model folder, is fine; so is an ordinary file elsewhere.
    check_writes(&inputs, &[("S", &model.join("my-slopes.json"))]).unwrap();
    check_writes(&inputs, &[("w export", &dir.path().join("fig.svg"))]).unwrap();
    assert_eq!(
        std::fs::read_to_string(model.join("config.json")).unwrap(),
        "{}"
    );
}
