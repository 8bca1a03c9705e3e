//! The attention panel's views (issue 13): the `v`/`s`/`d` keys, statistics requested from the
//! worker for the cursor's length first and for the length plot, stale statistics dropped, and
//! every view rendered (symbols and colours) from known statistics; the real worker computes them.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::prior::{log_bins, prior_means};
use alibi_explorer::model::Position;
use alibi_explorer::model::attention_stats::HeadMeans;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, Effect, ModelInfo};
use alibi_explorer::tui::keymap::{Action, Focus, map_key};
use alibi_explorer::tui::palette;
use alibi_explorer::tui::views::{AttnView, Stat};
use alibi_explorer::tui::worker::{Job, StatsResult, WorkerMsg};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
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

fn app(position: Position) -> App {
    let s = Stream {
        ids: (0..600u32).map(|i| i % 50).collect(),
        bytes: None,
    };
    let text = (0..600).map(|i| format!("t{i}")).collect();
    App::new(
        info(position),
        vec![],
        vec![s],
        text,
        256,
        "slopes.json".into(),
    )
}

fn screen(app: &App) -> (String, Buffer) {
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
    let buf = term.backend().buffer().clone();
    let mut s = String::new();
    for y in 0..48 {
        for x in 0..160 {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    (s, buf)
}

/// Statistics where head `h` of layer `l` has mean distance `10 l + h + 1`.
fn stats(len: usize) -> StatsResult {
    let heads = (0..2)
        .flat_map(|l| (0..4).map(move |h| (l, h)))
        .map(|(l, h)| {
            let md = (10 * l + h + 1) as f64;
            HeadMeans {
                queries: len as u64,
                mean_distance: md,
                entropy: 1.0,
                entropy_norm: Some(0.5),
                mass90_distance: 2.0 * md,
                sink_mass: Some(0.1),
                profile: (0..log_bins(len))
                    .map(|b| 0.5f64.powi(b as i32 + 1))
                    .collect(),
            }
        })
        .collect();
    StatsResult {
        len,
        windows: 3,
        heads,
        n_heads: 4,
    }
}

fn stats_jobs(fx: &[Effect]) -> Vec<(u64, usize, bool)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Job(Job::Stats {
                generation,
                len,
                cursor,
                ..
            }) => Some((*generation, *len, *cursor)),
            _ => None,
        })
        .collect()
}

#[test]
fn keys_switch_views_statistics_and_the_prior_difference() {
    let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(
        map_key(key('v'), Focus::Attention, false),
        Some(Action::NextView)
    );
    assert_eq!(
        map_key(key('s'), Focus::Chart, false),
        Some(Action::NextStat)
    );
    assert_eq!(
        map_key(key('d'), Focus::Chart, false),
        Some(Action::TogglePriorDiff)
    );
    let mut a = app(Position::Alibi);
    for want in [
        AttnView::Distance,
        AttnView::Heads,
        AttnView::PositionLoss,
        AttnView::Sensitivity,
        AttnView::Family,
        AttnView::Heatmap,
    ] {
        a.update(Action::NextView);
        assert_eq!(a.view, want);
    }
    a.update(Action::NextStat);
    assert_eq!(a.stat, Stat::Mass90);
    a.update(Action::TogglePriorDiff);
    assert!(a.stat_minus_prior);
}

#[test]
fn statistics_views_request_the_cursor_length_first_then_the_length_plot() {
    let mut a = app(Position::Alibi);
    a.start();
    // The heatmap needs no statistics.
    assert!(stats_jobs(&a.update(Action::MoveLength(1))).is_empty());
    let fx = a.update(Action::NextView);
    let jobs = stats_jobs(&fx);
    let cursor = a.length();
    assert_eq!(jobs[0], (a.sweep_gen, cursor, true), "{jobs:?}");
    let lengths: Vec<usize> = jobs.iter().map(|j| j.1).collect();
    for l in [8, 16, 32, 64, 128, 256] {
        assert!(lengths.contains(&l), "{lengths:?}");
    }
    assert!(jobs[1..].iter().all(|j| !j.2));
    // Asked once: switching views again does not repeat them.
    assert!(stats_jobs(&a.update(Action::NextView)).is_empty());
    // New slopes: a new generation, everything again.
    let fx = a.update(Action::ScaleAll(2.0));
    let jobs = stats_jobs(&fx);
    assert!(!jobs.is_empty() && jobs.iter().all(|j| j.0 == a.sweep_gen));
}

