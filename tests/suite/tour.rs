//! The guided tour without a terminal: the file format and its one-line errors, the shipped tour
//! (it parses, every formula it states is one the code is tested against, no known slip), steps
//! setting the app's state through its actions, tasks noticed, live numbers ("computing…" until
//! they exist), and the card drawn beside the panels with the step's panel highlighted.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi;
use alibi_explorer::model::Position;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, ModelInfo};
use alibi_explorer::tui::keymap::{Action, Focus, KEY_HELP, map_key};
use alibi_explorer::tui::tour::card::{TAG, TOUR};
use alibi_explorer::tui::tour::formulas::{FORMULAS, KNOWN_SLIPS};
use alibi_explorer::tui::tour::live::{COMPUTING, fill};
use alibi_explorer::tui::tour::parse::parse;
use alibi_explorer::tui::tour::{BUILTIN, TourMove};
use alibi_explorer::tui::views::AttnView;
use alibi_explorer::tui::worker::WorkerMsg;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn info(heads: usize) -> ModelInfo {
    ModelInfo {
        name: "tiny".into(),
        arch: "alibi-explorer".into(),
        position: Position::Alibi,
        train_len: 16,
        n_layers: 2,
        n_heads: heads,
        device: "cpu".into(),
        device_note: "test".into(),
        dtype: "f32".into(),
        slopes: Some(alibi::paper_slopes(heads)),
    }
}

fn app_with(heads: usize) -> App {
    let s = Stream {
        ids: (0..600u32).map(|i| i % 50).collect(),
        bytes: None,
    };
    let text = (0..600).map(|i| format!("t{i}")).collect();
    App::new(
        info(heads),
        vec!["twin (sinusoidal)".into()],
        vec![s.clone(), s],
        text,
        256,
        "slopes.json".into(),
    )
}

