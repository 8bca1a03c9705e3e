//! The view: `impl Widget for &App` lays out the panels and draws them with the widgets in `ui/`.

mod bias;
mod chart;
mod common;
mod distance;
mod family;
mod heads;
mod heatmap;
mod help;
pub mod lineplot;
mod posloss;
mod sensitivity;
mod slopes;
pub mod status;

pub use chart::{TOKENIZER_NOTICE, plot_area};
pub use common::{fmt_reach, panel, token_label};

use super::app::App;
use super::keymap::Focus;
use super::views::AttnView;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Widget, Wrap};

/// The smallest terminal the layout works in.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// Where each panel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Perplexity chart.
    pub chart: Rect,
    /// Slope editor.
    pub slopes: Rect,
    /// Bias matrices.
    pub bias: Rect,
    /// Attention heatmap.
    pub attention: Rect,
    /// Status bar.
    pub status: Rect,
}

/// The layout for a terminal area (None when it is too small).
pub fn layout(area: Rect) -> Option<Areas> {
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        return None;
    }
    let [main, status] = Layout::vertical([Constraint::Min(10), Constraint::Length(2)]).areas(area);
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(52), Constraint::Percentage(48)]).areas(main);
    let [chart, slopes] =
        Layout::horizontal([Constraint::Percentage(66), Constraint::Percentage(34)]).areas(top);
    let [bias, attention] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    Some(Areas {
        chart,
        slopes,
        bias,
        attention,
        status,
    })
}

/// The layout of the screen for the app's state: [`layout`], with the tour's card (when shown) in
/// a panel's place or a column of its own (see `tour::card`).
pub fn screen_layout(app: &App, area: Rect) -> Option<(Areas, Option<Rect>)> {
    let areas = layout(area)?;
    Some(if app.tour_visible() {
        let panels = [areas.chart, areas.slopes, areas.bias, areas.attention];
        let ([chart, slopes, bias, attention], card) =
            super::tour::card::place(app, panels, areas.status.height, area);
        let areas = Areas {
            chart,
            slopes,
            bias,
            attention,
            ..areas
        };
        (areas, Some(card))
    } else {
        (areas, None)
    })
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let Some((areas, card)) = screen_layout(self, area) else {
            let msg = format!(
                "terminal too small: {}x{} (alibi-explorer needs at least {}x{}). Enlarge the window, or press q to quit.",
                area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
            );
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .render(area, buf);
            return;
        };
        if !areas.chart.is_empty() {
            chart::render(self, areas.chart, buf, self.focus == Focus::Chart);
        }
        if !areas.slopes.is_empty() {
            slopes::render(self, areas.slopes, buf, self.focus == Focus::Slopes);
        }
        if !areas.bias.is_empty() {
            bias::render(self, areas.bias, buf, self.focus == Focus::Bias);
        }
        let focused = self.focus == Focus::Attention;
        match self.view {
            _ if areas.attention.is_empty() => {}
            AttnView::Heatmap => heatmap::render(self, areas.attention, buf, focused),
            AttnView::Distance => distance::render(self, areas.attention, buf, focused),
            AttnView::Heads => heads::render(self, areas.attention, buf, focused),
            AttnView::PositionLoss => posloss::render(self, areas.attention, buf, focused),
            AttnView::Sensitivity => sensitivity::render(self, areas.attention, buf, focused),
            AttnView::Family => family::render(self, areas.attention, buf, focused),
        }
        if let Some(card) = card {
            let panels = [areas.chart, areas.slopes, areas.bias, areas.attention];
            super::tour::card::highlight(self, panels, buf);
            super::tour::card::render(self, card, buf);
        }
        status::render(self, areas.status, buf);
        if self.help {
            help::render(area, buf, self.help_scroll);
        }
    }
}
