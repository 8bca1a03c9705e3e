//! Figures built from a `stats` report ([`StatsReport`]): attention by distance for one head,
//! a statistic against input length, a statistic for every head, the loss by position of several
//! models, and the `stats --plot` overview.
//!
//! Log-binned distances and positions are drawn at the geometric middle of their bin; bin `[0, 1)`
//! (distance or position 0) has no place on a log axis and is drawn at 0.5.

use super::maps::HeadGrid;
use super::{Curve, LineFigure, PanelFigure};

use crate::eval::stats::{HeadPoint, HeadReport, PositionLoss, StatsReport};

/// Where a log bin `[from, to)` of whole numbers is drawn on a log axis.
pub fn bin_x(from: usize, to: usize) -> f64 {
    if from == 0 {
        0.5
    } else {
        (from as f64 * (to.max(from + 1) - 1) as f64).sqrt()
    }
}

/// A per-head statistic of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// Mean distance, tokens.
    MeanDistance,
    /// 90 % mass distance, tokens.
    Mass90,
    /// Entropy, nats.
    Entropy,
    /// Entropy over `ln(i + 1)`.
    EntropyNorm,
    /// Attention on the first four tokens.
    SinkMass,
}

impl Statistic {
    /// Every statistic, in table order.
    pub const ALL: [Statistic; 5] = [
        Statistic::MeanDistance,
        Statistic::Mass90,
        Statistic::Entropy,
        Statistic::EntropyNorm,
        Statistic::SinkMass,
    ];

    /// The name in the JSON (`mean_distance`, `mass90_distance`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Statistic::MeanDistance => "mean_distance",
            Statistic::Mass90 => "mass90_distance",
            Statistic::Entropy => "entropy",
            Statistic::EntropyNorm => "entropy_norm",
            Statistic::SinkMass => "sink_mass",
        }
    }

    /// A label with units, for axes and colour bars.
    pub fn label(self) -> &'static str {
        match self {
            Statistic::MeanDistance => "mean distance (tokens)",
            Statistic::Mass90 => "90% mass distance (tokens)",
            Statistic::Entropy => "entropy (nats)",
            Statistic::EntropyNorm => "entropy / ln(i+1)",
            Statistic::SinkMass => "attention on first 4 tokens",
        }
    }

    /// Parses a name (as in [`Statistic::name`]; `mass90` too).
    pub fn parse(s: &str) -> Option<Self> {
        let s = if s == "mass90" { "mass90_distance" } else { s };
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The head's value at one point.
    pub fn of(self, p: &HeadPoint) -> Option<f64> {
        match self {
            Statistic::MeanDistance => Some(p.mean_distance),
            Statistic::Mass90 => Some(p.mass90_distance),
            Statistic::Entropy => Some(p.entropy),
            Statistic::EntropyNorm => p.entropy_norm,
            Statistic::SinkMass => p.sink_mass,
        }
    }

    /// The ALiBi prior's value at one point (`None` for other position schemes).
    pub fn prior_of(self, p: &HeadPoint) -> Option<f64> {
        let q = p.prior?;
        match self {
            Statistic::MeanDistance => Some(q.mean_distance),
            Statistic::Mass90 => Some(q.mass90_distance),
            Statistic::Entropy => Some(q.entropy),
            Statistic::EntropyNorm => q.entropy_norm,
            Statistic::SinkMass => q.sink_mass,
        }
    }
}

fn head(report: &StatsReport, layer: usize, head: usize) -> Result<&HeadReport, String> {
    report
        .heads
        .iter()
        .find(|h| h.layer == layer && h.head == head)
        .ok_or_else(|| format!("the report has no layer {layer} head {head}"))
}

fn slope_note(h: &HeadReport) -> String {
    h.slope
        .map_or(String::new(), |m| format!(" (slope {m:.4})"))
}

