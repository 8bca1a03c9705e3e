//! Times the fast trainer's step at a given shape on random tokens (profiling aid):
//! `cargo run --release --example train_step -- D_MODEL LAYERS TRAIN_LEN BATCH STEPS`; `-- gemm` measures
//! a large product's GFLOP/s, `-- kernels` times the row kernels at d_model 256, d_ff 1024, 4,096 rows.

use alibi_explorer::model::config::{Config, Position};
use alibi_explorer::model::init::init_params;
use alibi_explorer::train::fast::{FastModel, Layout};
use alibi_explorer::train::optim::{AdamWConfig, FlatAdamW};
use candle_core::Device;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("kernels") {
        use alibi_explorer::train::fast::kernels as k;
        let (n, c, f) = (4096, 256, 1024);
        let x = vec![0.3f32; n * c];
        let w = vec![1.1f32; c];
        let mut out = vec![0f32; n * c];
        let (mut m, mut r) = (vec![0f32; n], vec![0f32; n]);
        let mut u = vec![0.2f32; n * f];
        let mut g = vec![0f32; n * f];
        let mut db = vec![0f32; f];
        let (mut dw, mut dbc) = (vec![0f32; c], vec![0f32; c]);
        for _ in 0..3 {
            let t = Instant::now();
            k::layer_norm_forward(&mut out, &mut m, &mut r, &x, &w, Some(&w), 1e-5);
            let a = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            k::layer_norm_backward(&mut out, &mut dw, Some(&mut dbc), &x, &x, &m, &r, &w);
            let b = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            k::gelu_forward(&mut g, &u);
            let c1 = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            k::gelu_backward(&mut g, &u, Some(&mut db), f);
            let d = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            k::bias_gelu_forward(&mut g, &mut u, Some(&db), f);
            let e = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "ms: ln fwd {a:.2} ln bwd {b:.2} gelu fwd {c1:.2} gelu bwd {d:.2} bias+gelu {e:.2}"
            );
        }
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("gemm") {
        // The products' ceiling on this machine: a large square product, repeated.
        use alibi_explorer::train::fast::matmul::{Mat, MatMut, matmul};
        let n = 2048;
        let a = vec![1.0f32; n * n];
        let b = vec![0.5f32; n * n];
        let mut c = vec![0f32; n * n];
        for _ in 0..3 {
            let t0 = Instant::now();
            matmul(
                MatMut::new(&mut c, n, n),
                Mat::new(&a, n, n),
                Mat::new(&b, n, n),
                1.0,
                false,
                true,
            );
            let s = t0.elapsed().as_secs_f64();
            println!(
                "{n}^3 product: {:.1} GFLOP/s",
                2.0 * (n * n * n) as f64 / s / 1e9
            );
        }
        return Ok(());
    }
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
