//! The LM head fused with the cross-entropy, forward and backward together: for a slice of rows
//! at a time, logits are projected, turned in place into the loss's gradient, and used at once for
//! the hidden states' and the weight's gradients, so full `(rows x vocab)` logits never exist (after
//! llm.c's fused classifier). Rows are sliced, not the vocabulary: a row's softmax needs all of it.

use super::kernels::softmax_xent_rows;
use super::matmul::{Mat, MatMut, matmul};

/// Rows per slice: 512 x a 4,096-token vocabulary is 8 MB of logits, which stays in the cache
/// between its three products.
pub const HEAD_ROWS: usize = 512;

/// The reusable buffers of the head.
#[derive(Debug)]
pub struct Head {
    logits: Vec<f32>,
    nll: Vec<f32>,
    vocab: usize,
}

impl Head {
    /// Buffers for `rows` positions per step over `vocab`.
    pub fn new(rows: usize, vocab: usize) -> Self {
        Self {
            logits: vec![0f32; HEAD_ROWS.min(rows) * vocab],
            nll: vec![0f32; rows],
            vocab,
        }
    }

    /// Mean NLL of `targets` given final hidden states `h` `(rows, d)` and the output weight `w`
    /// `(vocab, d)`; writes `dh` `(rows, d)` and adds to `dw` the gradients of that mean.
    pub fn forward_backward(
        &mut self,
        dh: &mut [f32],
        dw: &mut [f32],
        h: &[f32],
        w: &[f32],
        targets: &[u32],
        d: usize,
    ) -> f64 {
        let rows = targets.len();
        let v = self.vocab;
        let scale = 1.0 / rows as f32;
        let w_mat = Mat::new(w, v, d);
        let mut r0 = 0;
        while r0 < rows {
            let len = HEAD_ROWS.min(rows - r0);
            let logits = &mut self.logits[..len * v];
            let h_rows = Mat::new(&h[r0 * d..(r0 + len) * d], len, d);
            matmul(
                MatMut::new(logits, len, v),
                h_rows,
                w_mat.t(),
                1.0,
                false,
                true,
            );
            softmax_xent_rows(
                logits,
                &targets[r0..r0 + len],
                &mut self.nll[r0..r0 + len],
                v,
                scale,
            );
            matmul(
                MatMut::new(&mut dh[r0 * d..(r0 + len) * d], len, d),
                Mat::new(logits, len, v),
                w_mat,
                1.0,
                false,
                true,
            );
            matmul(
                MatMut::new(dw, v, d),
                Mat::new(logits, len, v).t(),
                h_rows,
                1.0,
                true,
                true,
            );
            r0 += len;
        }
        self.nll.iter().map(|&x| f64::from(x)).sum::<f64>() / rows as f64
    }
}
