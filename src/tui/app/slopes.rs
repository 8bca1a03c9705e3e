//! Slopes that come back from a file (`L`), and the reach of each head for the Slopes panel.

use super::{App, Effect};
use crate::alibi;

impl App {
    /// The result of [`Effect::LoadSlopes`].
    pub fn slopes_loaded(&mut self, result: Result<Vec<f64>, String>) -> Vec<Effect> {
        match result {
            Ok(s) if s.len() == self.info.n_heads => {
                let name = self
                    .slopes_file
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                self.set_slopes(s, format!("file {name}"))
            }
            Ok(s) => {
                self.error = Some(format!(
                    "{} has {}; the model has {}",
                    self.slopes_file.display(),
                    crate::text::count(s.len(), "slope"),
                    crate::text::count(self.info.n_heads, "head")
                ));
                Vec::new()
            }
            Err(e) => {
                self.error = Some(e);
                Vec::new()
            }
        }
    }

    /// Reach of each current slope (for the editor).
    pub fn reaches(&self) -> Vec<f64> {
        self.slopes.iter().map(|&m| alibi::reach(m)).collect()
    }
}
