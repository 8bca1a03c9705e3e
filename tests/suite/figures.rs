//! Every figure writer, on a report measured from a tiny random model: each writes a non-empty
//! SVG (text that carries the title) and PNG (with the PNG signature), plus the JSON of its data;
//! a bad extension is refused without leaving a file.

#![allow(clippy::unwrap_used)]

use alibi_explorer::eval::Control;
use alibi_explorer::eval::figures::maps::AttentionHeatmap;
use alibi_explorer::eval::figures::report::{
    Statistic, bin_x, distance_figure, grid_figure, length_figure, overview_figure,
    position_loss_figure,
};
use alibi_explorer::eval::figures::{self, Figure, diverging, viridis};
use alibi_explorer::eval::stats::attention_map;
use alibi_explorer::eval::stats::{StatsReport, attention_stats};
use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::random_model;
use alibi_explorer::text::Stream;
use candle_core::Device;
use std::path::Path;

fn report(position: Position) -> StatsReport {
    let cfg = Config::ours(37, 24, 2, 3, 48, position, 8);
    let model = random_model(&cfg, 7, &Device::Cpu).unwrap();
    let stream = Stream {
        ids: (0..200).map(|i| ((i * 7 + 3) % 37) as u32).collect(),
        bytes: None,
    };
    attention_stats(
        &model,
        &format!("tiny-{position}"),
        &stream,
        &[4, 16, 64],
        None,
        None,
        &Control::default(),
    )
    .unwrap()
}

/// Writes `fig` as SVG and PNG (with data) and checks both files.
fn check(dir: &Path, name: &str, fig: &impl Figure) {
    let svg = dir.join(format!("{name}.svg"));
    let json = figures::write_with_data(&svg, fig).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
        "{name}"
    );
    // SVG escapes text: compare the title's first word-run that needs no escaping.
    let plain: String = fig
        .title()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '-')
        .collect();
    assert!(
        !plain.is_empty() && text.contains(&plain),
        "{name}: no '{plain}' in the SVG"
    );
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(data["title"], fig.title());
    let png = dir.join(format!("{name}.png"));
    figures::write(&png, fig).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{name}"
    );
}

#[test]
fn every_writer_writes_svg_png_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alibi = report(Position::Alibi);
    let rotary = report(Position::Rotary);
    check(d, "distance", &distance_figure(&alibi, 1, 2).unwrap());
    check(
        d,
        "distance-rotary",
        &distance_figure(&rotary, 0, 0).unwrap(),
    );
    for stat in Statistic::ALL {
        check(
            d,
            &format!("length-{}", stat.name()),
            &length_figure(&alibi, 0, 1, stat).unwrap(),
        );
    }
    check(
        d,
        "grid",
        &grid_figure(&alibi, 64, Statistic::MeanDistance, false).unwrap(),
    );
    check(
        d,
        "grid-prior",
        &grid_figure(&alibi, 64, Statistic::Mass90, true).unwrap(),
    );
    let loss = position_loss_figure(
        "loss by position",
        8,
        &[
            ("alibi".to_string(), alibi.position_loss.clone()),
            ("rotary".to_string(), rotary.position_loss.clone()),
        ],
    );
    // Per model: the line, its ± s.e. band (two dashed unlabelled curves), and the thin bins.
    let lines: Vec<_> = loss.curves.iter().filter(|c| !c.dashed).collect();
    assert_eq!(lines.len(), 2);
    let bands = loss
        .curves
        .iter()
        .filter(|c| c.dashed && c.label.is_empty())
        .count();
    assert_eq!(bands, 4);
    // Tiny test windows: bins are thin here, so their tokens sit in the thin-bin curve.
    let counted: u64 = loss
        .curves
        .iter()
        .filter_map(|c| c.counts.as_ref())
        .flatten()
        .sum();
    assert!(counted > 0);
    check(d, "loss", &loss);
    check(d, "overview", &overview_figure(&alibi));
    // The heatmap from a real capture, and one longer than the cell limit (block means).
    let cfg = Config::ours(37, 24, 2, 3, 48, Position::Alibi, 8);
    let model = random_model(&cfg, 7, &Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..30).map(|i| (i * 5 % 37) as u32).collect();
    let probs = attention_map(&model, &ids, 1, 2, None).unwrap();
    let map = AttentionHeatmap::from_flat("tiny · layer 1 head 2 · L = 30".into(), 30, &probs);
    check(d, "heatmap", &map);
    let long = 300;
    let uniform: Vec<f32> = (0..long * long)
        .map(|k| {
            if k % long <= k / long {
                1.0 / (k / long + 1) as f32
            } else {
                0.0
            }
        })
        .collect();
    let big = AttentionHeatmap::from_flat("uniform L = 300".into(), long, &uniform);
    let (block, cells) = big.cells();
    assert_eq!(block, 3);
    assert_eq!(cells.len(), 100);
    assert!(cells[0][1].is_none() && cells[1][0].is_some() && cells[0][0].is_some());
    check(d, "heatmap-big", &big);
}

