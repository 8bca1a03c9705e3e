//! The worker with a deliberately slow model (a long window scored in chunks): attention requests
//! and slope edits are served while the long sweep runs, progress messages arrive, the superseded
//! sweep stops, and the chunked curve equals the one-pass sweep.

#![allow(clippy::unwrap_used)]

use alibi_explorer::eval::{Control, Protocol, SweepAccumulator, evaluate};
use alibi_explorer::model::config::Config;
use alibi_explorer::model::device::ChosenDevice;
use alibi_explorer::model::init::random_model;
use alibi_explorer::model::load::LoadedModel;
use alibi_explorer::model::transformer::slopes_tensor;
use alibi_explorer::model::{Position, Transformer};
use alibi_explorer::text::Stream;
use alibi_explorer::tui::event::Event;
use alibi_explorer::tui::worker::{Job, ModelSlot, Task, WorkerMsg, WorkerOptions, spawn_with};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const LMAX: usize = 4096;
const CHUNK: usize = 256;
const LAYERS: usize = 8;

fn model() -> Transformer {
    random_model(
        &Config::ours(61, 128, LAYERS, 4, 512, Position::Alibi, 64),
        17,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

fn stream() -> Stream {
    Stream {
        ids: (0..=LMAX as u32).map(|i| (i * 5 + i / 7) % 61).collect(),
        bytes: None,
    }
}

fn start() -> (alibi_explorer::tui::worker::JobSender, Receiver<Event>) {
    let slot = ModelSlot {
        loaded: LoadedModel {
            model: model(),
            tokenizer: None,
            folder: ".".into(),
            name: "slow".into(),
            device: ChosenDevice {
                device: candle_core::Device::Cpu,
                note: "test".into(),
            },
        },
        stream: stream(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let jobs = spawn_with(
        vec![slot],
        tx,
        WorkerOptions {
            chunk_tokens: Some(CHUNK),
        },
    );
    (jobs, rx)
}

fn next(rx: &Receiver<Event>) -> WorkerMsg {
    match rx
        .recv_timeout(Duration::from_secs(300))
        .expect("a worker message")
    {
        Event::Worker(WorkerMsg::Error { msg, .. }) => panic!("worker error: {msg}"),
        Event::Worker(m) => m,
        other => panic!("unexpected event {other:?}"),
    }
}

fn sweep(generation: u64, slopes: Option<Vec<f64>>) -> Job {
    Job::Sweep {
        generation,
        curve: 0,
        slopes,
        lmax: LMAX,
    }
}

fn attention(generation: u64, layer: usize, slopes: Option<Vec<f64>>) -> Job {
    Job::Attention {
        generation,
        len: 64,
        layer,
        head: 1,
        slopes,
    }
}

#[test]
fn attention_is_served_during_a_long_sweep_with_progress_and_the_curve_is_exact() {
    let (jobs, rx) = start();
    jobs.send(sweep(0, None)).unwrap();
    let s = stream();
    let mut acc = SweepAccumulator::new(LMAX);
    let mut pieces = 0;
    let mut progress = Vec::new();
    let mut maps = Vec::new();
    let mut asked = 0;
    loop {
        match next(&rx) {
            WorkerMsg::WindowPart {
                start,
                len,
                offset,
                nll,
                done,
                total,
                ..
            } => {
                assert_eq!((len, total), (LMAX, 1));
                assert_eq!(offset, pieces * CHUNK, "pieces arrive in order");
                assert_eq!(done, usize::from(offset + nll.len() == LMAX));
                pieces += 1;
                acc.add_part(&s, start, len, offset, &nll);
                // While the window is under way: a map of a deep layer, then of another.
                if pieces == 1 || pieces == 4 {
                    asked += 1;
                    jobs.send(attention(asked, LAYERS - asked as usize, None))
                        .unwrap();
                }
            }
            WorkerMsg::Progress { progress: p, .. } => progress.push(p),
            WorkerMsg::Attention { generation, map } => {
                assert_eq!(map.len, 64);
                maps.push((generation, pieces));
            }
            WorkerMsg::SweepDone { refine: false, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pieces, LMAX / CHUNK);
    // Both maps came while the window still had pieces to go.
    assert_eq!(maps.len(), 2, "{maps:?}");
    assert!(maps.iter().all(|&(_, at)| at < LMAX / CHUNK), "{maps:?}");
    // Progress: the sweep's window, positions and layers within range, moving forward.
    let sweeps: Vec<_> = progress.iter().filter(|p| p.task == Task::Sweep).collect();
    assert!(!sweeps.is_empty(), "progress messages arrive");
    for p in &sweeps {
        assert_eq!(p.tokens.1, LMAX);
        assert!(p.tokens.0 < LMAX && p.layer.0 <= LAYERS && p.layer.1 == LAYERS);
        assert!(p.tokens_per_s > 0.0 && p.eta_s >= 0.0);
    }
    assert!(sweeps.windows(2).all(|w| w[0].tokens.0 <= w[1].tokens.0));
    // The curve from the pieces is the one-pass sweep's.
    let lengths = [8, 100, 1000, LMAX];
    let want = evaluate(
        &model(),
        &s,
        &lengths,
        Protocol::Sweep,
        None,
        &Control::default(),
    )
    .unwrap();
    for (g, w) in acc.points(&lengths).iter().zip(&want.points) {
        assert_eq!(g.tokens, w.tokens);
        assert!((g.nll - w.nll).abs() < 1e-5, "{} vs {}", g.nll, w.nll);
    }
}

#[test]
fn a_slope_edit_during_a_long_sweep_is_answered_and_the_old_sweep_stops() {
    let (jobs, rx) = start();
    jobs.send(sweep(0, None)).unwrap();
    let new_slopes = vec![0.5, 0.05, 0.01, 0.0];
    let s = stream();
    let mut acc = SweepAccumulator::new(LMAX);
    let mut old_pieces = 0;
    let mut map_before_new_pieces = None;
    let mut new_pieces = 0;
    loop {
        match next(&rx) {
            WorkerMsg::WindowPart { generation: 0, .. } => {
                old_pieces += 1;
                if old_pieces == 2 {
                    // The edit: a new sweep and attention with the new slopes, as the app sends.
                    jobs.send(sweep(1, Some(new_slopes.clone()))).unwrap();
                    jobs.send(attention(7, 3, Some(new_slopes.clone())))
                        .unwrap();
                }
            }
            WorkerMsg::WindowPart {
                generation: 1,
                start,
                len,
                offset,
                nll,
                ..
            } => {
                new_pieces += 1;
                acc.add_part(&s, start, len, offset, &nll);
            }
            WorkerMsg::Attention { generation, .. } => {
                assert_eq!(generation, 7);
                map_before_new_pieces.get_or_insert(new_pieces);
            }
            WorkerMsg::SweepDone { generation, .. } => {
                assert_eq!(generation, 1, "the superseded sweep never finishes");
                break;
            }
            WorkerMsg::Progress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        old_pieces < LMAX / CHUNK,
        "the old sweep stopped: {old_pieces}"
    );
    assert_eq!(map_before_new_pieces, Some(0), "the map came first");
    assert_eq!(new_pieces, LMAX / CHUNK);
    let slopes = slopes_tensor(&new_slopes, &candle_core::Device::Cpu).unwrap();
    let want = evaluate(
        &model(),
        &s,
        &[64, LMAX],
        Protocol::Sweep,
        Some(&slopes),
        &Control::default(),
    )
    .unwrap();
    for (g, w) in acc.points(&[64, LMAX]).iter().zip(&want.points) {
        assert!((g.nll - w.nll).abs() < 1e-5, "{} vs {}", g.nll, w.nll);
    }
}
