//! What the export key writes: the focused panel's figure (built by `App::export`), drawn by the
//! main loop with `eval::figures` as SVG and PNG, with its data as JSON.

use crate::eval::figures::maps::{AttentionHeatmap, HeadGrid};
use crate::eval::figures::{LineFigure, write, write_data};
use std::path::{Path, PathBuf};

/// Maps and bias matrices are exported for at most this many tokens (a 2,048-token map would be
/// 40 MB of JSON and unreadable on a slide).
pub const EXPORT_MAX_TOKENS: usize = 512;

/// A figure the main loop writes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportFigure {
    /// Curves over a log x axis.
    Line(LineFigure),
    /// A matrix over tokens (attention, or the bias factor `e^bias`).
    Map(AttentionHeatmap),
    /// A value per (row, head).
    Grid(HeadGrid),
}

/// What to write: `<stem>.svg`, `<stem>.png` and `<stem>.json` in the working folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// File name without extension: `alibi-explorer-<panel>-<model>-L<length>`.
    pub stem: String,
    /// The figure.
    pub figure: ExportFigure,
}

/// The files [`write_export`] writes into `dir`: the figure as SVG and PNG, and its data as JSON.
pub fn export_files(dir: &Path, export: &Export) -> [PathBuf; 3] {
    ["svg", "png", "json"].map(|ext| dir.join(format!("{}.{ext}", export.stem)))
}

/// Writes an export's figure as `<stem>.svg` and `<stem>.png` and its data as `<stem>.json` in
/// `dir`; returns the files written.
pub fn write_export(dir: &Path, export: &Export) -> Result<Vec<PathBuf>, String> {
    let [svg, png, json] = export_files(dir, export);
    match &export.figure {
        ExportFigure::Line(f) => {
            write(&svg, f)?;
            write(&png, f)?;
            write_data(&json, f)?;
        }
        ExportFigure::Map(f) => {
            write(&svg, f)?;
            write(&png, f)?;
            write_data(&json, f)?;
        }
        ExportFigure::Grid(f) => {
            write(&svg, f)?;
            write(&png, f)?;
            write_data(&json, f)?;
        }
    }
    Ok(vec![svg, png, json])
}
