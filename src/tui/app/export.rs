//! `w`: the focused panel as a figure for slides (SVG and PNG, plus the JSON of its data), built
//! from what the panel shows with the writers of `eval::figures`. The app only describes the
//! figure; the main loop writes the files.

use super::{App, Effect};
use crate::alibi::log_bin_range;
use crate::eval::figures::maps::{AttentionHeatmap, HeadGrid};
use crate::eval::figures::report::{bin_x, position_loss_figure};
use crate::eval::figures::{Curve, LineFigure};
use crate::tui::app::Metric;
use crate::tui::export::{EXPORT_MAX_TOKENS, Export, ExportFigure};
use crate::tui::keymap::Focus;
use crate::tui::views::{AttnView, prior_distance_profile, prior_stat};
use std::path::PathBuf;

/// A file-name-safe form of a model name (`bigscience/bloom-560m` -> `bigscience_bloom-560m`).
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl App {
    /// The result of [`Effect::Export`]: the files written, or why not.
    pub fn exported(&mut self, result: Result<Vec<PathBuf>, String>) {
        match result {
            Ok(files) => {
                let exts: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.extension().map(|e| e.to_string_lossy().into_owned()))
                    .collect();
                let first = files.first().cloned().unwrap_or_default();
                let dir = first
                    .parent()
                    .and_then(|d| d.canonicalize().ok())
                    .unwrap_or_default();
                let stem = first
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.message = format!(
                    "exported {stem}.{{{}}} to {}",
                    exts.join(","),
                    dir.display()
                );
                self.error = None;
            }
            Err(e) => self.error = Some(format!("export: {e}")),
        }
    }

    /// The focused panel's figure, or why there is nothing to export yet.
    pub fn export(&self) -> Result<Effect, String> {
        let len = self.length();
        let (panel, figure) = match self.focus {
            Focus::Chart => ("perplexity", self.chart_figure()?),
            Focus::Slopes => ("slopes", self.slopes_figure()?),
            Focus::Bias => ("bias", self.bias_figure()?),
            Focus::Attention => (self.view.name(), self.attention_figure()?),
        };
        Ok(Effect::Export(Export {
            stem: format!("alibi-explorer-{panel}-{}-L{len}", safe(&self.info.name)),
            figure,
        }))
    }

    fn chart_figure(&self) -> Result<ExportFigure, String> {
        if self.metric == Metric::Kl {
            return self.kl_figure();
        }
        let bpb = self.metric == Metric::BitsPerByte;
        let curve =
            |label: String, points: &[crate::eval::Point], dashed: bool, color: usize| Curve {
                label,
                points: points
                    .iter()
                    .filter_map(|p| {
                        let y = if bpb { p.bits_per_byte? } else { p.ppl };
                        Some([p.length as f64, y])
                    })
                    .collect(),
                dashed,
                color,
                counts: Some(points.iter().map(|p| p.tokens as u64).collect()),
            };
        let mut curves = Vec::new();
        let all = self
            .previous
            .iter()
            .chain(self.curves.iter().skip(1))
            .chain(self.curves.first());
        for (i, c) in all.enumerate() {
            if let Some(points) = c.points(&self.grid) {
                curves.push(curve(c.label.clone(), &points, false, i));
            }
        }
        let first_recipe = curves.len();
        for (i, c) in self.recipes.iter().enumerate() {
            let points = self.recipe_points(i);
            if !points.is_empty() {
                let label = format!("recipe {}", c.recipe);
                curves.push(curve(label, &points, true, first_recipe + i));
            }
        }
        if curves.is_empty() {
            return Err("nothing to export yet: the sweep has no window".to_string());
        }
        Ok(ExportFigure::Line(LineFigure {
            title: format!(
                "{} vs input length · {} · train_len {}",
                if bpb { "Bits per byte" } else { "Perplexity" },
                self.info.name,
                self.info.train_len
            ),
            x_label: "input length (tokens, log)".to_string(),
            y_label: if bpb {
                "bits per UTF-8 byte".to_string()
            } else {
                "token perplexity (log)".to_string()
            },
            log_y: !bpb,
            train_len: Some(self.info.train_len),
            curves,
        }))
    }

    /// The KL view's figure: mean KL divergence from the original by length, per curve.
    fn kl_figure(&self) -> Result<ExportFigure, String> {
        let mut curves = Vec::new();
        let mut push = |label: String, kl: Vec<(usize, crate::eval::KlStats)>, dashed: bool| {
            if !kl.is_empty() {
                curves.push(Curve {
                    label,
                    points: kl.iter().map(|(l, k)| [*l as f64, k.mean]).collect(),
                    dashed,
                    color: curves.len(),
                    counts: Some(kl.iter().map(|(_, k)| k.tokens as u64).collect()),
                });
            }
        };
        if self.slopes_edited() {
            let kl = self.curves[0].kl.iter().map(|(l, k)| (*l, *k)).collect();
            push(self.curves[0].label.clone(), kl, false);
        }
        for c in self.curves.iter().skip(1) {
            push(
                c.label.clone(),
                c.kl.iter().map(|(l, k)| (*l, *k)).collect(),
                false,
            );
        }
        for (i, c) in self.recipes.iter().enumerate() {
            push(format!("recipe {}", c.recipe), self.recipe_kl(i), true);
        }
        if curves.is_empty() {
            return Err(
                "no KL divergence to export: no curve differs from the original yet".to_string(),
            );
        }
        Ok(ExportFigure::Line(LineFigure {
            title: format!(
                "KL divergence from the original vs input length · {} · train_len {}",
                self.info.name, self.info.train_len
            ),
            x_label: "input length (tokens, log)".to_string(),
            y_label: "mean KL(original ‖ curve), nats per token".to_string(),
            log_y: false,
            train_len: Some(self.info.train_len),
            curves,
        }))
    }

    fn slopes_figure(&self) -> Result<ExportFigure, String> {
        if !self.is_alibi() {
            return Err(format!(
                "{} uses {} positions: it has no slopes",
                self.info.name, self.info.position
            ));
        }
        Ok(ExportFigure::Grid(HeadGrid {
            title: format!("ALiBi slopes · {} · {}", self.info.name, self.slopes_label),
            statistic: "slope m (bias = −m·distance)".to_string(),
            values: vec![self.slopes.iter().map(|&m| Some(m)).collect()],
            diverging: false,
        }))
    }

    fn bias_figure(&self) -> Result<ExportFigure, String> {
        let m = *self
            .slopes
            .get(self.head)
            .filter(|_| self.is_alibi())
            .ok_or_else(|| format!("{} has no ALiBi bias", self.info.name))?;
        let n = self.length().min(EXPORT_MAX_TOKENS);
        let mut probs = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..=i {
                probs[i * n + j] = (-m * (i - j) as f64).exp() as f32;
            }
        }
        Ok(ExportFigure::Map(AttentionHeatmap::from_flat(
            format!(
                "ALiBi bias factor e^(−m·(i−j)) · head {} · m = {m:.6} · first {n} tokens",
                self.head
            ),
            n,
            &probs,
        )))
    }

    fn attention_figure(&self) -> Result<ExportFigure, String> {
        let len = self.length();
        let (layer, head) = (self.layer, self.head);
        let waiting = || {
            format!(
                "nothing to export yet: the {} view is computing",
                self.view.name()
            )
        };
        match self.view {
            AttnView::Heatmap => {
                let map = self.attention.as_ref().ok_or_else(waiting)?;
                let n = map.len.min(EXPORT_MAX_TOKENS);
                let probs: Vec<f32> = (0..n)
                    .flat_map(|q| map.probs[q * map.len..q * map.len + n].iter().copied())
                    .collect();
                Ok(ExportFigure::Map(AttentionHeatmap::from_flat(
                    format!(
                        "Attention · {} · layer {} head {} · length {} (first {n} tokens)",
                        self.info.name, map.layer, map.head, map.len
                    ),
                    n,
                    &probs,
                )))
            }
            AttnView::Distance => {
                let m = self
                    .stats
                    .at(len)
                    .and_then(|r| r.head(layer, head))
                    .ok_or_else(waiting)?;
                let x = |bin: usize| {
                    let (from, to) = log_bin_range(bin);
                    bin_x(from, to.min(len))
                };
                let mut curves = vec![Curve {
                    label: format!("layer {layer} head {head} (measured)"),
                    points: m
                        .profile
                        .iter()
                        .enumerate()
                        .map(|(b, &v)| [x(b), v])
                        .collect(),
                    dashed: false,
                    color: 0,
                    counts: None,
                }];
                if self.is_alibi()
                    && let Some(&slope) = self.slopes.get(head)
                {
                    curves.push(Curve {
                        label: format!("ALiBi prior (m = {slope:.4})"),
                        points: prior_distance_profile(slope, len)
                            .iter()
                            .enumerate()
                            .map(|(b, &v)| [x(b), v])
                            .collect(),
                        dashed: true,
                        color: 0,
                        counts: None,
                    });
                }
                Ok(ExportFigure::Line(LineFigure {
                    title: format!(
                        "Attention by distance · {} · layer {layer} head {head} · length {len}",
                        self.info.name
                    ),
                    x_label: "distance i − j (tokens, log; 0 drawn at 0.5)".to_string(),
                    y_label: "mean attention per key (log)".to_string(),
                    log_y: true,
                    train_len: Some(self.info.train_len),
                    curves,
                }))
            }
            AttnView::Heads => {
                let r = self.stats.at(len).ok_or_else(waiting)?;
                let values = (0..self.info.n_layers)
                    .map(|l| {
                        (0..self.info.n_heads)
                            .map(|h| {
                                let v = self.stat.of(r.head(l, h)?)?;
                                if self.stat_minus_prior {
                                    let slope = *self.slopes.get(h).filter(|_| self.is_alibi())?;
                                    Some(v - prior_stat(self.stat, slope, len)?)
                                } else {
                                    Some(v)
                                }
                            })
                            .collect()
                    })
                    .collect();
                let what = if self.stat_minus_prior {
                    format!("{} − ALiBi prior", self.stat.label())
                } else {
                    self.stat.label().to_string()
                };
                Ok(ExportFigure::Grid(HeadGrid {
                    title: format!("{what} · {} · length {len}", self.info.name),
                    statistic: what,
                    values,
                    diverging: self.stat_minus_prior,
                }))
            }
            AttnView::Sensitivity => {
                let s = &self.sensitivity;
                if s.baseline.is_none() {
                    return Err(waiting());
                }
                // Rows: one per head; columns: variant @ length, as in the view.
                let values = s
                    .rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .flat_map(|cell| {
                                (0..s.lengths.len()).map(move |k| {
                                    cell.as_ref().and_then(|d| d.get(k)).map(|d| d.delta_ppl)
                                })
                            })
                            .collect()
                    })
                    .collect();
                Ok(ExportFigure::Grid(HeadGrid {
                    title: format!(
                        "Slope sensitivity · {} · Δ perplexity (zero, half, double) at {:?}",
                        self.info.name, s.lengths
                    ),
                    statistic:
                        "Δ perplexity (rows: heads; columns: zero, half, double at each length)"
                            .to_string(),
                    values,
                    diverging: true,
                }))
            }
            AttnView::Family => Ok(self.family_figure()),
            AttnView::PositionLoss => {
                let all = self
                    .previous
                    .iter()
                    .chain(self.curves.iter().skip(1))
                    .chain(self.curves.first());
                let models: Vec<(String, Vec<_>)> = all
                    .filter(|c| c.acc.windows() > 0)
                    .map(|c| {
                        (
                            c.label.clone(),
                            crate::eval::bin_position_stats(&c.acc.position_stats()),
                        )
                    })
                    .collect();
                if models.is_empty() {
                    return Err(waiting());
                }
                Ok(ExportFigure::Line(position_loss_figure(
                    &format!(
                        "Loss by position · windows of {} · train_len {}",
                        self.lmax, self.info.train_len
                    ),
                    self.info.train_len,
                    &models,
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_become_file_names() {
        assert_eq!(safe("bigscience/bloom-560m"), "bigscience_bloom-560m");
        assert_eq!(safe("alibi"), "alibi");
    }
}