/// Attention by distance of one head, one solid curve per length of the report, the ALiBi prior
/// dashed in the same colour; log-log, the training length marked.
pub fn distance_figure(
    report: &StatsReport,
    layer: usize,
    head_index: usize,
) -> Result<LineFigure, String> {
    let h = head(report, layer, head_index)?;
    let mut curves = Vec::new();
    let profiles = report
        .distance_profile
        .iter()
        .filter(|p| p.layer == layer && p.head == head_index);
    for (i, p) in profiles.enumerate() {
        let x = |b: &crate::eval::stats::DistanceBin| bin_x(b.from, b.to);
        curves.push(Curve {
            label: format!("L = {}", p.length),
            points: p.bins.iter().map(|b| [x(b), b.attention]).collect(),
            dashed: false,
            color: i,
            counts: None,
        });
        if p.bins.iter().any(|b| b.prior.is_some()) {
            curves.push(Curve {
                label: String::new(),
                points: p
                    .bins
                    .iter()
                    .filter_map(|b| Some([x(b), b.prior?]))
                    .collect(),
                dashed: true,
                color: i,
                counts: None,
            });
        }
    }
    let prior = if h.slope.is_some() {
        " · dashed: ALiBi prior"
    } else {
        ""
    };
    Ok(LineFigure {
        title: format!(
            "{} · layer {layer} head {head_index}{} · attention by distance{prior}",
            report.model,
            slope_note(h)
        ),
        x_label: "distance i − j (tokens, log; 0 drawn at 0.5)".to_string(),
        y_label: "mean attention per key (log)".to_string(),
        log_y: true,
        train_len: Some(report.train_len),
        curves,
    })
}

/// One head's statistic against input length, the ALiBi prior dashed.
pub fn length_figure(
    report: &StatsReport,
    layer: usize,
    head_index: usize,
    stat: Statistic,
) -> Result<LineFigure, String> {
    let h = head(report, layer, head_index)?;
    Ok(LineFigure {
        title: format!(
            "{} · layer {layer} head {head_index}{} · {} vs input length",
            report.model,
            slope_note(h),
            stat.name()
        ),
        x_label: "input length L (tokens, log)".to_string(),
        y_label: stat.label().to_string(),
        log_y: false,
        train_len: Some(report.train_len),
        curves: head_curves(h, stat, 0, "measured", "ALiBi prior"),
    })
}

/// The measured curve of one head (solid, `label`) and its prior (dashed, `prior_label`).
fn head_curves(
    h: &HeadReport,
    stat: Statistic,
    color: usize,
    label: &str,
    prior_label: &str,
) -> Vec<Curve> {
    let mut curves = vec![Curve {
        label: label.to_string(),
        points: h
            .points
            .iter()
            .filter_map(|p| Some([p.length as f64, stat.of(p)?]))
            .collect(),
        dashed: false,
        color,
        counts: Some(h.points.iter().map(|p| p.queries).collect()),
    }];
    let prior: Vec<[f64; 2]> = h
        .points
        .iter()
        .filter_map(|p| Some([p.length as f64, stat.prior_of(p)?]))
        .collect();
    if !prior.is_empty() {
        curves.push(Curve {
            label: prior_label.to_string(),
            points: prior,
            dashed: true,
            color,
            counts: None,
        });
    }
    curves
}

/// A statistic for every (layer, head) at `length`; with `minus_prior` the statistic minus the
/// ALiBi prior on a diverging scale (cells without a prior stay empty).
pub fn grid_figure(
    report: &StatsReport,
    length: usize,
    stat: Statistic,
    minus_prior: bool,
) -> Result<HeadGrid, String> {
    if !report.lengths.contains(&length) {
        return Err(format!(
            "the report has no length {length} (it has {:?})",
            report.lengths
        ));
    }
    let layers = report.heads.iter().map(|h| h.layer + 1).max().unwrap_or(0);
    let heads = report.heads.iter().map(|h| h.head + 1).max().unwrap_or(0);
    let mut values = vec![vec![None; heads]; layers];
    for h in &report.heads {
        let Some(p) = h.points.iter().find(|p| p.length == length) else {
            continue;
        };
        values[h.layer][h.head] = if minus_prior {
            stat.of(p).zip(stat.prior_of(p)).map(|(a, b)| a - b)
        } else {
            stat.of(p)
        };
    }
    let what = if minus_prior {
        format!("{} − prior", stat.label())
    } else {
        stat.label().to_string()
    };
    Ok(HeadGrid {
        title: format!("{} · {} at L = {length}", report.model, stat.name()),
        statistic: what,
        values,
        diverging: minus_prior,
    })
}

