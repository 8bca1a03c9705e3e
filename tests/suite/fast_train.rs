//! The fast CPU trainer against candle autograd on tiny models: the loss and the gradient of every
//! parameter (and of learned slopes) agree for all four position schemes and every config flag it
//! implements; configs it does not implement are refused.

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::{Rng, init_params};
use alibi_explorer::model::transformer::{ForwardOptions, Transformer, slopes_tensor};
use alibi_explorer::train::fast::{FastModel, Layout, layout::SLOPES_NAME, supports};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// Parameters with every value perturbed, so biases and gains are not at their trivial start.
fn params(cfg: &Config, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    init_params(cfg, seed, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(|x| x + (rng.normal() * 0.1) as f32)
                .collect();
            let t = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
            (k, t)
        })
        .collect()
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

/// Loss and gradients (by checkpoint name) from candle autograd.
fn candle_grads(
    cfg: &Config,
    p: &HashMap<String, Tensor>,
    slopes: Option<&[f64]>,
    learn: bool,
    x: &[u32],
    y: &[u32],
    batch: usize,
) -> (f64, HashMap<String, Vec<f32>>) {
    let dev = Device::Cpu;
    let vars: HashMap<String, Var> = p
        .iter()
        .map(|(k, t)| (k.clone(), Var::from_tensor(t).unwrap()))
        .collect();
    let ts = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let model = Transformer::new(cfg, VarBuilder::from_tensors(ts, DType::F32, &dev)).unwrap();
    let slope_var = slopes.map(|s| Var::from_tensor(&slopes_tensor(s, &dev).unwrap()).unwrap());
    let opts = ForwardOptions {
        slopes: slope_var.as_ref().map(|v| v.as_tensor().clone()),
        train: true,
        ..Default::default()
    };
    let t = cfg.train_len;
    let xt = Tensor::from_slice(x, (batch, t), &dev).unwrap();
    let yt = Tensor::from_slice(y, (batch, t), &dev).unwrap();
    let out = model.forward_hidden(&xt, &opts).unwrap();
    let loss = model.nll(&out.hidden, &yt).unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let mut g: HashMap<String, Vec<f32>> = vars
        .iter()
        .map(|(k, v)| {
            let gv = grads.get(v).map_or_else(
                || vec![0.0; v.elem_count()],
                |t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            (k.clone(), gv)
        })
        .collect();
    if learn && let Some(v) = &slope_var {
        g.insert(
            SLOPES_NAME.into(),
            grads.get(v).unwrap().to_vec1::<f32>().unwrap(),
        );
    }
    (f64::from(loss.to_scalar::<f32>().unwrap()), g)
}

fn check(cfg: &Config, learn: bool, batch: usize) {
    let p = params(cfg, 11);
    let slopes: Option<Vec<f64>> = (cfg.position == Position::Alibi)
        .then(|| cfg.default_slopes().iter().map(|m| m * 1.3).collect());
    let n = batch * cfg.train_len;
    let x = tokens(n, cfg.vocab_size, 1);
    let y = tokens(n, cfg.vocab_size, 2);
    let (loss_ref, g_ref) = candle_grads(cfg, &p, slopes.as_deref(), learn, &x, &y, batch);
    let layout = Layout::new(cfg, learn);
    let mut all = p.clone();
    if learn {
        all.insert(
            SLOPES_NAME.into(),
            slopes_tensor(slopes.as_deref().unwrap(), &Device::Cpu).unwrap(),
        );
    }
    let flat = layout.gather(&all).unwrap();
    let mut fast = FastModel::new(cfg, batch, layout.clone(), flat, slopes.clone()).unwrap();
    let loss = fast.forward_backward(&x, &y).unwrap();
    let what = format!("{} learn={learn} {cfg:?}", cfg.position);
    assert!(
        (loss - loss_ref).abs() < 1e-5 * loss_ref.abs().max(1.0),
        "loss {loss} vs {loss_ref} ({what})"
    );
    for e in &layout.entries {
        let got = &fast.grads[e.range.clone()];
        let want = &g_ref[&e.name];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 2e-4 * scale,
            "{}: max difference {worst} against a largest gradient of {scale} ({what})",
            e.name
        );
        assert!(
            want.iter().any(|v| *v != 0.0),
            "{} gets no gradient in candle ({what})",
            e.name
        );
    }
}

fn tiny(position: Position, train_len: usize) -> Config {
    Config::ours(37, 16, 2, 4, 24, position, train_len)
}

#[test]
fn gradients_match_candle_for_every_position_scheme() {
    for position in Position::ALL {
        check(&tiny(position, 9), false, 3);
    }
    check(&tiny(Position::Alibi, 9), true, 2);
}

#[test]
fn gradients_match_candle_across_query_blocks() {
    // Longer than one query block of the attention (64), not a multiple of it.
    check(&tiny(Position::Alibi, 150), true, 2);
    check(&tiny(Position::Rotary, 70), false, 1);
}

#[test]
fn gradients_match_candle_with_other_config_flags() {
    let mut cfg = tiny(Position::Sinusoidal, 9);
    cfg.linear_bias = false;
    cfg.norm_bias = false;
    cfg.tie_embeddings = false;
    cfg.embed_norm = true;
    cfg.embed_scale = 1.0;
    check(&cfg, false, 2);
    let mut cfg = tiny(Position::None, 9);
    cfg.embed_norm = true;
    check(&cfg, false, 2);
}

#[test]
fn unimplemented_configs_are_refused() {
    let mut cfg = tiny(Position::Alibi, 9);
    cfg.qk_norm = true;
    assert!(supports(&cfg).unwrap_err().contains("qk_norm"));
    let mut cfg = tiny(Position::Alibi, 9);
    cfg.clip_qkv = Some(6.0);
    assert!(supports(&cfg).is_err());
    let layout = Layout::new(&cfg, false);
    let n = layout.len;
    assert!(FastModel::new(&cfg, 1, layout, vec![0.0; n], None).is_err());
}

#[test]
fn a_step_is_repeatable_bit_for_bit_with_threaded_products() {
    // Large enough that the products and the row kernels split across threads.
    let cfg = Config::ours(512, 64, 2, 4, 256, Position::Alibi, 128);
    let layout = Layout::new(&cfg, true);
    let mut all = params(&cfg, 5);
    all.insert(
        SLOPES_NAME.into(),
        slopes_tensor(&cfg.default_slopes(), &Device::Cpu).unwrap(),
    );
    let flat = layout.gather(&all).unwrap();
    let mut m = FastModel::new(&cfg, 8, layout, flat, None).unwrap();
    let x = tokens(8 * 128, 512, 3);
    let y = tokens(8 * 128, 512, 4);
    let first = m.forward_backward(&x, &y).unwrap();
    let grads = m.grads.clone();
    for _ in 0..3 {
        assert_eq!(
            m.forward_backward(&x, &y).unwrap().to_bits(),
            first.to_bits()
        );
        assert!(m.grads == grads, "gradients differ between identical steps");
    }
}
