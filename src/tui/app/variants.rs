//! Recipe curves and KL divergence curves: which lengths they are scored at, the jobs that score
//! them, what arrives, and the points the chart draws (a recipe that changes nothing at a length
//! takes the main curve's point there, exactly).

use super::super::curve::{NO_DIVERGENCE, RecipeCurve, variant_lengths};
use super::super::messages::{Job, VariantJob, VariantTarget};
use super::{App, Effect, MIN_LENGTH};
use crate::alibi::recipe::Recipe;
use crate::eval::{KlStats, Point};

impl App {
    /// Whether the current slopes differ from the model's own (then the main curve has a KL
    /// divergence from the original).
    pub fn slopes_edited(&self) -> bool {
        self.is_alibi()
            && self
                .info
                .slopes
                .as_ref()
                .is_some_and(|own| *own != self.slopes)
    }

    /// The current slopes, as recipes see them (empty for other schemes).
    fn recipe_base(&self) -> Vec<f64> {
        if self.is_alibi() {
            self.slopes.clone()
        } else {
            Vec::new()
        }
    }

    /// Whether `recipe` changes nothing at `len` with the current slopes.
    pub fn recipe_identity_at(&self, recipe: Recipe, len: usize) -> bool {
        recipe.is_identity_at(&self.recipe_base(), len, self.info.train_len)
    }

    fn variant_job(&self, target: VariantTarget, lengths: Vec<usize>) -> Effect {
        Effect::Job(Job::Variant(Box::new(VariantJob {
            generation: self.variant_gen,
            target,
            slopes: self.alibi_slopes(),
            lengths,
            lmax: self.lmax,
            min_len: MIN_LENGTH,
            done: 0,
        })))
    }

    /// New slopes or a new set of recipes: forgets every main and recipe variant result and
    /// asks for them again (an empty job still supersedes the stale ones queued).
    pub(super) fn variant_jobs(&mut self) -> Vec<Effect> {
        self.variant_gen += 1;
        self.curves[0].kl.clear();
        let lengths = variant_lengths(&self.grid, self.info.train_len);
        let main = if self.slopes_edited() {
            lengths.clone()
        } else {
            Vec::new()
        };
        let mut fx = vec![self.variant_job(VariantTarget::Main, main)];
        for i in 0..self.recipes.len() {
            let recipe = self.recipes[i].recipe;
            let needed: Vec<usize> = lengths
                .iter()
                .copied()
                .filter(|&l| !self.recipe_identity_at(recipe, l))
                .collect();
            let c = &mut self.recipes[i];
            c.points.clear();
            c.kl.clear();
            c.needed = needed.len();
            fx.push(self.variant_job(VariantTarget::Recipe { index: i, recipe }, needed));
        }
        fx
    }

    /// The KL jobs of the compare models that read the same tokens as the main model (their
    /// divergence never changes: it is asked for once).
    pub(super) fn compare_kl_jobs(&self) -> Vec<Effect> {
        let lengths = variant_lengths(&self.grid, self.info.train_len);
        let main = &self.curves[0].stream.ids;
        (1..self.curves.len())
            .filter(|&c| self.curves[c].stream.ids == *main)
            .map(|c| {
                Effect::Job(Job::Variant(Box::new(VariantJob {
                    generation: 0,
                    target: VariantTarget::Compare(c),
                    slopes: None,
                    lengths: lengths.clone(),
                    lmax: self.lmax,
                    min_len: MIN_LENGTH,
                    done: 0,
                })))
            })
            .collect()
    }

    /// Adds a recipe curve (no-op with a message when it is already on the chart); refuses slope
    /// recipes on models without ALiBi.
    pub fn add_recipe(&mut self, recipe: Recipe) -> Vec<Effect> {
        if recipe.changes_slopes() && !self.is_alibi() {
            self.error = Some(format!(
                "recipe {recipe} changes ALiBi slopes; {} uses {} positions (window and sinks recipes apply to every scheme)",
                self.info.name, self.info.position
            ));
            return Vec::new();
        }
        if self.recipes.iter().any(|c| c.recipe == recipe) {
            self.message = format!("recipe {recipe} is already on the chart");
            return Vec::new();
        }
        self.recipes.push(RecipeCurve::new(recipe));
        self.message = format!(
            "recipe {recipe}: scored length by length past where it changes nothing · C removes the recipes"
        );
        self.variant_jobs()
    }

    /// `c`: adds the next of [`Recipe::presets`] not yet on the chart.
    pub(super) fn next_recipe(&mut self) -> Vec<Effect> {
        let next = Recipe::presets(self.info.train_len, self.is_alibi())
            .into_iter()
            .find(|r| !self.recipes.iter().any(|c| c.recipe == *r));
        match next {
            Some(r) => self.add_recipe(r),
            None => {
                self.message =
                    "every recipe preset is on the chart (C removes them; --recipe adds others)"
                        .to_string();
                Vec::new()
            }
        }
    }

    /// `C`: removes every recipe curve.
    pub(super) fn clear_recipes(&mut self) -> Vec<Effect> {
        if self.recipes.is_empty() {
            self.message = "no recipe curves to remove (c adds one)".to_string();
            return Vec::new();
        }
        self.recipes.clear();
        self.message = "recipe curves removed".to_string();
        self.variant_jobs()
    }

    /// Takes one length of a variant job.
    pub(super) fn variant_arrived(
        &mut self,
        generation: u64,
        target: VariantTarget,
        len: usize,
        point: Option<Point>,
        kl: KlStats,
    ) {
        match target {
            VariantTarget::Compare(c) => {
                if let Some(curve) = self.curves.get_mut(c) {
                    curve.kl.insert(len, kl);
                }
            }
            _ if generation != self.variant_gen => {}
            VariantTarget::Main => {
                self.curves[0].kl.insert(len, kl);
            }
            VariantTarget::Recipe { index, recipe } => {
                if let Some(c) = self.recipes.get_mut(index)
                    && c.recipe == recipe
                {
                    if let Some(p) = point {
                        c.points.insert(len, p);
                    }
                    c.kl.insert(len, kl);
                }
            }
        }
    }

    /// A recipe curve's points at its lengths: its own where the recipe changes something, the
    /// main curve's elsewhere; a length not scored yet is left out.
    pub fn recipe_points(&self, index: usize) -> Vec<Point> {
        let Some(c) = self.recipes.get(index) else {
            return Vec::new();
        };
        let lengths = variant_lengths(&self.grid, self.info.train_len);
        let main = self.curves[0].points(&lengths);
        lengths
            .iter()
            .enumerate()
            .filter_map(|(i, &l)| {
                if self.recipe_identity_at(c.recipe, l) {
                    main.as_ref().map(|m| m[i]).filter(|p| p.tokens > 0)
                } else {
                    c.points.get(&l).copied()
                }
            })
            .collect()
    }

    /// A recipe curve's KL divergence at its lengths, as `(length, stats)`: where the recipe
    /// changes nothing it is the edited slopes' (none when they are the model's own).
    pub fn recipe_kl(&self, index: usize) -> Vec<(usize, KlStats)> {
        let Some(c) = self.recipes.get(index) else {
            return Vec::new();
        };
        let edited = self.slopes_edited();
        variant_lengths(&self.grid, self.info.train_len)
            .into_iter()
            .filter_map(|l| {
                let kl = if self.recipe_identity_at(c.recipe, l) {
                    if edited {
                        self.curves[0].kl.get(&l).copied()
                    } else {
                        Some(NO_DIVERGENCE)
                    }
                } else {
                    c.kl.get(&l).copied()
                };
                kl.map(|k| (l, k))
            })
            .collect()
    }
}
