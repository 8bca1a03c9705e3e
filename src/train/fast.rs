//! The fast CPU trainer: a hand-written forward and backward pass of our own architecture in f32
//! (after Karpathy's llm.c), with parameters, gradients and AdamW moments in flat buffers, every
//! activation allocated once per run, matrix products straight through `gemm`, attention that keeps
//! only a log-sum-exp per row ([`attention`]), and the LM head fused with the cross-entropy a
//! slice of rows at a time so full logits never exist ([`head`]).
//!
//! It computes the same function and the same gradients as the candle autograd path
//! (`model::transformer` with `train: true`), which stays the reference in tests and the trainer on
//! other devices and dtypes. Configs it does not implement are refused by [`supports`], never
//! trained approximately.

pub mod attention;
pub mod head;
pub mod kernels;
pub mod layout;
pub mod matmul;

use crate::model::config::{Activation, AlibiForm, Arch, Config, Position};
use attention::AttnShape;
use kernels::{
    add_bias, bias_backward, bias_gelu_forward, gelu_backward, gelu_forward, layer_norm_backward,
    layer_norm_forward, rotary,
};
pub use layout::Layout;
use matmul::{Mat, MatMut, matmul};

/// Why the fast trainer cannot train `cfg` (then the candle path does), or `Ok`.
pub fn supports(cfg: &Config) -> Result<(), String> {
    let no = |what: &str| Err(format!("the fast CPU trainer does not implement {what}"));
    if cfg.arch != Arch::Ours {
        return no("foreign architectures");
    }
    if cfg.qk_norm {
        return no("qk_norm");
    }
    if cfg.clip_qkv.is_some() {
        return no("clip_qkv");
    }
    if cfg.activation != Activation::GeluTanh {
        return no("the erf GELU");
    }
    if cfg.alibi_form != AlibiForm::Relative {
        return no("Falcon's bf16 ALiBi");
    }
    Ok(())
}

/// Activations one block keeps from forward to backward.
#[derive(Debug)]
struct BlockActs {
    ln1: Vec<f32>,
    mean1: Vec<f32>,
    rstd1: Vec<f32>,
    qkv: Vec<f32>,
    y: Vec<f32>,
    lse: Vec<f32>,
    mid: Vec<f32>,
    ln2: Vec<f32>,
    mean2: Vec<f32>,
    rstd2: Vec<f32>,
    up: Vec<f32>,
}

/// The model being trained, with every buffer a step needs.
#[derive(Debug)]
pub struct FastModel {
    cfg: Config,
    batch: usize,
    /// Where each parameter lives in `params` and `grads`.
    pub layout: Layout,
    /// All parameters.
    pub params: Vec<f32>,
    /// Their gradients after [`Self::forward_backward`].
    pub grads: Vec<f32>,
    fixed_slopes: Option<Vec<f32>>,
    sinusoid: Option<Vec<f32>>,
    rope: Option<(Vec<f32>, Vec<f32>)>,
    tokens: Vec<u32>,
    /// Residual stream: the embedding, then each block's output.
    resid: Vec<Vec<f32>>,
    emb: Vec<f32>,
    emb_stats: (Vec<f32>, Vec<f32>),
    blocks: Vec<BlockActs>,
    lnf: Vec<f32>,
    lnf_stats: (Vec<f32>, Vec<f32>),
    gelu: Vec<f32>,
    d_res: Vec<f32>,
    d_tmp: Vec<f32>,
    d_big: Vec<f32>,
    d_qkv: Vec<f32>,
    head: head::Head,
}