fn feed_sweep(app: &mut App, curve: usize, scale: f32) {
    let generation = app.sweep_gen;
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

fn err(text: &str) -> String {
    parse(text, "t.md").unwrap_err()
}

const OK: &str = "# T\n\n## One\nfocus: bias\n\nText {slope 0}.\n";

#[test]
fn a_small_tour_parses() {
    let t = parse(
        "\n# My tour\ncompare: a, b\n\nIntro.\n\n## One\nfocus: bias\nview: distance\ncursor: 4x\nlayer: last\nhead: 2\nslopes: zero\ntask: do {{it}}\ndone: cursor >= train_len\n\nBody {slope} and {ppl 1}.\n\n## Two\n\nMore.\n",
        "t.md",
    )
    .unwrap();
    assert_eq!(t.title, "My tour");
    assert_eq!(t.compare.len(), 2);
    assert_eq!(t.steps.len(), 2);
    assert_eq!(t.steps[0].line, 7);
    assert_eq!(t.steps[0].state.focus, Some(Focus::Bias));
    assert_eq!(t.steps[0].state.view, Some(AttnView::Distance));
    assert!(t.steps[0].task.is_some());
    assert_eq!(t.steps[1].body.len(), 1);
    assert!(parse(OK, "t.md").is_ok());
}

#[test]
fn every_mistake_is_one_line_naming_the_line() {
    let cases: &[(&str, &str)] = &[
        ("", "t.md:1: a tour starts with a '# Title' line"),
        ("Hello\n## A\n", "t.md:1: a tour starts with a '# Title'"),
        ("# T\n", "t.md:1: the tour has no steps"),
        (
            "# T\nfocus: chart\n## A\n",
            "t.md:2: unknown key 'focus:' in the tour's header",
        ),
        (
            "# T\ncompare: a,,b\n## A\n",
            "t.md:2: 'compare:' has an empty entry",
        ),
        (
            "# T\n## A\nfocus: chart\nfocus: bias\n",
            "t.md:4: 'focus:' given twice",
        ),
        ("# T\n## A\nfocus: left\n", "t.md:3: unknown panel 'left'"),
        ("# T\n## A\nview: bars\n", "t.md:3: unknown view 'bars'"),
        ("# T\n## A\ncursor: far\n", "t.md:3: 'far' is not a length"),
        ("# T\n## A\ncursor: -2x\n", "t.md:3: '-2x' is not a length"),
        ("# T\n## A\ncursor: 0\n", "t.md:3: '0' is not a length"),
        ("# T\n## A\nhead: two\n", "t.md:3: 'two' is not a head"),
        ("# T\n## A\nlayer: -1\n", "t.md:3: '-1' is not a layer"),
        (
            "# T\n## A\nslopes: steep\n",
            "t.md:3: unknown slopes 'steep'",
        ),
        ("# T\n## A\ncolour: red\n", "t.md:3: unknown key 'colour:'"),
        (
            "# T\n## A\nmodel: x\n",
            "hint: model, compare and text go in the tour's header",
        ),
        (
            "# T\n## A\ntask: do it\n",
            "t.md:3: 'task:' without 'done:'",
        ),
        (
            "# T\n## A\ndone: head = 1\n",
            "t.md:3: 'done:' without 'task:'",
        ),
        (
            "# T\n## A\ntask: x\ndone: head is 1\n",
            "t.md:4: 'is' is not a comparison",
        ),
        (
            "# T\n## A\ntask: x\ndone: cursor\n",
            "t.md:4: 'done: cursor' is not a check",
        ),
        (
            "# T\n## A\ntask: x\ndone: speed > 1\n",
            "t.md:4: unknown variable 'speed'",
        ),
        (
            "# T\n## A\ntask: x\ndone: view > heads\n",
            "t.md:4: view can only be compared with = or !=",
        ),
        ("# T\n## A\nfocus:\n", "t.md:3: 'focus:' has no value"),
        ("# T\n## \n", "t.md:2: a step's title is empty"),
        ("# T\n## A\n\n# B\n", "t.md:4: a second '# ' title"),
        (
            "# T\n## A\n\nSee {slop 0}.\n",
            "t.md:4: unknown placeholder '{slop 0}'",
        ),
        ("# T\n## A\n\nSee {}.\n", "t.md:4: an empty placeholder"),
        (
            "# T\n## A\n\nSee {slope 0\n",
            "t.md:4: a '{' without its '}'",
        ),
        ("# T\n## A\n\nSee } here\n", "t.md:4: a '}' without its '{'"),
        (
            "# T\n## A\n\nSee {slope x}.\n",
            "t.md:4: '{slope x}': wrong arguments",
        ),
        (
            "# T\n## A\n\nSee {slope 1 2}.\n",
            "t.md:4: '{slope 1 2}': wrong arguments",
        ),
        (
            "# T\n## A\n\nSee {bias 0}.\n",
            "t.md:4: '{bias 0}': wrong arguments",
        ),
        (
            "# T\n## A\n\nSee {ppl main}.\n",
            "t.md:4: '{ppl main}': wrong arguments",
        ),
        (
            "# T\n## A\n\nSee {cursor 2}.\n",
            "t.md:4: '{cursor 2}': wrong arguments",
        ),
        (
            "# T\n## A\ntask: see {nope}\ndone: head = 1\n",
            "t.md:3: unknown placeholder '{nope}'",
        ),
        (
            "# T\n## A\n\n```\ncode\n",
            "t.md:4: a ``` code block is not closed",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text:?}: expected '{want}' in '{e}'");
        assert_eq!(e.lines().count(), 1, "not one line: {e}");
    }
    // Headings and braces inside code blocks are text; a lowercase `word:` after a heading is a
    // header key, so an ordinary line needs the blank line first.
    assert!(parse("# T\n## A\n\n```\n## not a step\n```\n", "t.md").is_ok());
    assert!(err("# T\n## A\nnote: text\n").contains("unknown key 'note:'"));
    assert!(parse("# T\n## A\n\nnote: text\n", "t.md").is_ok());
}

#[test]
fn layers_and_heads_are_checked_against_the_model() {
    let t = parse("# T\n## A\n\nx\n\n## B\nhead: 8\n", "t.md").unwrap();
    let e = t.check_model("t.md", 4, 8).unwrap_err();
    assert!(
        e.starts_with("t.md:6: head 8, but the model has 8 heads"),
        "{e}"
    );
    assert!(t.check_model("t.md", 4, 9).is_ok());
    let t = parse("# T\n## A\ntask: x\ndone: layer = 3\n", "t.md").unwrap();
    assert!(t.check_model("t.md", 2, 8).unwrap_err().contains("layer 3"));
}

#[test]
fn the_shipped_tour_parses_and_states_only_checked_formulas() {
    let tour = parse(BUILTIN, "assets/tour.md").unwrap();
    assert!(tour.steps.len() >= 9, "{} steps", tour.steps.len());
    // Works on any model: only head 0 and `last`, layer 0 and `last`.
    tour.check_model("assets/tour.md", 1, 1).unwrap();
    // Every formula-like code span is one of the formulas the code is tested against.
    let spans: Vec<&str> = BUILTIN.split('`').skip(1).step_by(2).collect();
    let mut seen = Vec::new();
    for s in spans {
        if s.contains(['=', '^', '·', '−']) && !s.starts_with("eval ") {
            assert!(
                FORMULAS.contains(&s),
                "unchecked formula in assets/tour.md: `{s}`"
            );
            seen.push(s);
        }
    }
    for f in FORMULAS {
        assert!(seen.contains(f), "the tour no longer states `{f}`");
    }
    for slip in KNOWN_SLIPS {
        assert!(
            !BUILTIN.contains(slip),
            "assets/tour.md contains the slip {slip}"
        );
    }
}

#[test]
fn live_numbers_follow_the_model_and_say_computing_until_they_exist() {
    // A non-power-of-two head count: the slopes are the interleaved ones.
    let mut app = app_with(6);
    let t = parse(
        "# T\n## A\ncursor: train_len\n\nm0={slope 0} mlast={slope last} r0={reach 0} b={bias 0 10} ppl={ppl} twin={ppl 1} none={ppl 5} at={cursor} L={train_len} H={heads}\n",
        "t.md",
    )
    .unwrap();
    app.open_tour(t);
    let body = app.tour.as_ref().unwrap().current().body[0].clone();
    let text = fill(&app, &body);
    let m = alibi::paper_slopes(6);
    assert!(text.contains(&format!("m0={}", fmt4(m[0]))), "{text}");
    assert!(text.contains(&format!("mlast={}", fmt4(m[5]))), "{text}");
    let reach0 = alibi::reach(m[0]).round();
    assert!(text.contains(&format!("r0={reach0}")), "{text}");
    assert!(
        text.contains(&format!("b=−{}", fmt4(m[0] * 10.0))),
        "{text}"
    );
    assert!(text.contains(&format!("ppl={COMPUTING}")), "{text}");
    assert!(text.contains("none=n/a (no curve 5"), "{text}");
    assert!(text.contains("at=16 L=16 H=6"), "{text}");
    feed_sweep(&mut app, 0, 1.0);
    feed_sweep(&mut app, 1, 1.5);
    let text = fill(&app, &body);
    let p = app.point_at_cursor().unwrap().ppl;
    assert!(text.contains(&format!("ppl={p:.1}")), "{text}");
    assert!(!text.contains(COMPUTING), "{text}");
}

/// Four significant digits, as the card prints slopes.
fn fmt4(m: f64) -> String {
    let d = (3 - m.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{m:.d$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[test]
fn steps_set_their_state_and_notice_the_task() {
    let mut app = app_with(4);
    let tour = parse(BUILTIN, "assets/tour.md").unwrap();
    let n = tour.steps.len();
    app.open_tour(tour.clone());
    for i in 0..n {
        let want = &tour.steps[i].state;
        assert_eq!(app.tour.as_ref().unwrap().step, i);
        if let Some(f) = want.focus {
            assert_eq!(app.focus, f, "step {i}");
        }
        if let Some(v) = want.view {
            assert_eq!(app.view, v, "step {i}");
        }
        if let Some(h) = want.head {
            assert_eq!(app.head, h.of(4), "step {i}");
        }
        if let Some(c) = want.cursor {
            let t = alibi_explorer::tui::tour::live::tokens(&app, c);
            let nearest = app
                .grid
                .iter()
                .min_by(|a, b| {
                    ((**a as f64).ln() - t.ln())
                        .abs()
                        .total_cmp(&((**b as f64).ln() - t.ln()).abs())
                })
                .copied()
                .unwrap();
            assert_eq!(app.length(), nearest, "step {i}");
        }
        // Each step is drawn with its card and the highlight at both sizes.
        for (w, h) in [(80, 24), (200, 60)] {
            let (s, buf) = screen(&app, w, h);
            assert!(
                s.contains(&format!("Tour {}/{n}", i + 1)),
                "step {i} at {w}x{h}:\n{s}"
            );
            if want.focus.is_some() {
                let tags = s.matches(TAG.trim()).count();
                assert_eq!(tags, 1, "step {i} at {w}x{h}: highlight tag\n{s}");
                let tour_cells = buf.content().iter().filter(|c| c.fg == TOUR).count();
                assert!(
                    tour_cells > 40,
                    "step {i} at {w}x{h}: {tour_cells} tour-coloured cells"
                );
            }
        }
        app.update(Action::Tour(TourMove::Next));
    }
    assert_eq!(
        app.tour.as_ref().unwrap().step,
        n - 1,
        "n past the last step stays"
    );
    // Back to step 2 (drag past train_len): its task is noticed once the cursor passes train_len.
    let mut app = app_with(4);
    app.open_tour(tour.clone());
    app.update(Action::Tour(TourMove::Next));
    let st = app.tour.as_ref().unwrap();
    assert!(st.current().task.is_some() && !st.done[1]);
    assert_eq!(app.length(), 16);
    let (s, _) = screen(&app, 80, 24);
    assert!(s.contains("▶ try:"), "{s}");
    app.update(Action::MoveLength(1));
    assert!(app.tour.as_ref().unwrap().done[1]);
    let (s, _) = screen(&app, 80, 24);
    assert!(s.contains("✓ done:"), "{s}");
    // N goes back and sets that step's state again.
    app.update(Action::Tour(TourMove::Back));
    assert_eq!(app.tour.as_ref().unwrap().step, 0);
    assert_eq!(app.length(), 16);
}

#[test]
fn break_it_notices_zero_slopes_and_the_next_step_restores_the_models() {
    let mut app = app_with(4);
    let tour = parse(BUILTIN, "assets/tour.md").unwrap();
    let i = tour
        .steps
        .iter()
        .position(|s| {
            s.task
                .as_ref()
                .is_some_and(|t| fill(&app, &t.text).contains("zero"))
        })
        .unwrap();
    app.open_tour(tour);
    app.tour_go(i);
    let gen0 = app.sweep_gen;
    for _ in 0..5 {
        app.update(Action::NextPreset);
        if app.slopes.iter().all(|&m| m == 0.0) {
            break;
        }
    }
    assert!(app.tour.as_ref().unwrap().done[i]);
    assert!(app.sweep_gen > gen0);
    app.update(Action::Tour(TourMove::Next));
    assert_eq!(
        app.slopes,
        alibi::paper_slopes(4),
        "the next step asks for the model's slopes"
    );
}

#[test]
fn the_learner_can_leave_and_come_back() {
    let mut app = app_with(4);
    // g without a tour opens the shipped one.
    app.update(Action::Tour(TourMove::Toggle));
    assert!(app.tour_visible());
    app.update(Action::Tour(TourMove::Next));
    app.update(Action::Tour(TourMove::Next));
    // Leave with g: the card goes, the state stays, the panels come back.
    let len = app.length();
    app.update(Action::Tour(TourMove::Toggle));
    assert!(!app.tour_visible());
    assert_eq!(app.length(), len);
    let (s, _) = screen(&app, 80, 24);
    assert!(!s.contains("Tour 3/") && s.contains("Slopes"), "{s}");
    app.update(Action::MoveLength(-3));
    // Back with g at the same step; Esc leaves too, before it would quit.
    app.update(Action::Tour(TourMove::Toggle));
    assert_eq!(app.tour.as_ref().unwrap().step, 2);
    app.update(Action::Back);
    assert!(!app.tour_visible() && !app.quit);
    app.update(Action::Back);
    assert!(app.quit);
}

#[test]
fn the_tour_keys_are_mapped_and_documented() {
    let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(
        map_key(key('g'), Focus::Chart, false),
        Some(Action::Tour(TourMove::Toggle))
    );
    assert_eq!(
        map_key(key('n'), Focus::Attention, false),
        Some(Action::Tour(TourMove::Next))
    );
    assert_eq!(
        map_key(
            KeyEvent::new(KeyCode::Char('N'), KeyModifiers::SHIFT),
            Focus::Bias,
            false
        ),
        Some(Action::Tour(TourMove::Back))
    );
    assert!(KEY_HELP.iter().any(|(k, _)| *k == "n / N"));
}

#[test]
fn the_recipe_step_notices_three_recipe_curves() {
    let mut app = app_with(4);
    let tour = parse(BUILTIN, "assets/tour.md").unwrap();
    let i = tour
        .steps
        .iter()
        .position(|s| {
            s.task
                .as_ref()
                .is_some_and(|t| fill(&app, &t.text).contains("press c"))
        })
        .unwrap();
    app.open_tour(tour);
    app.tour_go(i);
    assert_eq!(
        app.length(),
        *app.grid.last().unwrap(),
        "the step puts the cursor at the end"
    );
    for k in 0..3 {
        assert!(
            !app.tour.as_ref().unwrap().done[i],
            "done after {k} recipes"
        );
        app.update(Action::NextRecipe);
    }
    assert!(app.tour.as_ref().unwrap().done[i]);
    assert_eq!(app.recipes.len(), 3);
    // A task on a count that is not a number is refused with its line.
    let e = err("# t\n\n## s\ntask: add recipes\ndone: recipes >= many\n\ntext\n");
    assert!(
        e.starts_with("t.md:5:") && e.contains("not a number of recipe curves"),
        "{e}"
    );
}