#[test]
fn statistics_of_old_slopes_are_dropped() {
    let mut a = app(Position::Alibi);
    a.update(Action::NextView);
    let old = a.sweep_gen;
    a.update(Action::ScaleAll(2.0));
    let len = a.length();
    a.on_worker(WorkerMsg::Stats {
        generation: old,
        stats: stats(len),
    });
    assert!(a.stats.at(len).is_none(), "a stale result was kept");
    a.on_worker(WorkerMsg::Stats {
        generation: a.sweep_gen,
        stats: stats(len),
    });
    assert!(a.stats.at(len).is_some());
}

/// Cells of `buf` inside the attention panel (bottom right) whose symbol is `sym`.
fn attention_cells(buf: &Buffer, pred: impl Fn(&ratatui::buffer::Cell) -> bool) -> usize {
    let mut n = 0;
    for y in 26..46 {
        for x in 75..159 {
            if pred(&buf[(x, y)]) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn the_distance_view_draws_the_head_over_its_prior() {
    let mut a = app(Position::Alibi);
    a.update(Action::NextView);
    let (s, _) = screen(&a);
    assert!(s.contains("computing attention statistics"), "{s}");
    let len = a.length();
    a.on_worker(WorkerMsg::Stats {
        generation: a.sweep_gen,
        stats: stats(len),
    });
    let (s, buf) = screen(&a);
    assert!(s.contains("Attention by distance · layer 0 head 0"), "{s}");
    assert!(s.contains("ALiBi prior (m = 0.2500)"), "{s}");
    assert!(s.contains("distance i−j"), "{s}");
    let braille = |c: &ratatui::buffer::Cell| {
        c.symbol()
            .chars()
            .any(|ch| ('\u{2801}'..='\u{28ff}').contains(&ch))
    };
    assert!(
        attention_cells(&buf, |c| braille(c) && c.fg == palette::CURRENT) > 5,
        "no measured curve:\n{s}"
    );
    assert!(
        attention_cells(&buf, |c| braille(c) && c.fg == palette::PREVIOUS) > 5,
        "no prior curve:\n{s}"
    );
}

#[test]
fn the_head_grid_colours_each_head_and_plots_the_statistic_vs_length() {
    let mut a = app(Position::Alibi);
    a.truecolor = true;
    a.update(Action::NextView);
    a.update(Action::NextView);
    assert_eq!(a.view, AttnView::Heads);
    for len in [8, 16, 32, 64, 128, 256, a.length()] {
        a.on_worker(WorkerMsg::Stats {
            generation: a.sweep_gen,
            stats: stats(len),
        });
    }
    let (s, buf) = screen(&a);
    assert!(
        s.contains("Head statistics · mean distance (tokens)"),
        "{s}"
    );
    // Every head's value is printed on its colour; the selected one in brackets.
    for v in ["[1.0]", "2.0", "4.0", "11", "14"] {
        assert!(s.contains(v), "missing {v}:\n{s}");
    }
    let rgb_cells = attention_cells(&buf, |c| matches!(c.bg, Color::Rgb(..)));
    assert!(rgb_cells >= 8, "grid not coloured");
    // The extremes use viridis' ends.
    let (r, g, b) = palette::viridis(1.0);
    assert!(attention_cells(&buf, |c| c.bg == Color::Rgb(r, g, b)) > 0);
    assert!(s.contains("ALiBi prior"), "{s}");
    // Statistic minus prior: a diverging map, and the prior difference in the title.
    a.update(Action::TogglePriorDiff);
    let (s, _) = screen(&a);
    assert!(s.contains("mean distance (tokens) − prior"), "{s}");
    let len = a.length();
    let prior = prior_means(a.slopes[0], len).mean_distance;
    let want = alibi_explorer::tui::ui::lineplot::compact(1.0 - prior);
    assert!(s.contains(&format!("[{want}]")), "missing [{want}]:\n{s}");
    // In 256 colours the grid uses indexed colours.
    a.truecolor = false;
    let (_, buf) = screen(&a);
    assert!(attention_cells(&buf, |c| matches!(c.bg, Color::Indexed(..))) >= 8);
    // A model without ALiBi has no prior to subtract.
    let mut r = app(Position::Rotary);
    r.update(Action::NextView);
    r.update(Action::NextView);
    r.update(Action::TogglePriorDiff);
    let (s, _) = screen(&r);
    assert!(s.contains("no ALiBi prior to subtract"), "{s}");
}

#[test]
fn the_loss_by_position_view_draws_every_curve() {
    let mut a = app(Position::Alibi);
    for _ in 0..3 {
        a.update(Action::NextView);
    }
    assert_eq!(a.view, AttnView::PositionLoss);
    let (s, _) = screen(&a);
    assert!(s.contains("waiting for the sweep"), "{s}");
    for w in 0..2 {
        let nll: Vec<f32> = (0..256).map(|p| 3.0 + 2.0 / (1.0 + p as f32)).collect();
        a.on_worker(WorkerMsg::Window {
            generation: a.sweep_gen,
            curve: 0,
            start: w * 256,
            nll,
            done: w + 1,
            total: 2,
            refine: false,
        });
    }
    let (s, buf) = screen(&a);
    assert!(
        s.contains("Loss by position · every pass (windows of 256 and shorter)"),
        "{s}"
    );
    assert!(s.contains("nats/token") && s.contains("2 windows"), "{s}");
    // Two windows: the short positions' bins rest on a handful of tokens and are marked grey.
    assert!(s.contains("grey: bins < 100 tokens"), "{s}");

    let braille = |c: &ratatui::buffer::Cell| {
        c.symbol()
            .chars()
            .any(|ch| ('\u{2801}'..='\u{28ff}').contains(&ch))
    };
    assert!(attention_cells(&buf, |c| braille(c) && c.fg == palette::CURRENT) > 5);
    assert!(attention_cells(&buf, |c| braille(c) && c.fg == ratatui::style::Color::Gray) > 0);
}

#[test]
fn the_worker_computes_statistics_for_the_view() {
    use alibi_explorer::model::config::Config;
    use alibi_explorer::model::device::ChosenDevice;
    use alibi_explorer::model::init::random_model;
    use alibi_explorer::model::load::LoadedModel;
    use alibi_explorer::tui::worker::{ModelSlot, spawn};
    let cfg = Config::ours(50, 16, 2, 4, 32, Position::Alibi, 16);
    let model = random_model(&cfg, 3, &candle_core::Device::Cpu).unwrap();
    let slot = ModelSlot {
        loaded: LoadedModel {
            model,
            tokenizer: None,
            folder: "x".into(),
            name: "tiny".into(),
            device: ChosenDevice {
                device: candle_core::Device::Cpu,
                note: "test".into(),
            },
        },
        stream: Stream {
            ids: (0..400u32).map(|i| (i * 7) % 50).collect(),
            bytes: None,
        },
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let jobs = spawn(vec![slot], tx);
    jobs.send(Job::Stats {
        generation: 4,
        len: 32,
        slopes: None,
        cursor: true,
    })
    .unwrap();
    let got = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap() {
            alibi_explorer::tui::event::Event::Worker(WorkerMsg::Stats { generation, stats }) => {
                break (generation, stats);
            }
            alibi_explorer::tui::event::Event::Worker(WorkerMsg::Error { msg, .. }) => {
                panic!("{msg}")
            }
            _ => {}
        }
    };
    assert_eq!(got.0, 4);
    assert_eq!((got.1.len, got.1.heads.len(), got.1.n_heads), (32, 8, 4));
    assert!(got.1.windows >= 1);
    // Means over 32 queries: distances between 0 and 31.
    for m in &got.1.heads {
        assert_eq!(m.queries, 32 * got.1.windows as u64);
        assert!((0.0..=31.0).contains(&m.mean_distance));
    }
}

#[test]
fn w_exports_the_focused_panel_as_svg_png_and_json() {
    use alibi_explorer::tui::app::{Export, ExportFigure};
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(Position::Alibi);
    // Nothing computed yet: a clear message, no effect.
    assert!(a.update(Action::Export).is_empty());
    assert!(a.error.clone().unwrap().contains("nothing to export yet"));
    for w in 0..2 {
        let nll: Vec<f32> = (0..256).map(|p| 3.0 + 2.0 / (1.0 + p as f32)).collect();
        a.on_worker(WorkerMsg::Window {
            generation: a.sweep_gen,
            curve: 0,
            start: w * 256,
            nll,
            done: w + 1,
            total: 2,
            refine: false,
        });
    }
    let len = a.length();
    a.on_worker(WorkerMsg::Stats {
        generation: a.sweep_gen,
        stats: stats(len),
    });
    let export = |a: &mut App| -> Export {
        match a.update(Action::Export).into_iter().next() {
            Some(Effect::Export(e)) => e,
            other => panic!("no export: {other:?} {:?}", a.error),
        }
    };
    let mut stems = Vec::new();
    // The chart, the slopes, the bias, then every view of the attention panel.
    for focus in 0..4 {
        if focus == 3 {
            a.update(Action::NextView);
            for _ in 0..AttnView::ALL.len() {
                if a.view == AttnView::Sensitivity {
                    let g = a.sensitivity.generation;
                    let lens = a.sensitivity.lengths.clone();
                    let d = |length: usize| alibi_explorer::eval::ablate::Delta {
                        length,
                        tokens: 10,
                        ppl: 5.0,
                        ppl_stderr: 0.1,
                        delta_ppl: 0.5,
                        delta_stderr: 0.1,
                    };
                    for head in [None, Some(0)] {
                        a.on_worker(WorkerMsg::Sensitivity {
                            generation: g,
                            head,
                            variant: 0,
                            deltas: lens.iter().map(|&l| d(l)).collect(),
                            progress: (1, 12),
                        });
                    }
                }
                if a.view == AttnView::Heatmap {
                    // The heatmap: after the worker's map arrives.
                    let n = a.attention_len();
                    a.on_worker(WorkerMsg::Attention {
                        generation: a.attn_gen,
                        map: alibi_explorer::tui::worker::AttentionMap {
                            len: n,
                            layer: 0,
                            head: 0,
                            probs: (0..n * n)
                                .map(|k| {
                                    if k % n <= k / n {
                                        1.0 / (k / n + 1) as f32
                                    } else {
                                        0.0
                                    }
                                })
                                .collect(),
                        },
                    });
                }
                let e = export(&mut a);
                stems.push(e.stem.clone());
                let files = alibi_explorer::tui::export::write_export(dir.path(), &e).unwrap();
                check_files(&files);
                a.update(Action::NextView);
            }
        } else {
            let e = export(&mut a);
            if focus == 2 {
                assert!(matches!(e.figure, ExportFigure::Map(_)));
            }
            stems.push(e.stem.clone());
            let files = alibi_explorer::tui::export::write_export(dir.path(), &e).unwrap();
            check_files(&files);
        }
        a.update(Action::Focus(true));
    }
    let want: Vec<String> = [
        "perplexity",
        "slopes",
        "bias",
        "distance",
        "heads",
        "loss-by-position",
        "sensitivity",
        "family",
        "heatmap",
    ]
    .iter()
    .map(|p| format!("alibi-explorer-{p}-tiny-L{len}"))
    .collect();
    assert_eq!(stems, want);
    a.exported(Ok(vec![dir.path().join("x.svg")]));
    assert!(a.message.contains("exported"));
}

fn check_files(files: &[std::path::PathBuf]) {
    assert_eq!(files.len(), 3);
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "not an SVG"
    );
    let png = std::fs::read(&files[1]).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let _: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[2]).unwrap()).unwrap();
}