impl FastModel {
    /// A model of `cfg` for batches of `batch` windows of `cfg.train_len`, with `params` in
    /// `layout` order (see [`Layout`]). ALiBi models without learned slopes use `slopes`.
    pub fn new(
        cfg: &Config,
        batch: usize,
        layout: Layout,
        params: Vec<f32>,
        slopes: Option<Vec<f64>>,
    ) -> Result<Self, String> {
        supports(cfg)?;
        cfg.validate()?;
        if params.len() != layout.len {
            return Err(format!(
                "{} parameter values for a layout of {}",
                params.len(),
                layout.len
            ));
        }
        let (t, d, f) = (cfg.train_len, cfg.d_model, cfg.d_ff);
        let n = batch * t;
        let z = |k: usize| vec![0f32; k];
        let fixed_slopes = match (cfg.position, &layout.slopes) {
            (Position::Alibi, None) => Some(
                slopes
                    .unwrap_or_else(|| cfg.default_slopes())
                    .iter()
                    .map(|&m| m as f32)
                    .collect(),
            ),
            _ => None,
        };
        let sinusoid = (cfg.position == Position::Sinusoidal).then(|| {
            crate::model::position::sinusoidal_rows(
                0,
                t,
                d,
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .and_then(|x| x.flatten_all()?.to_vec1::<f32>())
            .unwrap_or_default()
        });
        let rope = (cfg.position == Position::Rotary)
            .then(|| kernels::rotary_tables(t, cfg.head_dim(), cfg.rotary_base));
        let blocks = (0..cfg.n_layers)
            .map(|_| BlockActs {
                ln1: z(n * d),
                mean1: z(n),
                rstd1: z(n),
                qkv: z(n * 3 * d),
                y: z(n * d),
                lse: z(n * cfg.n_heads),
                mid: z(n * d),
                ln2: z(n * d),
                mean2: z(n),
                rstd2: z(n),
                up: z(n * f),
            })
            .collect();
        Ok(Self {
            head: head::Head::new(n, cfg.vocab_size),
            cfg: cfg.clone(),
            batch,
            grads: z(layout.len),
            layout,
            params,
            fixed_slopes,
            sinusoid,
            rope,
            tokens: vec![0; n],
            resid: (0..=cfg.n_layers).map(|_| z(n * d)).collect(),
            emb: if cfg.embed_norm { z(n * d) } else { Vec::new() },
            emb_stats: if cfg.embed_norm {
                (z(n), z(n))
            } else {
                (Vec::new(), Vec::new())
            },
            blocks,
            lnf: z(n * d),
            lnf_stats: (z(n), z(n)),
            gelu: z(n * f),
            d_res: z(n * d),
            d_tmp: z(n * d),
            d_big: z(n * f),
            d_qkv: z(n * 3 * d),
        })
    }

    /// The slopes attention uses now (learned or fixed), ALiBi only.
    pub fn slopes(&self) -> Option<Vec<f32>> {
        match &self.layout.slopes {
            Some(r) => Some(self.params[r.clone()].to_vec()),
            None => self.fixed_slopes.clone(),
        }
    }

    fn attn_shape(&self) -> AttnShape {
        AttnShape {
            len: self.cfg.train_len,
            d: self.cfg.d_model,
            heads: self.cfg.n_heads,
            head_dim: self.cfg.head_dim(),
        }
    }

    /// One forward and backward pass over `inputs` and `targets` (`batch * train_len` ids each):
    /// returns the mean next-token loss (nats) and leaves its gradient in [`Self::grads`].
    pub fn forward_backward(&mut self, inputs: &[u32], targets: &[u32]) -> Result<f64, String> {
        let (t, d) = (self.cfg.train_len, self.cfg.d_model);
        let n = self.batch * t;
        if inputs.len() != n || targets.len() != n {
            return Err(format!("a batch needs {n} inputs and targets"));
        }
        let vocab = self.cfg.vocab_size as u32;
        if let Some(bad) = inputs.iter().chain(targets).find(|&&id| id >= vocab) {
            return Err(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            ));
        }
        self.tokens.copy_from_slice(inputs);
        self.embed();
        for l in 0..self.cfg.n_layers {
            self.block_forward(l);
        }
        let eps = self.cfg.layer_norm_eps as f32;
        let p = &self.params;
        let ln = &self.layout.ln_f;
        layer_norm_forward(
            &mut self.lnf,
            &mut self.lnf_stats.0,
            &mut self.lnf_stats.1,
            &self.resid[self.cfg.n_layers],
            &p[ln.w.clone()],
            ln.b.clone().map(|b| &p[b]),
            eps,
        );
        self.grads.fill(0.0);
        let w_range = self
            .layout
            .lm_head
            .clone()
            .unwrap_or(self.layout.tok_emb.clone());
        let loss = self.head.forward_backward(
            &mut self.d_tmp,
            &mut self.grads[w_range.clone()],
            &self.lnf,
            &self.params[w_range],
            targets,
            d,
        );
        // Final LayerNorm backward into the residual stream's gradient.
        self.d_res.fill(0.0);
        let (g_w, g_b) = norm_grads(&mut self.grads, ln);
        layer_norm_backward(
            &mut self.d_res,
            g_w,
            g_b,
            &self.d_tmp,
            &self.resid[self.cfg.n_layers],
            &self.lnf_stats.0,
            &self.lnf_stats.1,
            &self.params[ln.w.clone()],
        );
        for l in (0..self.cfg.n_layers).rev() {
            self.block_backward(l);
        }
        self.embed_backward();
        Ok(loss)
    }

