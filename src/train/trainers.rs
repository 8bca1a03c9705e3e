//! The two trainers the training loop drives through one interface: candle autograd (any device
//! and dtype candle runs; the reference) and the fast CPU f32 path ([`super::fast`]). Both keep
//! checkpoints in the same format, so a run may resume on either.

use super::checkpoint::{Loaded, adamw_tensors, restore_adamw};
use super::fast::layout::SLOPES_NAME;
use super::fast::{FastModel, Layout};
use super::optim::{AdamW, AdamWConfig, FlatAdamW};
use crate::model::config::Config;
use crate::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use color_eyre::eyre::{Result, bail, eyre};
use std::collections::HashMap;

/// Validation windows are capped at this many, to keep validation quick.
pub const MAX_VALID_WINDOWS: usize = 64;

/// A model's weights by checkpoint name, and its learned slopes.
pub(super) type Weights = (HashMap<String, Tensor>, Option<Vec<f64>>);

/// What the training loop needs from a trainer.
pub(super) trait Trainer {
    /// One optimiser step on a batch at learning rate `lr`, clipping the gradient's global norm
    /// to `clip` (0: no clipping); returns the loss and the norm before clipping.
    fn step(&mut self, inputs: &[u32], targets: &[u32], lr: f64, clip: f64) -> Result<(f64, f64)>;
    /// The model as inference sees it now and the slopes its attention takes (validation and
    /// the copy test run on it).
    fn inference(&self) -> Result<(Transformer, Option<Tensor>)>;
    /// Parameters and AdamW moments as checkpoints store them.
    fn checkpoint(&self) -> Result<HashMap<String, Tensor>>;
    /// Takes parameters and moments from a checkpoint.
    fn restore(&mut self, loaded: &Loaded) -> Result<()>;
    /// The model's weights by checkpoint name, and the learned slopes.
    fn weights(&self) -> Result<Weights>;
}

/// Mean NLL over up to [`MAX_VALID_WINDOWS`] non-overlapping validation windows.
pub(super) fn validate(model: &Transformer, valid: &[u32], slopes: Option<&Tensor>) -> Result<f64> {
    let train_len = model.config().train_len;
    let n = ((valid.len() - 1) / train_len).min(MAX_VALID_WINDOWS);
    let mut inputs = Vec::with_capacity(n * train_len);
    let mut targets = Vec::with_capacity(n * train_len);
    for w in 0..n {
        inputs.extend_from_slice(&valid[w * train_len..(w + 1) * train_len]);
        targets.extend_from_slice(&valid[w * train_len + 1..(w + 1) * train_len + 1]);
    }
    let dev = model.device();
    let x = Tensor::from_vec(inputs, (n, train_len), dev)?;
    let y = Tensor::from_vec(targets, (n, train_len), dev)?;
    let opts = ForwardOptions {
        slopes: slopes.cloned(),
        ..Default::default()
    };
    let out = model.forward_hidden(&x, &opts)?;
    Ok(f64::from(
        model.nll(&out.hidden, &y)?.mean_all()?.to_scalar::<f32>()?,
    ))
}

/// candle autograd: parameters are `Var`s the optimiser updates in place.
pub(super) struct Autograd {
    vars: HashMap<String, Var>,
    learned: Option<Var>,
    opt: AdamW,
    model: Transformer,
    /// The slopes attention takes: the learned `Var`'s tensor or the fixed ones.
    slopes: Option<Tensor>,
    batch: usize,
}

impl Autograd {
    pub(super) fn new(
        cfg: &Config,
        params: HashMap<String, Tensor>,
        slopes: Option<Vec<f64>>,
        learn_slopes: bool,
        adamw: AdamWConfig,
        batch: usize,
        device: &Device,
    ) -> Result<Self> {
        let vars = params
            .into_iter()
            .map(|(k, t)| Ok((k, Var::from_tensor(&t)?)))
            .collect::<candle_core::Result<HashMap<_, _>>>()?;
        let slopes = slopes.map(|s| slopes_tensor(&s, device)).transpose()?;
        let learned = match (&slopes, learn_slopes) {
            (Some(s), true) => Some(Var::from_tensor(s)?),
            _ => None,
        };
        let mut named: Vec<(String, Var)> =
            vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(s) = &learned {
            named.push((SLOPES_NAME.to_string(), s.clone()));
        }
        let ts = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        // The model and the slopes share storage with the `Var`s, which the optimiser updates
        // in place, so one model serves every step and every validation.
        let model = Transformer::new(cfg, VarBuilder::from_tensors(ts, DType::F32, device))?;
        Ok(Self {
            slopes: learned.as_ref().map(|v| v.as_tensor().clone()).or(slopes),
            opt: AdamW::new(named, adamw)?,
            vars,
            learned,
            model,
            batch,
        })
    }
}

impl Trainer for Autograd {
    fn step(&mut self, inputs: &[u32], targets: &[u32], lr: f64, clip: f64) -> Result<(f64, f64)> {
        let dev = self.model.device();
        let l = self.model.config().train_len;
        let x = Tensor::from_slice(inputs, (self.batch, l), dev)?;
        let y = Tensor::from_slice(targets, (self.batch, l), dev)?;
        let opts = ForwardOptions {
            slopes: self.slopes.clone(),
            train: true,
            ..Default::default()
        };
        let out = self.model.forward_hidden(&x, &opts)?;
        let loss = self.model.nll(&out.hidden, &y)?.mean_all()?;
        let grads = loss.backward()?;
        let loss_v = f64::from(loss.to_scalar::<f32>()?);
        if !loss_v.is_finite() {
            return Ok((loss_v, f64::NAN));
        }
        let norm = self.opt.grad_norm(&grads)?;
        self.opt.step(&grads, lr, clip_scale(norm, clip))?;
        Ok((loss_v, norm))
    }

