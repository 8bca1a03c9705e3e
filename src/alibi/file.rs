//! Slopes files (`{"slopes": [..]}`, as `slopes --json` writes them) and `--slopes` specs (a preset
//! name or such a file): reading, writing, and resolving for a head count.

use super::{Preset, SlopeSpec};
use std::path::Path;

/// Parses the `slopes` array of a slopes file's JSON text; `name` names the file in messages.
pub fn parse_slopes_json(name: &str, text: &str) -> Result<Vec<f64>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("'{name}' is not valid JSON: {e} (expected {{\"slopes\": [..]}})"))?;
    value
        .get("slopes")
        .and_then(|s| s.as_array())
        .ok_or_else(|| format!("'{name}' has no \"slopes\" array (expected {{\"slopes\": [..]}})"))?
        .iter()
        .map(|v| v.as_f64().filter(|x| x.is_finite()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("'{name}': every slope must be a finite number"))
}

/// Reads a slopes file.
pub fn read_slopes(path: &Path) -> Result<Vec<f64>, String> {
    let text =
        crate::files::read_limited_string(path, crate::files::MAX_JSON_BYTES, "a slopes file")?;
    parse_slopes_json(&path.display().to_string(), &text)
}

/// Writes a slopes file that [`read_slopes`] and `eval --slopes` read back.
pub fn write_slopes(path: &Path, slopes: &[f64]) -> Result<(), String> {
    let v = serde_json::json!({"heads": slopes.len(), "preset": "custom", "slopes": slopes});
    crate::files::write_bytes(path, format!("{v}\n").as_bytes())
}

/// Resolves a `--slopes` spec for `heads` heads: a preset name, or a slopes file whose count must
/// match.
pub fn resolve_slopes(spec: &str, heads: usize) -> Result<Vec<f64>, String> {
    if let Ok(preset) = spec.parse::<Preset>() {
        return SlopeSpec {
            preset,
            ..SlopeSpec::default()
        }
        .slopes(heads)
        .map_err(|e| e.to_string());
    }
    let path = Path::new(spec);
    if !path.is_file() {
        return Err(format!(
            "--slopes '{spec}' is neither a preset (geometric, equal, linear, reversed, zero) nor a file"
        ));
    }
    let slopes = read_slopes(path)?;
    super::check_slopes(&slopes, heads).map_err(|e| format!("'{spec}': {e}"))?;
    Ok(slopes)
}
