//! Long-context recipes: what people who deploy ALiBi models apply at inference when inputs
//! outgrow training. Pure numbers: slope transforms and a key mask, no model.
//!
//! | recipe | at input length L (train_len T, H heads, slopes m_h steepest first) | source |
//! |---|---|---|
//! | `interp:F` | every slope divided by F (F >= 1) | Al-Khateeb et al. 2023, "Position Interpolation Improves ALiBi Extrapolation"; BTLM/Jais `alibi_scaling` (fixed) |
//! | `interp:dynamic` | slopes divided by max(1, L/T) | BTLM/Jais `alibi_scaling` dynamic mode |
//! | `ntk` | m_h / a^((h-1)/(H-1)), a = max(1, L/T): steepest head unchanged, flattest divided by a | NTK-ALiBi (keezen/ntk_alibi) |
//! | `window:W` | each query attends to its last W keys only | sliding-window attention |
//! | `sinks:K+W` | the first K tokens plus the last W keys; ALiBi distances counted inside the kept cache | Xiao et al. 2023, StreamingLLM |
//!
//! "Steepest first" is the order of our slopes (head 0 has the largest slope, as in the paper),
//! so `h - 1` above is the head index from 0.

use std::fmt;
use std::str::FromStr;

/// Attention sinks in the TUI's `sinks` preset (StreamingLLM keeps 4).
pub const SINKS_PRESET: usize = 4;

/// A long-context recipe (see the module table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recipe {
    /// Every slope divided by this factor (>= 1).
    Interp(f64),
    /// Slopes divided by max(1, L / train_len).
    InterpDynamic,
    /// NTK-ALiBi: head h's slope divided by a^(h/(H-1)), a = max(1, L / train_len).
    Ntk,
    /// Each query attends to its last `W` keys (itself included).
    Window(usize),
    /// The first `sinks` tokens plus the last `window` keys, distances counted in the kept cache.
    Sinks {
        /// Attention-sink tokens kept from the start of the window.
        sinks: usize,
        /// Recent keys kept (the query included).
        window: usize,
    },
}

impl Recipe {
    /// Whether the recipe changes the slopes (and so applies to ALiBi models only).
    pub fn changes_slopes(&self) -> bool {
        matches!(
            self,
            Recipe::Interp(_) | Recipe::InterpDynamic | Recipe::Ntk
        )
    }

    /// Whether the slopes depend on the input length (then one sweep cannot serve every length:
    /// each length is scored with its own slopes).
    pub fn depends_on_length(&self) -> bool {
        matches!(self, Recipe::InterpDynamic | Recipe::Ntk)
    }

    /// The slopes at input length `len` for a model trained at `train_len` with `base` slopes
    /// (steepest first); unchanged for the mask recipes.
    pub fn slopes(&self, base: &[f64], len: usize, train_len: usize) -> Vec<f64> {
        let a = (len as f64 / train_len.max(1) as f64).max(1.0);
        match *self {
            Recipe::Interp(f) => base.iter().map(|m| m / f).collect(),
            Recipe::InterpDynamic => base.iter().map(|m| m / a).collect(),
            Recipe::Ntk => {
                let h = base.len();
                base.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let t = if h > 1 {
                            i as f64 / (h - 1) as f64
                        } else {
                            0.0
                        };
                        m / a.powf(t)
                    })
                    .collect()
            }
            Recipe::Window(_) | Recipe::Sinks { .. } => base.to_vec(),
        }
    }

    /// Whether the recipe changes nothing at input length `len` for a model trained at
    /// `train_len` with `base` slopes: the slopes stay `base` and the mask keeps every key. Such a
    /// length scores exactly as the unmodified model (tested in `tests/suite/recipes.rs`).
    pub fn is_identity_at(&self, base: &[f64], len: usize, train_len: usize) -> bool {
        self.slopes(base, len, train_len) == base
            && self.key_mask().is_none_or(|m| m.keeps_all(len))
    }

    /// The recipes the TUI offers (`c` adds them in this order) for a model trained at
    /// `train_len`: the slope recipes (ALiBi only), then a window of `train_len` keys and 4 sinks
    /// plus `train_len - 4` recent keys (StreamingLLM's split).
    pub fn presets(train_len: usize, alibi: bool) -> Vec<Recipe> {
        let t = train_len.max(1);
        let mut v = Vec::new();
        if alibi {
            v.extend([Recipe::Interp(2.0), Recipe::InterpDynamic, Recipe::Ntk]);
        }
        v.push(Recipe::Window(t));
        if t > SINKS_PRESET {
            v.push(Recipe::Sinks {
                sinks: SINKS_PRESET,
                window: t - SINKS_PRESET,
            });
        }
        v
    }

    /// The key mask of a window or sinks recipe.
    pub fn key_mask(&self) -> Option<KeyMask> {
        match *self {
            Recipe::Window(w) => Some(KeyMask {
                sinks: 0,
                window: w,
            }),
            Recipe::Sinks { sinks, window } => Some(KeyMask { sinks, window }),
            _ => None,
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::Interp(x) => write!(f, "interp:{x}"),
            Recipe::InterpDynamic => write!(f, "interp:dynamic"),
            Recipe::Ntk => write!(f, "ntk"),
            Recipe::Window(w) => write!(f, "window:{w}"),
            Recipe::Sinks { sinks, window } => write!(f, "sinks:{sinks}+{window}"),
        }
    }
}