#[test]
fn the_sensitivity_view_requests_one_job_and_shows_each_run() {
    use alibi_explorer::eval::ablate::Delta;
    let mut a = app(Position::Alibi);
    a.truecolor = true;
    let mut fx = Vec::new();
    for _ in 0..4 {
        fx = a.update(Action::NextView);
    }
    assert_eq!(a.view, AttnView::Sensitivity);
    let job = fx
        .iter()
        .find_map(|e| match e {
            Effect::Job(Job::Sensitivity(j)) => Some(j.clone()),
            _ => None,
        })
        .expect("a sensitivity job");
    assert_eq!(job.lengths, a.sensitivity_lengths());
    assert_eq!(job.slopes, a.slopes);
    // Asked once for the same slopes and lengths; again (newer) after a slope edit.
    assert!(
        !a.update(Action::ToggleHelp)
            .iter()
            .any(|e| matches!(e, Effect::Job(Job::Sensitivity(_))))
    );
    a.update(Action::ToggleHelp);
    let (s, _) = screen(&a);
    assert!(s.contains("computing the baseline"), "{s}");
    let d = |length: usize, delta_ppl: f64| Delta {
        length,
        tokens: 100,
        ppl: 50.0 + delta_ppl,
        ppl_stderr: 1.0,
        delta_ppl,
        delta_stderr: 0.5,
    };
    let gen_ = job.generation;
    let lens = job.lengths.clone();
    a.on_worker(WorkerMsg::Sensitivity {
        generation: gen_,
        head: None,
        variant: 0,
        deltas: lens.iter().map(|&l| d(l, 0.0)).collect(),
        progress: (0, 12),
    });
    a.on_worker(WorkerMsg::Sensitivity {
        generation: gen_,
        head: Some(0),
        variant: 0,
        deltas: lens.iter().map(|&l| d(l, 12.5)).collect(),
        progress: (1, 12),
    });
    // A stale message (older generation) is dropped.
    a.on_worker(WorkerMsg::Sensitivity {
        generation: gen_ - 1,
        head: Some(1),
        variant: 2,
        deltas: lens.iter().map(|&l| d(l, -3.0)).collect(),
        progress: (2, 12),
    });
    let (s, buf) = screen(&a);
    assert!(s.contains("Slope sensitivity"), "{s}");
    assert!(s.contains("+12.5±0.50"), "{s}");
    assert!(s.contains("1/12 runs"), "{s}");
    assert!(!s.contains("-3.0"), "a stale run was shown:\n{s}");
    // The worst cell is the red end of the diverging map.
    let red = palette::diverging(1.0, true);
    assert!(attention_cells(&buf, |c| c.bg == red) > 0, "{s}");
    let fx = a.update(Action::ScaleAll(2.0));
    let newer = fx.iter().find_map(|e| match e {
        Effect::Job(Job::Sensitivity(j)) => Some(j.generation),
        _ => None,
    });
    assert_eq!(newer, Some(gen_ + 1));
}