#[test]
fn statistics_and_bins_read_the_report() {
    let alibi = report(Position::Alibi);
    let p = &alibi.heads[0].points[2];
    assert_eq!(Statistic::MeanDistance.of(p), Some(p.mean_distance));
    assert_eq!(
        Statistic::parse("mass90").unwrap().prior_of(p),
        p.prior.map(|q| q.mass90_distance)
    );
    assert_eq!(Statistic::parse("nope"), None);
    let grid = grid_figure(&alibi, 16, Statistic::MeanDistance, true).unwrap();
    let want = p.mean_distance - p.prior.unwrap().mean_distance;
    let got = grid_figure(&alibi, 64, Statistic::MeanDistance, true)
        .unwrap()
        .values[0][0]
        .unwrap();
    assert!((got - want).abs() < 1e-12);
    assert_eq!(grid.values.len(), 2);
    assert!(grid_figure(&alibi, 5, Statistic::Entropy, false).is_err());
    assert!(distance_figure(&alibi, 9, 0).is_err());
    // Five positions of four windows each: bins pool their tokens.
    let mut positions = vec![alibi_explorer::eval::Stats::default(); 5];
    for (p, s) in positions.iter_mut().enumerate() {
        for _ in 0..4 {
            s.add([1.0, 2.0, 3.0, 5.0, 7.0][p], None);
        }
    }
    let bins = alibi_explorer::eval::bin_position_stats(&positions);
    let got: Vec<_> = bins
        .iter()
        .map(|b| (b.from, b.to, b.tokens, b.nll, b.few_tokens))
        .collect();
    assert_eq!(
        got,
        [
            (0, 1, 4, 1.0, true),
            (1, 2, 4, 2.0, true),
            (2, 4, 8, 4.0, true),
            (4, 5, 4, 7.0, true)
        ]
    );
    assert_eq!(bin_x(0, 1), 0.5);
    assert_eq!(bin_x(1, 2), 1.0);
    assert!((bin_x(4, 8) - (4.0f64 * 7.0).sqrt()).abs() < 1e-12);
}

#[test]
fn colour_maps_and_bad_extensions() {
    assert_eq!(viridis(0.0), plotters::style::RGBColor(68, 1, 84));
    assert_eq!(viridis(1.0), plotters::style::RGBColor(253, 231, 37));
    assert_eq!(diverging(0.0), plotters::style::RGBColor(247, 247, 247));
    let (lo, hi) = (diverging(-1.0), diverging(1.0));
    assert!(lo.2 > lo.0 && hi.0 > hi.2, "blue below, red above");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("f.jpg");
    let err = figures::write(&bad, &overview_figure(&report(Position::None))).unwrap_err();
    assert!(err.contains(".svg or .png"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
