//! The position-encoding family view (issue 22, item 4): `v` reaches it, its keys edit the
//! schemes only while it is shown and the attention panel focused, it draws every scheme (full
//! cells at 160x48 and 200x60, one line each at 80x24) without default-colour glyphs, and `w`
//! exports the priors.

#![allow(clippy::unwrap_used)]

use alibi_explorer::alibi::family::{DEFAULT_ALIBI_SLOPE, Family, STEP, Scheme};
use alibi_explorer::model::Position;
use alibi_explorer::text::Stream;
use alibi_explorer::tui::app::{App, Effect, ExportFigure, ModelInfo};
use alibi_explorer::tui::keymap::{Action, Focus};
use alibi_explorer::tui::views::AttnView;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

fn app() -> App {
    let info = ModelInfo {
        name: "tiny".into(),
        arch: "alibi-explorer".into(),
        position: Position::Alibi,
        train_len: 16,
        n_layers: 2,
        n_heads: 4,
        device: "cpu".into(),
        device_note: "test".into(),
        dtype: "f32".into(),
        slopes: Some(alibi_explorer::alibi::paper_slopes(4)),
    };
    let s = Stream {
        ids: (0..600u32).map(|i| i % 50).collect(),
        bytes: None,
    };
    let text = (0..600).map(|i| format!("t{i}")).collect();
    let mut a = App::new(info, vec![], vec![s], text, 256, "slopes.json".into());
    a.truecolor = true;
    while a.view != AttnView::Family {
        a.update(Action::NextView);
    }
    a.focus = Focus::Attention;
    a
}

fn screen(app: &App, w: u16, h: u16) -> (String, Buffer) {
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

/// No half block or full block in the terminal's default colour (it would show as a light stripe).
fn no_default_colour_blocks(buf: &Buffer) {
    for cell in &buf.content {
        if matches!(cell.symbol(), "▀" | "▄" | "█") {
            assert_ne!(cell.fg, Color::Reset, "a block glyph in the default colour");
        }
    }
}

#[test]
fn v_reaches_the_family_view_after_sensitivity() {
    assert_eq!(AttnView::Sensitivity.next(), AttnView::Family);
    assert_eq!(AttnView::Family.next(), AttnView::Heatmap);
    assert_eq!(AttnView::Family.name(), "family");
}

#[test]
fn keys_select_schemes_and_step_their_parameters_only_when_focused() {
    let mut a = app();
    assert!(a.update(Action::Zoom(true)).is_empty());
    assert!((a.family.params.alibi_slope - DEFAULT_ALIBI_SLOPE * STEP).abs() < 1e-15);
    assert!(a.message.contains("ALiBi"), "{}", a.message);
    // ↑ from the first scheme wraps to the last.
    a.update(Action::Query(-1));
    assert_eq!(a.family.scheme(), Scheme::Rotary);
    a.update(Action::Zoom(false));
    assert_eq!(a.family.params.rotary_dim, 32);
    a.update(Action::Pan(1));
    assert!((a.family.params.rotary_base - 100_000.0).abs() < 1e-6);
    a.update(Action::Query(-1));
    assert_eq!(a.family.scheme(), Scheme::NoPe);
    a.update(Action::Pan(-1));
    assert!(a.error.as_deref().unwrap().contains("no parameters"));
    a.update(Action::Query(-2));
    assert_eq!(a.family.scheme(), Scheme::KerplePower);
    for _ in 0..10 {
        a.update(Action::Pan(1));
    }
    assert!(
        (a.family.params.kerple_power_p - 2.0).abs() < 1e-12,
        "p capped at 2"
    );
    // Elsewhere the same actions do what they always did, and the family stays as it is.
    let before = a.family;
    a.focus = Focus::Bias;
    a.update(Action::Query(1));
    a.update(Action::Pan(1));
    assert_eq!(a.family, before);
    a.focus = Focus::Attention;
    a.view = AttnView::Heatmap;
    a.update(Action::Zoom(true));
    assert_eq!(a.zoom, 2);
    assert_eq!(a.family, before);
}

#[test]
fn the_view_draws_every_scheme_in_full_cells() {
    let a = app();
    for (w, h) in [(160, 48), (200, 60)] {
        let (text, buf) = screen(&a, w, h);
        assert!(text.contains("Position-encoding family"), "{text}");
        for s in Scheme::ALL {
            assert!(text.contains(s.title()), "{w}x{h} lacks {s}:\n{text}");
            assert!(
                text.contains(s.source()),
                "{w}x{h} lacks {}:\n{text}",
                s.source()
            );
        }
        assert!(text.contains("m = 0.0625") && text.contains("buckets = 32"));
        let mean = Family::default()
            .prior_mean_distance(Scheme::Alibi, a.length())
            .unwrap();
        assert!(text.contains(&format!("prior mean d {mean:.1}")), "{text}");
        assert!(text.contains("no prior"), "{text}");
        assert!(text.contains("↑↓ scheme"), "{text}");
        // Matrices in viridis, no block glyph in the default colour.
        let heat = buf
            .content
            .iter()
            .filter(|c| c.symbol() == "▀" && matches!(c.fg, Color::Rgb(..)))
            .count();
        assert!(heat > 100, "{w}x{h}: {heat} matrix cells");
        no_default_colour_blocks(&buf);
    }
}

#[test]
fn the_view_stays_readable_at_80x24() {
    let mut a = app();
    let (text, buf) = screen(&a, 80, 24);
    for s in Scheme::ALL {
        assert!(text.contains(s.title()), "80x24 lacks {s}:\n{text}");
    }
    let mean = Family::default()
        .prior_mean_distance(Scheme::Alibi, a.length())
        .unwrap();
    assert!(text.contains(&format!("mean d {mean:.1}")), "{text}");
    assert!(text.contains("no prior"), "{text}");
    assert!(text.contains("Press et al. 2022"), "{text}");
    assert!(text.contains("↑↓ scheme"), "{text}");
    no_default_colour_blocks(&buf);
    // The selected scheme's details follow the selection.
    a.update(Action::Query(3));
    let (text, _) = screen(&a, 80, 24);
    assert!(text.contains("Raffel et al. 2020"), "{text}");
}

#[test]
fn w_exports_the_prior_of_every_scheme_with_a_bias() {
    let mut a = app();
    let fx = a.update(Action::Export);
    let Some(Effect::Export(e)) = fx.first() else {
        panic!("no export: {fx:?} {:?}", a.error)
    };
    assert_eq!(
        e.stem,
        format!("alibi-explorer-family-tiny-L{}", a.length())
    );
    let ExportFigure::Line(fig) = &e.figure else {
        panic!("not a line figure")
    };
    let labels: Vec<&str> = fig.curves.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels[0].starts_with("ALiBi") && labels[3].starts_with("NoPE"));
    assert!(fig.title.contains("no prior"));
    let dir = tempfile::tempdir().unwrap();
    let files = alibi_explorer::tui::export::write_export(dir.path(), e).unwrap();
    assert_eq!(files.len(), 3);
}
