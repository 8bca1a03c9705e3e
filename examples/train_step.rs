//! Times the fast trainer's step at a given shape on random tokens (profiling aid):
//! `cargo run --release --example train_step -- D_MODEL LAYERS TRAIN_LEN BATCH STEPS`.

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::train::fast::{FastModel, Layout};
use alibi_explorer::train::optim::{AdamWConfig, FlatAdamW};
use candle_core::Device;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let (d, layers, t, batch, steps) = match a.as_slice() {
        [d, l, t, b, s] => (*d, *l, *t, *b, *s),
        _ => (256, 6, 256, 16, 5),
    };
    let cfg = Config::ours(4096, d, layers, 8, 4 * d, Position::Alibi, t);
    let layout = Layout::new(&cfg, false);
    let flat = layout.gather(&init_params(&cfg, 1, &Device::Cpu)?)?;
    let ranges: Vec<_> = layout
        .entries
        .iter()
        .map(|e| (e.range.clone(), e.decay))
        .collect();
    let mut opt = FlatAdamW::new(
        layout.len,
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        },
    );
    let mut m = FastModel::new(&cfg, batch, layout, flat, None)?;
    let n = batch * t;
    let x: Vec<u32> = (0..n).map(|i| (i * 7919 % 4096) as u32).collect();
    let y: Vec<u32> = (0..n).map(|i| ((i + 1) * 7919 % 4096) as u32).collect();
    for s in 0..steps {
        let t0 = Instant::now();
        let loss = m.forward_backward(&x, &y)?;
        let t1 = t0.elapsed().as_secs_f64();
        let norm = FlatAdamW::grad_norm(&m.grads);
        opt.step(&mut m.params, &m.grads, &ranges, 1e-3, 1.0 / norm.max(1.0));
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "step {s} loss {loss:.4} fwd+bwd {t1:.3}s total {dt:.3}s {:.0} tokens/s",
            n as f64 / dt
        );
    }
    Ok(())
}
