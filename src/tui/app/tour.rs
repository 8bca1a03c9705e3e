//! The guided tour in the app: opening and leaving it, moving between steps, setting each step's
//! state through the app's own actions and setters, and noticing when a step's task is done.

use super::{App, Effect};
use crate::tui::keymap::Action;
use crate::tui::keymap::TourMove;
use crate::tui::tour::live::{holds, slopes_of, tokens};
use crate::tui::tour::{SlopeChoice, StepState, Tour, TourState};
use crate::tui::views::AttnView;

impl App {
    /// Opens `tour` at its first step and sets that step's state.
    pub fn open_tour(&mut self, tour: Tour) -> Vec<Effect> {
        self.tour = Some(TourState::new(tour));
        let mut fx = self.tour_go(0);
        fx.extend(self.stats_jobs());
        fx
    }

    /// Whether the tour card is shown.
    pub fn tour_visible(&self) -> bool {
        self.tour.as_ref().is_some_and(|t| t.visible)
    }

    /// The tour keys.
    pub(super) fn tour_move(&mut self, m: TourMove) -> Vec<Effect> {
        let Some(t) = &self.tour else {
            if m != TourMove::Toggle {
                self.message = "no tour is open: g opens the guided tour".to_string();
                return Vec::new();
            }
            return match crate::tui::tour::parse::builtin() {
                Ok((tour, _)) => {
                    self.tour = Some(TourState::new(tour));
                    self.tour_go(0)
                }
                Err(e) => {
                    self.error = Some(e);
                    Vec::new()
                }
            };
        };
        let (step, n, visible) = (t.step, t.tour.steps.len(), t.visible);
        match m {
            TourMove::Toggle if visible => {
                if let Some(t) = &mut self.tour {
                    t.visible = false;
                }
                self.message = format!(
                    "left the tour at step {}/{n}: keep exploring; g comes back",
                    step + 1
                );
                Vec::new()
            }
            TourMove::Toggle => self.tour_go(step),
            // Hidden: n and N come back to the step the learner left.
            _ if !visible => self.tour_go(step),
            TourMove::Next if step + 1 < n => self.tour_go(step + 1),
            TourMove::Back if step > 0 => self.tour_go(step - 1),
            TourMove::Next => {
                self.message = "that was the last step: g leaves the tour".to_string();
                Vec::new()
            }
            TourMove::Back => {
                self.message = "this is the first step".to_string();
                Vec::new()
            }
        }
    }

    /// Shows step `i` and sets its state.
    pub fn tour_go(&mut self, i: usize) -> Vec<Effect> {
        let Some(t) = &mut self.tour else {
            return Vec::new();
        };
        t.step = i.min(t.tour.steps.len() - 1);
        t.visible = true;
        let state = t.current().state.clone();
        self.help = false;
        self.enlarged = false;
        self.message.clear();
        self.apply_step(&state)
    }

    /// Sets a step's state with the app's own actions (and the slope setter), leaving what the
    /// step does not name as it is.
    fn apply_step(&mut self, s: &StepState) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(f) = s.focus {
            for _ in 0..4 {
                if self.focus == f {
                    break;
                }
                fx.extend(self.apply_action(Action::Focus(true)));
            }
        }
        if let Some(v) = s.view {
            for _ in 0..AttnView::ALL.len() {
                if self.view == v {
                    break;
                }
                fx.extend(self.apply_action(Action::NextView));
            }
        }
        if let Some(l) = s.layer {
            let want = l
                .of(self.info.n_layers)
                .min(self.info.n_layers.saturating_sub(1));
            if want != self.layer {
                let d = want as i32 - self.layer as i32;
                fx.extend(self.apply_action(Action::Layer(d)));
            }
        }
        if let Some(h) = s.head {
            let want = h
                .of(self.info.n_heads)
                .min(self.info.n_heads.saturating_sub(1));
            if want != self.head {
                let d = want as i32 - self.head as i32;
                fx.extend(self.apply_action(Action::Head(d)));
            }
        }
        if let Some(l) = s.cursor {
            let i = self.nearest(tokens(self, l));
            fx.extend(self.move_cursor(i as i64));
        }
        if let Some(c) = s.slopes
            && self.is_alibi()
            && let Some(want) = slopes_of(self, c)
            && want != self.slopes
        {
            match c {
                SlopeChoice::Model => fx.extend(self.apply_action(Action::ResetSlopes)),
                SlopeChoice::Preset(p) => {
                    self.preset = Some(p);
                    fx.extend(self.set_slopes(want, format!("preset {p}")));
                }
            }
        }
        fx
    }

    /// After every update: marks the current step's task done when its check holds.
    pub(super) fn tour_notice(&mut self) {
        let Some(t) = &self.tour else { return };
        if !t.visible {
            return;
        }
        let step = t.step;
        let Some(task) = &t.current().task else {
            return;
        };
        if holds(self, task.done)
            && let Some(t) = &mut self.tour
        {
            t.done[step] = true;
        }
    }
}