#[test]
fn the_worker_streams_the_sensitivity_runs() {
    use alibi_explorer::model::config::Config;
    use alibi_explorer::model::device::ChosenDevice;
    use alibi_explorer::model::init::random_model;
    use alibi_explorer::model::load::LoadedModel;
    use alibi_explorer::tui::event::Event;
    use alibi_explorer::tui::worker::{ModelSlot, SensitivityJob, spawn};
    let cfg = Config::ours(50, 16, 1, 2, 32, Position::Alibi, 16);
    let model = random_model(&cfg, 3, &candle_core::Device::Cpu).unwrap();
    let slot = ModelSlot {
        loaded: LoadedModel {
            model,
            tokenizer: None,
            folder: "x".into(),
            name: "tiny".into(),
            device: ChosenDevice {
                device: candle_core::Device::Cpu,
                note: "test".into(),
            },
        },
        stream: Stream {
            ids: (0..200u32).map(|i| (i * 7) % 50).collect(),
            bytes: None,
        },
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let jobs = spawn(vec![slot], tx);
    jobs.send(Job::Sensitivity(Box::new(SensitivityJob {
        generation: 1,
        slopes: vec![0.5, 0.25],
        lengths: vec![16, 32],
        done: 0,
        baseline: None,
    })))
    .unwrap();
    let mut runs = Vec::new();
    while runs.len() < 7 {
        match rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap() {
            Event::Worker(WorkerMsg::Sensitivity {
                head,
                variant,
                deltas,
                progress,
                ..
            }) => runs.push((head, variant, deltas, progress)),
            Event::Worker(WorkerMsg::Error { msg, .. }) => panic!("{msg}"),
            _ => {}
        }
    }
    // The baseline first (deltas of 0), then 2 heads x 3 variants.
    assert_eq!(runs[0].0, None);
    assert!(runs[0].2.iter().all(|d| d.delta_ppl == 0.0));
    assert_eq!(runs[6].3, (6, 6));
    // Halving head 1 (0.25 -> 0.125) is a real change, at both lengths.
    let half_h1 = runs.iter().find(|r| r.0 == Some(1) && r.1 == 1).unwrap();
    assert_eq!(half_h1.2.len(), 2);
    assert!(half_h1.2.iter().all(|d| d.delta_ppl != 0.0 && d.tokens > 0));
}