    fn inference(&self) -> Result<(Transformer, Option<Tensor>)> {
        // The model shares storage with the `Var`s: a clone sees the current weights.
        Ok((self.model.clone(), self.slopes.clone()))
    }

    fn checkpoint(&self) -> Result<HashMap<String, Tensor>> {
        Ok(adamw_tensors(&self.opt))
    }

    fn restore(&mut self, loaded: &Loaded) -> Result<()> {
        restore_adamw(loaded, &mut self.opt)
    }

    fn weights(&self) -> Result<Weights> {
        let params = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let slopes = match &self.learned {
            Some(s) => Some(
                s.as_tensor()
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            ),
            None => None,
        };
        Ok((params, slopes))
    }
}

/// The factor on the gradient that clips its norm to `clip` (0 disables clipping).
fn clip_scale(norm: f64, clip: f64) -> f64 {
    if clip > 0.0 && norm > clip {
        clip / norm
    } else {
        1.0
    }
}

/// The fast CPU f32 trainer: [`FastModel`] and [`FlatAdamW`] on flat buffers.
pub(super) struct Fast {
    model: FastModel,
    opt: FlatAdamW,
    ranges: Vec<(std::ops::Range<usize>, bool)>,
    cfg: Config,
}

impl Fast {
    pub(super) fn new(
        cfg: &Config,
        params: &HashMap<String, Tensor>,
        slopes: Option<Vec<f64>>,
        learn_slopes: bool,
        adamw: AdamWConfig,
        batch: usize,
    ) -> Result<Self> {
        let layout = Layout::new(cfg, learn_slopes && slopes.is_some());
        let mut all = params.clone();
        if let (Some(s), true) = (&slopes, learn_slopes) {
            all.insert(SLOPES_NAME.to_string(), slopes_tensor(s, &Device::Cpu)?);
        }
        let flat = layout.gather(&all)?;
        let ranges = layout
            .entries
            .iter()
            .map(|e| (e.range.clone(), e.decay))
            .collect();
        let opt = FlatAdamW::new(layout.len, adamw);
        let model = FastModel::new(cfg, batch, layout, flat, slopes).map_err(|e| eyre!(e))?;
        Ok(Self {
            model,
            opt,
            ranges,
            cfg: cfg.clone(),
        })
    }
}

impl Trainer for Fast {
    fn step(&mut self, inputs: &[u32], targets: &[u32], lr: f64, clip: f64) -> Result<(f64, f64)> {
        let loss = self
            .model
            .forward_backward(inputs, targets)
            .map_err(|e| eyre!(e))?;
        if !loss.is_finite() {
            return Ok((loss, f64::NAN));
        }
        let norm = FlatAdamW::grad_norm(&self.model.grads);
        self.opt.step(
            &mut self.model.params,
            &self.model.grads,
            &self.ranges,
            lr,
            clip_scale(norm, clip),
        );
        Ok((loss, norm))
    }

    fn inference(&self) -> Result<(Transformer, Option<Tensor>)> {
        let (params, _) = self.weights()?;
        let dev = Device::Cpu;
        let model = Transformer::new(
            &self.cfg,
            VarBuilder::from_tensors(params, DType::F32, &dev),
        )?;
        let slopes = self
            .model
            .slopes()
            .map(|s| Tensor::from_vec(s, self.cfg.n_heads, &dev))
            .transpose()?;
        Ok((model, slopes))
    }

    fn checkpoint(&self) -> Result<HashMap<String, Tensor>> {
        let l = &self.model.layout;
        let mut out = HashMap::new();
        for (prefix, buf) in [
            ("param", &self.model.params),
            ("m", &self.opt.m),
            ("v", &self.opt.v),
        ] {
            for (name, t) in l.tensors(buf)? {
                out.insert(format!("{prefix}.{name}"), t);
            }
        }
        Ok(out)
    }

    fn restore(&mut self, loaded: &Loaded) -> Result<()> {
        let l = &self.model.layout;
        for e in &l.entries {
            for (prefix, buf) in [
                ("param", &mut self.model.params),
                ("m", &mut self.opt.m),
                ("v", &mut self.opt.v),
            ] {
                let t = loaded.get(prefix, &e.name, &e.shape)?;
                let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                buf[e.range.clone()].copy_from_slice(&v);
            }
        }
        self.opt.step = loaded.state.step;
        if self.opt.m.iter().chain(&self.opt.v).any(|x| !x.is_finite()) {
            bail!("the checkpoint's optimiser moments are not finite");
        }
        Ok(())
    }

    fn weights(&self) -> Result<Weights> {
        let l = &self.model.layout;
        let mut params = l.tensors(&self.model.params)?;
        params.remove(SLOPES_NAME);
        let slopes = l.slopes.as_ref().map(|r| {
            self.model.params[r.clone()]
                .iter()
                .map(|&m| f64::from(m))
                .collect()
        });
        Ok((params, slopes))
    }
}
