//! Parameter names, shapes and a seeded initialisation for our own architecture.
//!
//! Initialisation follows GPT-2: normal(0, 0.02) weights, residual projections scaled by
//! `1/sqrt(2*n_layers)`, zero biases, unit LayerNorm gains. A seeded generator makes training
//! runs and tests reproducible without candle's device RNG.

use super::config::Config;
use candle_core::{Device, Result, Tensor};
use std::collections::HashMap;

/// Standard deviation of the initial weights.
pub const INIT_STD: f64 = 0.02;

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with this standard deviation.
    Normal(f64),
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// Every parameter of `cfg` as (name, shape, initialisation), in a fixed order.
pub fn param_specs(cfg: &Config) -> Vec<(String, Vec<usize>, Init)> {
    let d = cfg.d_model;
    let resid = Init::Normal(INIT_STD / (2.0 * cfg.n_layers as f64).sqrt());
    let mut specs = vec![(
        "tok_emb.weight".to_string(),
        vec![cfg.vocab_size, d],
        Init::Normal(INIT_STD),
    )];
    let norm = |specs: &mut Vec<(String, Vec<usize>, Init)>, name: &str| {
        specs.push((format!("{name}.weight"), vec![d], Init::Ones));
        if cfg.norm_bias {
            specs.push((format!("{name}.bias"), vec![d], Init::Zeros));
        }
    };
    if cfg.embed_norm {
        norm(&mut specs, "emb_norm");
    }
    for i in 0..cfg.n_layers {
        let p = format!("blocks.{i}");
        norm(&mut specs, &format!("{p}.ln1"));
        if cfg.qk_norm {
            norm(&mut specs, &format!("{p}.attn.q_norm"));
            norm(&mut specs, &format!("{p}.attn.k_norm"));
        }
        let linears = [
            ("attn.qkv", 3 * d, d, Init::Normal(INIT_STD)),
            ("attn.out", d, d, resid),
            ("mlp.up", cfg.d_ff, d, Init::Normal(INIT_STD)),
            ("mlp.down", d, cfg.d_ff, resid),
        ];
        for (name, out_dim, in_dim, init) in linears {
            specs.push((format!("{p}.{name}.weight"), vec![out_dim, in_dim], init));
            if cfg.linear_bias {
                specs.push((format!("{p}.{name}.bias"), vec![out_dim], Init::Zeros));
            }
        }
        norm(&mut specs, &format!("{p}.ln2"));
    }
    norm(&mut specs, "ln_f");
    if !cfg.tie_embeddings {
        specs.push((
            "lm_head.weight".to_string(),
            vec![cfg.vocab_size, d],
            Init::Normal(INIT_STD),
        ));
    }
    specs
}

/// The number of parameters of `cfg`.
pub fn param_count(cfg: &Config) -> usize {
    param_specs(cfg)
        .iter()
        .map(|(_, s, _)| s.iter().product::<usize>())
        .sum()
}

/// A small, seeded generator (SplitMix64) with Box-Muller normals.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Freshly initialised f32 parameters for `cfg`, reproducible from `seed`.
pub fn init_params(cfg: &Config, seed: u64, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut out = HashMap::new();
    for (name, shape, init) in param_specs(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match init {
            Init::Normal(std) => (0..n).map(|_| (rng.normal() * std) as f32).collect(),
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
        };
        out.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Ok(out)
}

/// A randomly initialised model for `cfg` in f32 (tests, benchmarks, the start of training).
pub fn random_model(
    cfg: &Config,
    seed: u64,
    device: &Device,
) -> Result<super::transformer::Transformer> {
    let params = init_params(cfg, seed, device)?;
    let vb = candle_nn::VarBuilder::from_tensors(params, candle_core::DType::F32, device);
    super::transformer::Transformer::new(cfg, vb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Position;

    #[test]
    fn counts_and_determinism() {
        let cfg = Config::ours(10, 8, 1, 2, 16, Position::Alibi, 4);
        // emb 80 + ln1 16 + qkv 24*8+24 + out 64+8 + up 128+16 + down 128+8 + ln2 16 + ln_f 16
        assert_eq!(param_count(&cfg), 80 + 16 + 216 + 72 + 144 + 136 + 16 + 16);
        let a = init_params(&cfg, 7, &Device::Cpu).unwrap();
        let b = init_params(&cfg, 7, &Device::Cpu).unwrap();
        let c = init_params(&cfg, 8, &Device::Cpu).unwrap();
        let v = |m: &HashMap<String, Tensor>| {
            m["tok_emb.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
        let mut rng = Rng::new(1);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
