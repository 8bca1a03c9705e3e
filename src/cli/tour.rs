//! `tour`: the guided tour, in the TUI or exported as a lecture.

use super::common::TuiArgs;
use crate::tui::tour::command::TourSettings;
use crate::tui::tour::lecture::DEFAULT_STEP_TIMEOUT_S;
use clap::Args;
use std::path::PathBuf;

/// Options of `tour`.
#[derive(Debug, Args, Clone)]
pub struct TourArgs {
    /// A tour file of your own (Markdown; see docs/tour.md) [default: the shipped assets/tour.md].
    #[arg(long = "tour", value_name = "FILE")]
    pub tour: Option<PathBuf>,
    /// Write every step as a slide (panel SVG + PNG + JSON, the card as Markdown, index.md) into
    /// this new or empty folder instead of opening the TUI.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// With --export: seconds a step waits for its numbers before it is written as it is.
    #[arg(long, default_value_t = DEFAULT_STEP_TIMEOUT_S, value_name = "SECONDS")]
    pub step_timeout: u64,
    /// The TUI's options.
    #[command(flatten)]
    pub tui: TuiArgs,
}

impl TourArgs {
    /// The settings `tour` runs with.
    pub fn settings(&self) -> TourSettings {
        let t = &self.tui;
        TourSettings {
            tour: self.tour.clone(),
            export: self.export.clone(),
            model: t.model.clone(),
            text: t.text.clone(),
            compare: t.compare.clone(),
            device: t.device,
            dtype: t.dtype,
            max_length: t.max_length,
            max_tokens: t.max_tokens,
            slopes_file: t.slopes_file.clone(),
            recipes: t.recipe.clone(),
            step_timeout_s: self.step_timeout,
        }
    }
}
