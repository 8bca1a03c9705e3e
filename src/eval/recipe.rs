//! Evaluation under a modification of the model at inference: a slope override and/or a
//! long-context recipe ([`crate::alibi::recipe`]). Recipes whose slopes depend on the input
//! length (`interp:dynamic`, `ntk`) cannot share one sweep across lengths: each length is scored
//! on its own non-overlapping windows with its own slopes.

use super::{Control, Evaluation, Protocol, evaluate_with};
use crate::alibi::recipe::Recipe;
use crate::model::Position;
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use crate::text::Stream;
use candle_core::Result;

/// What is changed at inference, against the original model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modification {
    /// A slope override (ALiBi models).
    pub slopes: Option<Vec<f64>>,
    /// A long-context recipe.
    pub recipe: Option<Recipe>,
}

impl Modification {
    /// Whether anything is changed.
    pub fn is_some(&self) -> bool {
        self.slopes.is_some() || self.recipe.is_some()
    }

    /// Checks the modification applies to `model`: slope recipes need ALiBi.
    pub fn check(&self, model: &Transformer, name: &str) -> std::result::Result<(), String> {
        let cfg = model.config();
        if let Some(r) = self.recipe
            && r.changes_slopes()
            && cfg.position != Position::Alibi
        {
            return Err(format!(
                "--recipe {r} changes ALiBi slopes; '{name}' uses {} positions (hint: window:W and sinks:K+W apply to every scheme)",
                cfg.position
            ));
        }
        Ok(())
    }

    /// The slopes at input length `len` (the override, or the model's own, through the recipe);
    /// `None` for models without ALiBi.
    pub fn slopes_at(&self, model: &Transformer, len: usize) -> Result<Option<Vec<f64>>> {
        let cfg = model.config();
        if cfg.position != Position::Alibi {
            return Ok(None);
        }
        let base: Vec<f64> = match &self.slopes {
            Some(s) => s.clone(),
            None => model
                .slopes()
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?,
        };
        Ok(Some(match self.recipe {
            Some(r) => r.slopes(&base, len, cfg.train_len),
            None => base,
        }))
    }

    /// The forward options at input length `len`.
    pub fn options_at(&self, model: &Transformer, len: usize) -> Result<ForwardOptions> {
        let slopes = if self.is_some() {
            self.slopes_at(model, len)?
                .map(|s| slopes_tensor(&s, model.device()))
                .transpose()?
        } else {
            None
        };
        Ok(ForwardOptions {
            slopes,
            key_mask: self.recipe.and_then(|r| r.key_mask()),
            ..Default::default()
        })
    }

    /// Whether lengths must be scored one at a time (slopes that depend on the length).
    pub fn per_length(&self) -> bool {
        self.recipe.is_some_and(|r| r.depends_on_length())
    }
}

/// The protocol a modification is scored under: a sweep becomes non-overlapping windows per
/// length when the slopes depend on the length.
pub fn protocol_for(m: &Modification, protocol: Protocol) -> Protocol {
    if m.per_length() && protocol == Protocol::Sweep {
        Protocol::NonOverlap
    } else {
        protocol
    }
}

/// Evaluates `lengths` with the modification applied; see the module doc for length-dependent
/// recipes (scored per length under [`protocol_for`]).
pub fn evaluate_modified(
    model: &Transformer,
    stream: &Stream,
    lengths: &[usize],
    protocol: Protocol,
    m: &Modification,
    ctl: &Control,
) -> Result<Evaluation> {
    let protocol = protocol_for(m, protocol);
    if !m.per_length() {
        let opts = m.options_at(model, lengths.last().copied().unwrap_or(1))?;
        return evaluate_with(model, stream, lengths, protocol, &opts, ctl);
    }
    let mut out: Option<Evaluation> = None;
    for &len in lengths {
        let opts = m.options_at(model, len)?;
        let e = evaluate_with(model, stream, &[len], protocol, &opts, ctl)?;
        out = Some(match out {
            None => e,
            Some(mut acc) => {
                acc.points.extend(e.points);
                acc.position_nll = e.position_nll;
                acc.per_token = e.per_token;
                acc
            }
        });
    }
    out.ok_or_else(|| candle_core::Error::Msg("no lengths".into()))
}