    fn embed(&mut self) {
        let d = self.cfg.d_model;
        let scale = self.cfg.embed_scale as f32;
        let table = &self.params[self.layout.tok_emb.clone()];
        let dst = if self.cfg.embed_norm {
            &mut self.emb
        } else {
            &mut self.resid[0]
        };
        for (row, &id) in dst.chunks_exact_mut(d).zip(&self.tokens) {
            let src = &table[id as usize * d..(id as usize + 1) * d];
            for (o, s) in row.iter_mut().zip(src) {
                *o = s * scale;
            }
        }
        if let Some(norm) = &self.layout.emb_norm {
            let p = &self.params;
            layer_norm_forward(
                &mut self.resid[0],
                &mut self.emb_stats.0,
                &mut self.emb_stats.1,
                &self.emb,
                &p[norm.w.clone()],
                norm.b.clone().map(|b| &p[b]),
                self.cfg.layer_norm_eps as f32,
            );
        }
        if let Some(pe) = &self.sinusoid {
            for seq in self.resid[0].chunks_exact_mut(pe.len()) {
                for (x, p) in seq.iter_mut().zip(pe) {
                    *x += p;
                }
            }
        }
    }

    fn embed_backward(&mut self) {
        let d = self.cfg.d_model;
        let scale = self.cfg.embed_scale as f32;
        let d_emb = if let Some(norm) = &self.layout.emb_norm {
            self.d_tmp.fill(0.0);
            let (g_w, g_b) = norm_grads(&mut self.grads, norm);
            layer_norm_backward(
                &mut self.d_tmp,
                g_w,
                g_b,
                &self.d_res,
                &self.emb,
                &self.emb_stats.0,
                &self.emb_stats.1,
                &self.params[norm.w.clone()],
            );
            &self.d_tmp
        } else {
            &self.d_res
        };
        let g = &mut self.grads[self.layout.tok_emb.clone()];
        for (row, &id) in d_emb.chunks_exact(d).zip(&self.tokens) {
            let dst = &mut g[id as usize * d..(id as usize + 1) * d];
            for (o, s) in dst.iter_mut().zip(row) {
                *o += s * scale;
            }
        }
    }

    fn block_forward(&mut self, l: usize) {
        let (d, f) = (self.cfg.d_model, self.cfg.d_ff);
        let n = self.batch * self.cfg.train_len;
        let eps = self.cfg.layer_norm_eps as f32;
        let shape = self.attn_shape();
        let slopes = self.slopes();
        let p = &self.params;
        let b = &self.layout.blocks[l];
        let (before, after) = self.resid.split_at_mut(l + 1);
        let (x, out) = (&before[l], &mut after[0]);
        let a = &mut self.blocks[l];
        layer_norm_forward(
            &mut a.ln1,
            &mut a.mean1,
            &mut a.rstd1,
            x,
            &p[b.ln1.w.clone()],
            b.ln1.b.clone().map(|r| &p[r]),
            eps,
        );
        linear_forward(&mut a.qkv, &a.ln1, p, &b.qkv, n, d, 3 * d, false);
        if let Some((cos, sin)) = &self.rope {
            rotary(&mut a.qkv, d, shape.head_dim, shape.len, (cos, sin), false);
        }
        attention::forward(&mut a.y, &mut a.lse, &a.qkv, slopes.as_deref(), shape);
        a.mid.copy_from_slice(x);
        linear_forward(&mut a.mid, &a.y, p, &b.out, n, d, d, true);
        layer_norm_forward(
            &mut a.ln2,
            &mut a.mean2,
            &mut a.rstd2,
            &a.mid,
            &p[b.ln2.w.clone()],
            b.ln2.b.clone().map(|r| &p[r]),
            eps,
        );
        matmul(
            MatMut::new(&mut a.up, n, f),
            Mat::new(&a.ln2, n, d),
            Mat::new(&p[b.up.w.clone()], f, d).t(),
            1.0,
            false,
            true,
        );
        bias_gelu_forward(&mut self.gelu, &mut a.up, b.up.b.clone().map(|r| &p[r]), f);
        out.copy_from_slice(&a.mid);
        linear_forward(out, &self.gelu, p, &b.down, n, f, d, true);
    }