/// The loss by position of several models (name, log-binned losses), one curve each with its
/// ± 1 s.e. band (dashed, unlabelled); bins resting on fewer than
/// [`crate::eval::POSITION_MIN_TOKENS`] tokens are a separate dashed curve, so thin bins are not
/// read as a finding. Token counts per bin are kept in the data.
pub fn position_loss_figure(
    title: &str,
    train_len: usize,
    models: &[(String, Vec<PositionLoss>)],
) -> LineFigure {
    let mut curves = Vec::new();
    for (i, (name, bins)) in models.iter().enumerate() {
        let bins: Vec<PositionLoss> = bins.iter().filter(|b| b.tokens > 0).copied().collect();
        let solid: Vec<&PositionLoss> = bins.iter().filter(|b| !b.few_tokens).collect();
        let curve =
            |label: String, pts: Vec<[f64; 2]>, dashed: bool, counts: Option<Vec<u64>>| Curve {
                label,
                points: pts,
                dashed,
                color: i,
                counts,
            };
        curves.push(curve(
            name.clone(),
            solid.iter().map(|b| [bin_x(b.from, b.to), b.nll]).collect(),
            false,
            Some(solid.iter().map(|b| b.tokens as u64).collect()),
        ));
        for sign in [-1.0, 1.0] {
            curves.push(curve(
                String::new(),
                solid
                    .iter()
                    .map(|b| [bin_x(b.from, b.to), b.nll + sign * b.stderr])
                    .collect(),
                true,
                None,
            ));
        }
        // Thin bins, joined to the nearest solid bin so the line stays continuous.
        let thin = crate::eval::thin_stretch(&bins);
        if !thin.is_empty() {
            curves.push(curve(
                format!(
                    "{name}: bins on < {} tokens",
                    crate::eval::POSITION_MIN_TOKENS
                ),
                thin.iter().map(|b| [bin_x(b.from, b.to), b.nll]).collect(),
                true,
                Some(thin.iter().map(|b| b.tokens as u64).collect()),
            ));
        }
    }
    LineFigure {
        title: title.to_string(),
        x_label: "position in the window (tokens of context − 1, log; 0 drawn at 0.5)".to_string(),
        y_label: "mean loss (nats per token) ± 1 s.e. (dashed)".to_string(),
        log_y: false,
        train_len: Some(train_len),
        curves,
    }
}

/// The `stats --plot` figure: mean distance (top row) and 90 % mass distance (bottom row) against
/// input length, one panel per layer, one colour per head, the ALiBi prior dashed.
pub fn overview_figure(report: &StatsReport) -> PanelFigure {
    let layers = report.heads.iter().map(|h| h.layer + 1).max().unwrap_or(0);
    let mut panels = Vec::new();
    for stat in [Statistic::MeanDistance, Statistic::Mass90] {
        for layer in 0..layers {
            let mut curves = Vec::new();
            for h in report.heads.iter().filter(|h| h.layer == layer) {
                let label = if panels.is_empty() {
                    format!("h{}", h.head)
                } else {
                    String::new()
                };
                let mut c = head_curves(h, stat, h.head, &label, "");
                curves.append(&mut c);
            }
            panels.push(LineFigure {
                title: format!("layer {layer} · {}", stat.name()),
                x_label: "input length (tokens, log)".to_string(),
                y_label: stat.label().to_string(),
                log_y: true,
                train_len: Some(report.train_len),
                curves,
            });
        }
    }
    let prior = if report.heads.iter().any(|h| h.slope.is_some()) {
        "solid: measured · dashed: the ALiBi prior (bias alone) · "
    } else {
        "solid: measured · "
    };
    PanelFigure {
        title: format!(
            "{} ({}, train_len {}) · how far each head looks",
            report.model, report.position, report.train_len
        ),
        note: format!("{prior}one colour per head; means over every query of every window"),
        cols: layers.max(1),
        panels,
    }
}