const RECIPE_HINT: &str =
    "expected interp:F (F >= 1), interp:dynamic, ntk, window:W or sinks:K+W (W >= 1)";

impl FromStr for Recipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("--recipe '{s}': {what} ({RECIPE_HINT})");
        let whole = |x: &str, what: &str| -> Result<usize, String> {
            x.trim()
                .parse::<usize>()
                .map_err(|_| bad(&format!("{what} '{x}' is not a whole number")))
        };
        let t = s.trim();
        match t.split_once(':') {
            None if t == "ntk" => Ok(Recipe::Ntk),
            Some(("interp", "dynamic")) => Ok(Recipe::InterpDynamic),
            Some(("interp", f)) => {
                let f: f64 = f
                    .trim()
                    .parse()
                    .map_err(|_| bad(&format!("the factor '{f}' is not a number")))?;
                if !f.is_finite() || f < 1.0 {
                    return Err(bad("the factor must be a finite number of at least 1"));
                }
                Ok(Recipe::Interp(f))
            }
            Some(("window", w)) => {
                let w = whole(w, "the window")?;
                if w == 0 {
                    return Err(bad("the window must be at least 1"));
                }
                Ok(Recipe::Window(w))
            }
            Some(("sinks", kw)) => {
                let (k, w) = kw
                    .split_once('+')
                    .ok_or_else(|| bad("give the sinks and the window as K+W"))?;
                let (sinks, window) = (whole(k, "the sink count")?, whole(w, "the window")?);
                if window == 0 {
                    return Err(bad("the window must be at least 1"));
                }
                Ok(Recipe::Sinks { sinks, window })
            }
            _ => Err(bad("unknown recipe")),
        }
    }
}

/// Which keys a query keeps under a window or sinks recipe, and the ALiBi distance to each.
///
/// The cache kept for the query at absolute position `i` holds the first `sinks` positions and
/// the last `window` ones (`i - window + 1 ..= i`). As StreamingLLM does for MPT, the bias uses
/// positions *inside that cache*: a recent key is at its true distance `i - j`; a sink outside
/// the window is at `i - j - gap`, where `gap = i - window + 1 - sinks` is the number of
/// positions dropped between the sinks and the window (0 while nothing is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMask {
    /// Sink positions kept from the start.
    pub sinks: usize,
    /// Recent keys kept, the query included (>= 1).
    pub window: usize,
}

impl KeyMask {
    /// Whether the query at position `i` keeps the key at position `j <= i`.
    pub fn keeps(&self, i: usize, j: usize) -> bool {
        j <= i && (i - j < self.window || j < self.sinks)
    }

    /// Positions dropped between the sinks and the window for the query at `i`: how much nearer
    /// a sink is in the cache than in the text.
    pub fn gap(&self, i: usize) -> usize {
        (i + 1)
            .saturating_sub(self.window)
            .saturating_sub(self.sinks)
    }

    /// The ALiBi distance from query `i` to a kept key `j`, counted in the cache; `None` for a
    /// dropped key.
    pub fn distance(&self, i: usize, j: usize) -> Option<usize> {
        if !self.keeps(i, j) {
            return None;
        }
        Some(if i - j < self.window {
            i - j
        } else {
            i - j - self.gap(i)
        })
    }

