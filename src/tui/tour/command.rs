//! `alibi-explorer tour`: reads the tour (the shipped one or `--tour FILE`), resolves its models
//! (the command line's first, then the tour's header, then the defaults), checks everything before
//! the work, and opens the TUI at the first step, or writes the lecture (`--export DIR`).

use super::{Tour, TourSource};
use crate::model::device::DeviceSpec;
use crate::tui::TuiSettings;
use color_eyre::eyre::{Result, eyre};
use std::path::{Path, PathBuf};

/// What `tour` needs; `None` and empty fields fall back to the tour's header, then the defaults.
#[derive(Debug, Clone)]
pub struct TourSettings {
    /// `--tour FILE` (the shipped tour without it).
    pub tour: Option<PathBuf>,
    /// `--export DIR`: write the lecture instead of opening the TUI.
    pub export: Option<PathBuf>,
    /// `--model`.
    pub model: Option<PathBuf>,
    /// `--text`.
    pub text: Option<PathBuf>,
    /// `--compare` (replaces the tour's `compare:` when given).
    pub compare: Vec<PathBuf>,
    /// Device.
    pub device: DeviceSpec,
    /// dtype.
    pub dtype: candle_core::DType,
    /// `--max-length`.
    pub max_length: Option<usize>,
    /// `--max-tokens`.
    pub max_tokens: Option<usize>,
    /// `--slopes-file`.
    pub slopes_file: PathBuf,
    /// `--recipe` (recipe curves from the start).
    pub recipes: Vec<crate::alibi::recipe::Recipe>,
    /// Seconds to wait for a step's numbers when exporting.
    pub step_timeout_s: u64,
}

/// A path from the tour's header: relative to the tour file's folder; it must exist (the shipped
/// tour's may be missing away from the repository: then `None`).
fn from_header(src: &TourSource, line: usize, what: &str, p: &Path) -> Result<Option<PathBuf>> {
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else {
        src.base.join(p)
    };
    if path.exists() {
        Ok(Some(path))
    } else if src.builtin {
        Ok(None)
    } else {
        Err(eyre!(
            "{}:{line}: {what} '{}' not found (looked for '{}'; paths in a tour are relative to the tour file's folder)",
            src.name,
            p.display(),
            path.display()
        ))
    }
}

/// The TUI settings for a tour: the command line's choices first, then the tour's header, then
/// the built-in defaults.
pub fn resolve(s: &TourSettings, tour: &Tour, src: &TourSource) -> Result<TuiSettings> {
    let cache = crate::embedded::cache_dir();
    let unpack = |e: std::io::Error| {
        eyre!(
            "cannot unpack the built-in default model into '{}': {e}",
            cache.display()
        )
    };
    let model = match (&s.model, &tour.model) {
        (Some(m), _) => Some(m.clone()),
        (None, Some((line, p))) => from_header(src, *line, "model", p)?,
        (None, None) => None,
    };
    let model = match model {
        Some(m) => m,
        None => crate::embedded::default_model_dir(&cache).map_err(unpack)?,
    };
    let text = match (&s.text, &tour.text) {
        (Some(t), _) => Some(t.clone()),
        (None, Some((line, p))) => from_header(src, *line, "text", p)?,
        (None, None) => None,
    };
    let text = match text {
        Some(t) => t,
        None => crate::embedded::default_text(&cache).map_err(unpack)?,
    };
    let compare = if s.compare.is_empty() {
        let mut v = Vec::new();
        for (line, p) in &tour.compare {
            v.extend(from_header(src, *line, "compare model", p)?);
        }
        v
    } else {
        s.compare.clone()
    };
    Ok(TuiSettings {
        model,
        text,
        compare,
        device: s.device,
        dtype: s.dtype,
        max_length: s.max_length,
        max_tokens: s.max_tokens,
        slopes_file: s.slopes_file.clone(),
        recipes: s.recipes.clone(),
    })
}

/// Runs `tour`.
pub fn run(s: &TourSettings) -> Result<()> {
    let (tour, src) = match &s.tour {
        Some(p) => super::parse::read(p),
        None => super::parse::builtin(),
    }
    .map_err(|e| eyre!(e))?;
    if let Some(dir) = &s.export {
        crate::files::check_output_dir("--export", dir).map_err(|e| eyre!(e))?;
        // Another lecture being written there is named first (its lock makes the folder non-empty).
        crate::files::lock::check_unlocked("--export", dir).map_err(|e| eyre!(e))?;
        super::lecture::check_fresh(dir).map_err(|e| eyre!(e))?;
        // Writing the lecture is headless work: a signal stops it (the TUI handles its own).
        crate::files::stop::flag();
    }
    let settings = resolve(s, &tour, &src)?;
    let (app, slots) = crate::tui::prepare(&settings)?;
    tour.check_model(&src.name, app.info.n_layers, app.info.n_heads)
        .map_err(|e| eyre!(e))?;
    match &s.export {
        Some(dir) => super::lecture::export(app, slots, tour, dir, s.step_timeout_s),
        None => crate::tui::run_prepared(app, slots, move |app| app.open_tour(tour)),
    }
}
