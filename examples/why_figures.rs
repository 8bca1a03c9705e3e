//! The figures of the "Why does it extrapolate?" section of docs/findings.md, drawn with the
//! library's figure writers from the `stats --json` reports that `scripts/why-extrapolates.sh`
//! measured.
//!
//! Usage: `cargo run --release --example why_figures -- assets/results/why`

use alibi_explorer::eval::figures::report::{
    Statistic, distance_figure, grid_figure, length_figure, position_loss_figure,
};
use alibi_explorer::eval::figures::{self, Figure};
use alibi_explorer::eval::stats::StatsReport;
use std::path::{Path, PathBuf};

const MODELS: [(&str, &str); 4] = [
    ("alibi", "ALiBi"),
    ("sinusoidal", "Sinusoidal"),
    ("rotary", "Rotary"),
    ("none", "No position"),
];

fn read(dir: &Path, name: &str) -> Result<StatsReport, String> {
    let path = dir.join(format!("stats-{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("'{}': {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("'{}': {e}", path.display()))
}

fn save(dir: &Path, name: &str, fig: &impl Figure) -> Result<(), String> {
    let path: PathBuf = dir.join(format!("{name}.png"));
    figures::write_with_data(&path, fig)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> Result<(), String> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("assets/results/why".into()),
    );
    let reports = MODELS
        .iter()
        .map(|(k, _)| read(&dir, k))
        .collect::<Result<Vec<_>, _>>()?;
    let alibi = &reports[0];
    let largest = *alibi.lengths.last().ok_or("no lengths")?;
    // The loss by position from `eval --protocol sweep` (more windows than the statistics ran).
    let mut losses = Vec::new();
    let mut windows = 0;
    for (key, label) in MODELS {
        let path = dir.join(format!("eval-sweep{largest}-{key}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("'{}': {e}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let bins: Vec<alibi_explorer::eval::PositionLoss> =
            serde_json::from_value(v["position_loss"].clone()).map_err(|e| {
                format!(
                    "'{}': no position_loss bins ({e}); re-run eval (it writes them since the s.e. bands)",
                    path.display()
                )
            })?;
        let n = v["position_nll"].as_array().map_or(1, Vec::len).max(1);
        windows = v["points"][0]["tokens"].as_u64().unwrap_or(0) as usize / n;
        losses.push((label.to_string(), bins));
    }
    let title = format!(
        "Loss by position in {largest}-token windows ({windows} windows of books/test; trained at {})",
        alibi.train_len
    );
    save(
        &dir,
        "position-loss",
        &position_loss_figure(&title, alibi.train_len, &losses),
    )?;
    for (layer, head) in [(0, 7), (3, 0)] {
        save(
            &dir,
            &format!("distance-alibi-l{layer}h{head}"),
            &distance_figure(alibi, layer, head)?,
        )?;
        save(
            &dir,
            &format!("length-alibi-l{layer}h{head}-mean_distance"),
            &length_figure(alibi, layer, head, Statistic::MeanDistance)?,
        )?;
    }
    save(
        &dir,
        "distance-sinusoidal-l0h0",
        &distance_figure(&reports[1], 0, 0)?,
    )?;
    for ((key, _), r) in MODELS.iter().zip(&reports) {
        save(
            &dir,
            &format!("grid-{key}-mean_distance-{largest}"),
            &grid_figure(r, largest, Statistic::MeanDistance, false)?,
        )?;
    }
    save(
        &dir,
        &format!("grid-alibi-mean_distance-minus-prior-{largest}"),
        &grid_figure(alibi, largest, Statistic::MeanDistance, true)?,
    )?;
    Ok(())
}