    /// Whether the mask keeps every key of an input of `len` tokens (then it changes nothing).
    pub fn keeps_all(&self, len: usize) -> bool {
        self.window >= len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_lengths() {
        let base = [0.5, 0.25, 0.125, 0.0625];
        // Length-dependent slopes change nothing up to train_len, and change every flatter
        // head past it.
        for r in [Recipe::InterpDynamic, Recipe::Ntk] {
            assert!(r.is_identity_at(&base, 64, 128) && r.is_identity_at(&base, 128, 128));
            assert!(!r.is_identity_at(&base, 129, 128), "{r}");
        }
        assert!(Recipe::Interp(1.0).is_identity_at(&base, 4096, 128));
        assert!(!Recipe::Interp(2.0).is_identity_at(&base, 8, 128));
        assert!(Recipe::Window(128).is_identity_at(&base, 128, 128));
        assert!(!Recipe::Window(128).is_identity_at(&base, 129, 128));
        // No slopes (other schemes): only the mask matters.
        assert!(Recipe::Ntk.is_identity_at(&[], 4096, 128));
        assert!(!Recipe::Window(8).is_identity_at(&[], 9, 128));
    }

    #[test]
    fn presets_follow_the_scheme() {
        let a = Recipe::presets(128, true);
        assert_eq!(
            a.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "interp:2",
                "interp:dynamic",
                "ntk",
                "window:128",
                "sinks:4+124"
            ]
        );
        let s = Recipe::presets(128, false);
        assert!(s.iter().all(|r| !r.changes_slopes()) && s.len() == 2);
        assert_eq!(Recipe::presets(4, false), vec![Recipe::Window(4)]);
    }

    #[test]
    fn parses_and_prints_every_recipe() {
        for s in [
            "interp:2",
            "interp:dynamic",
            "ntk",
            "window:64",
            "sinks:4+60",
        ] {
            let r: Recipe = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        for bad in [
            "interp:0.5",
            "interp:nan",
            "interp:inf",
            "window:0",
            "window:-1",
            "sinks:4",
            "sinks:4+0",
            "yarn",
            "",
        ] {
            let e = bad.parse::<Recipe>().unwrap_err();
            assert!(e.contains("expected interp:F"), "{e}");
        }
    }

    #[test]
    fn slope_recipes_by_hand() {
        let base = [0.5, 0.25, 0.125, 0.0625];
        assert_eq!(
            Recipe::Interp(2.0).slopes(&base, 10, 10),
            [0.25, 0.125, 0.0625, 0.03125]
        );
        // interp:dynamic and ntk are the plain model up to train_len.
        for len in [1, 64, 128] {
            assert_eq!(Recipe::InterpDynamic.slopes(&base, len, 128), base);
            assert_eq!(Recipe::Ntk.slopes(&base, len, 128), base);
        }
        assert_eq!(
            Recipe::InterpDynamic.slopes(&base, 512, 128),
            [0.125, 0.0625, 0.031_25, 0.015_625]
        );
        // ntk at 8x: a = 8; head h divided by 8^(h/3) = 2^h.
        let ntk = Recipe::Ntk.slopes(&base, 1024, 128);
        let want = [0.5, 0.125, 0.031_25, 0.007_812_5];
        for (a, b) in ntk.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{ntk:?}");
        }
        assert_eq!(Recipe::Ntk.slopes(&[0.5], 1024, 128), [0.5]);
    }

    #[test]
    fn window_and_sinks_by_hand() {
        let w = Recipe::Window(3).key_mask().unwrap();
        assert!(w.keeps(5, 5) && w.keeps(5, 3) && !w.keeps(5, 2) && !w.keeps(5, 6));
        assert_eq!(w.distance(5, 3), Some(2));
        // sinks:2+3 at query 9: cache = {0, 1} + {7, 8, 9}; in the cache 9 sits at 4.
        let s = Recipe::Sinks {
            sinks: 2,
            window: 3,
        }
        .key_mask()
        .unwrap();
        let kept: Vec<usize> = (0..=9).filter(|&j| s.keeps(9, j)).collect();
        assert_eq!(kept, [0, 1, 7, 8, 9]);
        assert_eq!(s.gap(9), 5);
        assert_eq!(s.distance(9, 0), Some(4));
        assert_eq!(s.distance(9, 1), Some(3));
        assert_eq!(s.distance(9, 7), Some(2));
        assert_eq!(s.distance(9, 4), None);
        // Before anything is dropped the cache is the text.
        assert_eq!(s.gap(4), 0);
        assert_eq!(s.distance(4, 0), Some(4));
        // sinks:0+W is window:W.
        let z = Recipe::Sinks {
            sinks: 0,
            window: 3,
        }
        .key_mask()
        .unwrap();
        for i in 0..12 {
            for j in 0..=i {
                assert_eq!(z.distance(i, j), w.distance(i, j));
            }
        }
        assert!(w.keeps_all(3) && !w.keeps_all(4));
    }
}
