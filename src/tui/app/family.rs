//! The position-encoding family view's keys and export: the selected scheme and every scheme's
//! parameters (`views::FamilyState`), edited like slopes while the view is shown and the attention
//! panel focused — ↑/↓ select a scheme, `+`/`-` scale its main parameter, `h`/`l` its second —
//! and its export (the prior by distance of every scheme that has one).

use super::{App, Effect};
use crate::alibi::family::Scheme;
use crate::alibi::log_bin_range;
use crate::eval::figures::report::bin_x;
use crate::eval::figures::{Curve, LineFigure};
use crate::tui::export::ExportFigure;
use crate::tui::keymap::{Action, Focus};
use crate::tui::views::AttnView;

impl App {
    /// The family view's keys: handled (`Some`) only while the view is shown and the attention
    /// panel focused; other actions, and every action elsewhere, go on as usual (`None`).
    pub(super) fn family_action(&mut self, action: Action) -> Option<Vec<Effect>> {
        if self.view != AttnView::Family || self.focus != Focus::Attention {
            return None;
        }
        let n = Scheme::ALL.len() as i64;
        let state = &mut self.family;
        let scheme = state.scheme();
        let edit = match action {
            Action::Query(d) => {
                state.selected = (state.selected as i64 + i64::from(d)).rem_euclid(n) as usize;
                None
            }
            Action::Zoom(up) => Some(state.params.step(scheme, 0, up)),
            Action::Pan(d) => Some(state.params.step(scheme, 1, d > 0)),
            _ => return None,
        };
        match edit {
            Some(Err(e)) => self.error = Some(format!("{scheme}: {e}")),
            Some(Ok(())) => {
                self.error = None;
                self.message = format!("{scheme}: {}", self.family.params.params_text(scheme));
            }
            None => {}
        }
        Some(Vec::new())
    }

    /// The family view's figure: the prior by distance (per-bin mean attention per key) of every
    /// scheme with a bias, for the last query of the cursor's length.
    pub(super) fn family_figure(&self) -> ExportFigure {
        let len = self.length();
        let f = &self.family.params;
        let curves = Scheme::ALL
            .iter()
            .filter(|s| s.no_prior_reason().is_none())
            .enumerate()
            .map(|(i, &s)| Curve {
                label: format!("{} ({}) · {}", s.title(), f.params_text(s), s.source()),
                points: f
                    .profile(s, len)
                    .iter()
                    .enumerate()
                    .map(|(b, &v)| {
                        let (from, to) = log_bin_range(b);
                        [bin_x(from, to.min(len)), v]
                    })
                    .collect(),
                dashed: false,
                color: i,
                counts: None,
            })
            .collect();
        ExportFigure::Line(LineFigure {
            // T5's learned buckets and rotary's decay bound have no prior: said, not drawn.
            title: format!("Prior by distance · last query of {len} tokens · T5, rotary: no prior"),
            x_label: "distance i − j (tokens, log; 0 drawn at 0.5)".to_string(),
            y_label: "mean prior attention per key (log)".to_string(),
            log_y: true,
            train_len: Some(self.info.train_len),
            curves,
        })
    }
}