    fn block_backward(&mut self, l: usize) {
        let (d, f) = (self.cfg.d_model, self.cfg.d_ff);
        let n = self.batch * self.cfg.train_len;
        let shape = self.attn_shape();
        let slopes = self.slopes();
        let b = self.layout.blocks[l].clone();
        let a = &self.blocks[l];
        let p = &self.params;
        let g = &mut self.grads;
        // MLP down: needs the GELU output again (recomputed rather than kept per block).
        gelu_forward(&mut self.gelu, &a.up);
        linear_backward(
            g,
            &b.down,
            &mut self.d_big,
            &self.d_res,
            &self.gelu,
            p,
            n,
            f,
            d,
        );
        gelu_backward(&mut self.d_big, &a.up, b.up.b.clone().map(|r| &mut g[r]), f);
        linear_backward_no_bias(g, &b.up, &mut self.d_tmp, &self.d_big, &a.ln2, p, n, d, f);
        let (g_w, g_b) = norm_grads(g, &b.ln2);
        layer_norm_backward(
            &mut self.d_res,
            g_w,
            g_b,
            &self.d_tmp,
            &a.mid,
            &a.mean2,
            &a.rstd2,
            &p[b.ln2.w.clone()],
        );
        // Attention output projection, then attention itself.
        linear_backward(g, &b.out, &mut self.d_tmp, &self.d_res, &a.y, p, n, d, d);
        let d_slopes = attention::backward(
            &mut self.d_qkv,
            &self.d_tmp,
            &a.qkv,
            &a.y,
            &a.lse,
            slopes.as_deref(),
            shape,
        );
        if let Some(r) = &self.layout.slopes {
            for (o, v) in g[r.clone()].iter_mut().zip(&d_slopes) {
                *o += v;
            }
        }
        if let Some((cos, sin)) = &self.rope {
            rotary(
                &mut self.d_qkv,
                d,
                shape.head_dim,
                shape.len,
                (cos, sin),
                true,
            );
        }
        linear_backward(
            g,
            &b.qkv,
            &mut self.d_tmp,
            &self.d_qkv,
            &a.ln1,
            p,
            n,
            d,
            3 * d,
        );
        let (g_w, g_b) = norm_grads(g, &b.ln1);
        layer_norm_backward(
            &mut self.d_res,
            g_w,
            g_b,
            &self.d_tmp,
            &self.resid[l],
            &a.mean1,
            &a.rstd1,
            &p[b.ln1.w.clone()],
        );
    }
}

/// The gain and bias gradients of a LayerNorm.
fn norm_grads<'a>(g: &'a mut [f32], norm: &layout::Norm) -> (&'a mut [f32], Option<&'a mut [f32]>) {
    match &norm.b {
        // Bias follows gain in `param_specs` order.
        Some(b) => {
            let (lo, hi) = g.split_at_mut(b.start);
            (&mut lo[norm.w.clone()], Some(&mut hi[..b.len()]))
        }
        None => (&mut g[norm.w.clone()], None),
    }
}

/// `out (+)= x W^T + b` for `x` `(n, d_in)` and `W` `(d_out, d_in)`.
#[allow(clippy::too_many_arguments)]
fn linear_forward(
    out: &mut [f32],
    x: &[f32],
    p: &[f32],
    lin: &layout::Linear,
    n: usize,
    d_in: usize,
    d_out: usize,
    accumulate: bool,
) {
    matmul(
        MatMut::new(out, n, d_out),
        Mat::new(x, n, d_in),
        Mat::new(&p[lin.w.clone()], d_out, d_in).t(),
        1.0,
        accumulate,
        true,
    );
    if let Some(b) = &lin.b {
        add_bias(out, &p[b.clone()]);
    }
}

/// Backward of [`linear_forward`] for `dy` `(n, d_out)`: `dW += dy^T x`, `db += colsum(dy)`,
/// `dx = dy W` (overwritten).
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    g: &mut [f32],
    lin: &layout::Linear,
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    p: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    if let Some(b) = &lin.b {
        bias_backward(&mut g[b.clone()], dy);
    }
    linear_backward_no_bias(g, lin, dx, dy, x, p, n, d_in, d_out);
}

/// [`linear_backward`] without the bias (its gradient taken elsewhere, as the GELU's backward
/// does).
#[allow(clippy::too_many_arguments)]
fn linear_backward_no_bias(
    g: &mut [f32],
    lin: &layout::Linear,
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    p: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    matmul(
        MatMut::new(&mut g[lin.w.clone()], d_out, d_in),
        Mat::new(dy, n, d_out).t(),
        Mat::new(x, n, d_in),
        1.0,
        true,
        true,
    );
    matmul(
        MatMut::new(dx, n, d_in),
        Mat::new(dy, n, d_out),
        Mat::new(&p[lin.w.clone()], d_out, d_in),
        1.0,
        false,
        true,
    );
}
