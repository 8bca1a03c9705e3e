//! Finite-difference checks of each fused backward kernel of the fast trainer: LayerNorm, bias +
//! tanh GELU, attention (queries, keys, values and ALiBi slopes), the LM head fused with the
//! cross-entropy, and the rotary rotation (its backward is its transpose).

#![allow(clippy::unwrap_used)]

use alibi_explorer::model::init::Rng;
use alibi_explorer::train::fast::attention::{self, AttnShape};
use alibi_explorer::train::fast::head::Head;
use alibi_explorer::train::fast::kernels;

fn random(n: usize, scale: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (rng.normal() * scale) as f32).collect()
}

/// Central differences of `loss` at every `step`-th value of `x` against `grad`.
fn check(what: &str, x: &[f32], grad: &[f32], step: usize, loss: impl Fn(&[f32]) -> f64) {
    let h = 1e-2f32;
    let scale = grad.iter().fold(0f32, |m, g| m.max(g.abs())).max(1e-3);
    for i in (0..x.len()).step_by(step) {
        let mut p = x.to_vec();
        p[i] += h;
        let up = loss(&p);
        p[i] -= 2.0 * h;
        let down = loss(&p);
        let fd = ((up - down) / (2.0 * f64::from(h))) as f32;
        assert!(
            (fd - grad[i]).abs() <= 1e-2 * scale + 1e-4,
            "{what}[{i}]: finite difference {fd} vs backward {}",
            grad[i]
        );
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let (rows, c) = (5, 12);
    let x = random(rows * c, 1.0, 1);
    let w = random(c, 1.0, 2);
    let b = random(c, 0.5, 3);
    let dout = random(rows * c, 1.0, 4);
    let forward = |x: &[f32], w: &[f32], b: &[f32]| {
        let mut out = vec![0f32; rows * c];
        let (mut m, mut r) = (vec![0f32; rows], vec![0f32; rows]);
        kernels::layer_norm_forward(&mut out, &mut m, &mut r, x, w, Some(b), 1e-5);
        (out, m, r)
    };
    let (_, m, r) = forward(&x, &w, &b);
    let (mut dx, mut dw, mut db) = (vec![0f32; rows * c], vec![0f32; c], vec![0f32; c]);
    kernels::layer_norm_backward(&mut dx, &mut dw, Some(&mut db), &dout, &x, &m, &r, &w);
    check("dx", &x, &dx, 1, |x| dot(&forward(x, &w, &b).0, &dout));
    check("dweight", &w, &dw, 1, |w| dot(&forward(&x, w, &b).0, &dout));
    check("dbias", &b, &db, 1, |b| dot(&forward(&x, &w, b).0, &dout));
}

#[test]
fn bias_gelu_backward_matches_finite_differences() {
    let (rows, f) = (4, 9);
    let u0 = random(rows * f, 2.0, 5);
    let bias = random(f, 1.0, 6);
    let dg = random(rows * f, 1.0, 7);
    let forward = |u0: &[f32], bias: &[f32]| {
        let (mut u, mut g) = (u0.to_vec(), vec![0f32; rows * f]);
        kernels::bias_gelu_forward(&mut g, &mut u, Some(bias), f);
        (u, g)
    };
    let (u, _) = forward(&u0, &bias);
    let mut du = dg.clone();
    let mut db = vec![0f32; f];
    kernels::gelu_backward(&mut du, &u, Some(&mut db), f);
    check("du", &u0, &du, 1, |u0| dot(&forward(u0, &bias).1, &dg));
    check("dbias", &bias, &db, 1, |b| dot(&forward(&u0, b).1, &dg));
}

#[test]
fn attention_backward_matches_finite_differences() {
    // Two sequences, longer than one query block, three heads of width 4.
    let a = AttnShape {
        len: attention::QUERY_BLOCK + 6,
        d: 12,
        heads: 3,
        head_dim: 4,
    };
    let batch = 2;
    let n = batch * a.len;
    let qkv = random(n * 3 * a.d, 0.7, 8);
    let slopes = vec![0.5f32, 0.125, 0.03];
    let dy = random(n * a.d, 1.0, 9);
    let forward = |qkv: &[f32], slopes: Option<&[f32]>| {
        let (mut y, mut lse) = (vec![0f32; n * a.d], vec![0f32; batch * a.heads * a.len]);
        attention::forward(&mut y, &mut lse, qkv, slopes, a);
        (y, lse)
    };
    for slopes in [Some(slopes.as_slice()), None] {
        let (y, lse) = forward(&qkv, slopes);
        let mut dqkv = vec![0f32; n * 3 * a.d];
        let dm = attention::backward(&mut dqkv, &dy, &qkv, &y, &lse, slopes, a);
        check("dqkv", &qkv, &dqkv, 7, |q| dot(&forward(q, slopes).0, &dy));
        if let Some(s) = slopes {
            check("dslopes", s, &dm, 1, |s| {
                dot(&forward(&qkv, Some(s)).0, &dy)
            });
        }
    }
}

#[test]
fn fused_head_and_loss_backward_matches_finite_differences() {
    let (rows, d, vocab) = (6, 5, 11);
    let h = random(rows * d, 1.0, 10);
    let w = random(vocab * d, 1.0, 11);
    let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % vocab as u32).collect();
    let loss = |h: &[f32], w: &[f32]| {
        let (mut dh, mut dw) = (vec![0f32; rows * d], vec![0f32; vocab * d]);
        Head::new(rows, vocab).forward_backward(&mut dh, &mut dw, h, w, &targets, d)
    };
    let (mut dh, mut dw) = (vec![0f32; rows * d], vec![0f32; vocab * d]);
    Head::new(rows, vocab).forward_backward(&mut dh, &mut dw, &h, &w, &targets, d);
    check("dh", &h, &dh, 1, |h| loss(h, &w));
    check("dw", &w, &dw, 1, |w| loss(&h, w));
}

#[test]
fn rotary_backward_is_the_transpose_of_forward() {
    let (len, d, hd) = (7, 8, 4);
    let tables = kernels::rotary_tables(len, hd, 10_000.0);
    let x = random(2 * len * 3 * d, 1.0, 12);
    let y = random(2 * len * 3 * d, 1.0, 13);
    let (mut rx, mut ry) = (x.clone(), y.clone());
    kernels::rotary(&mut rx, d, hd, len, (&tables.0, &tables.1), false);
    kernels::rotary(&mut ry, d, hd, len, (&tables.0, &tables.1), true);
    // <R x, y> = <x, R^T y>, and R^T undoes R.
    assert!((dot(&rx, &y) - dot(&x, &ry)).abs() < 1e-3);
    kernels::rotary(&mut rx, d, hd, len, (&tables.0, &tables.1), true);
    assert!(rx.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
}
