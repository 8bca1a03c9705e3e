//! Position schemes as tensors: ALiBi bias blocks, sinusoidal tables and rotary embeddings.
//!
//! ALiBi follows Press et al. 2022 (bias `-m*(i-j)` added to the scaled scores), or Falcon-RW's
//! bf16 form of it (`build_alibi_tensor` in tiiuae's `modelling_RW.py` and transformers'
//! `modeling_falcon.py`); sinusoidal follows Vaswani et al. 2017; rotary follows Su et al. 2021 in
//! the GPT-NeoX "rotate half" layout.

use candle_core::{D, DType, Device, Result, Tensor};

/// How an ALiBi bias block is built from the `(heads,)` slopes (slopes on the softmax logits).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum BiasForm {
    /// `-m*(i-j)` in f32 (the paper, BLOOM, MPT, ours): see [`causal_bias`].
    #[default]
    Relative,
    /// Falcon-RW: `bf16(bf16(m/scale) * bf16(j)) * scale` for key `j`, the same for every query
    /// (softmax only sees differences along a row). `m/scale` is Falcon's own slope; its code adds
    /// the bias to the raw scores `q·k` in bf16 precision and scales both by `scale`.
    Bf16Keys {
        /// The factor on bias and scores together, `1/sqrt(head_dim)`.
        scale: f64,
    },
}

/// The ALiBi bias block in `form`, shape `(heads, q_len, k_len)` in f32, `-inf` above the
/// diagonal; with `slopes = None`, only the causal mask `(1, q_len, k_len)`.
pub fn alibi_bias(
    slopes: Option<&Tensor>,
    form: BiasForm,
    q_start: usize,
    q_len: usize,
    k_len: usize,
    device: &Device,
) -> Result<Tensor> {
    match (slopes, form) {
        (Some(slopes), BiasForm::Bf16Keys { scale }) => {
            let mask = causal_bias(None, q_start, q_len, k_len, device)?; // (1, q_len, k_len)
            let heads = slopes.dim(0)?;
            let keys: Vec<f32> = (0..k_len).map(|j| j as f32).collect();
            // torch casts the integer positions to bf16 before the product, as here.
            let keys = Tensor::from_vec(keys, (1, k_len), device)?.to_dtype(DType::BF16)?;
            let raw = slopes
                .to_dtype(DType::F32)?
                .affine(1.0 / scale, 0.0)?
                .to_dtype(DType::BF16)?
                .reshape((heads, 1))?;
            // (heads, 1) * (1, k_len), rounded to bf16, then scaled in f32 -> (heads, 1, k_len)
            let per_key = raw
                .broadcast_mul(&keys)?
                .to_dtype(DType::F32)?
                .affine(scale, 0.0)?
                .unsqueeze(1)?;
            per_key.broadcast_add(&mask)
        }
        _ => causal_bias(slopes, q_start, q_len, k_len, device),
    }
}

/// The additive attention bias for queries `q_start..q_start+q_len` against keys `0..k_len`,
/// shape `(heads, q_len, k_len)` in f32: `-m_h*(i-j)` for `j <= i` and `-inf` above the diagonal.
/// With `slopes = None` only the causal mask is returned, shape `(1, q_len, k_len)`.
///
/// `slopes` is a `(heads,)` f32 tensor; the result stays differentiable in it.
///
/// The block is built where it is used, from two `arange`s (only `q_len + k_len` numbers cross from
/// the host), so on a GPU the `q_len x k_len` bias never travels over the bus.
pub fn causal_bias(
    slopes: Option<&Tensor>,
    q_start: usize,
    q_len: usize,
    k_len: usize,
    device: &Device,
) -> Result<Tensor> {
    let positions = |from: usize, n: usize| -> Result<Tensor> {
        let v: Vec<f32> = (from..from + n).map(|p| p as f32).collect();
        Tensor::from_vec(v, n, device)
    };
    let i = positions(q_start, q_len)?.reshape((q_len, 1))?;
    let j = positions(0, k_len)?.reshape((1, k_len))?;
    // j - i: 0 on the diagonal, negative to the left (the past), positive in the future.
    let diff = j.broadcast_sub(&i)?;
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (q_len, k_len), device)?;
    let zeros = Tensor::zeros((q_len, k_len), DType::F32, device)?;
    let mask = diff.gt(0f64)?.where_cond(&neg_inf, &zeros)?.unsqueeze(0)?;
    match slopes {
        None => Ok(mask),
        Some(slopes) => {
            let heads = slopes.dim(0)?;
            // -(i - j) for j <= i, 0 in the future (masked anyway).
            let dist = diff.minimum(0f64)?.unsqueeze(0)?;
            // (heads, 1, 1) * (1, q_len, k_len) -> (heads, q_len, k_len)
            slopes
                .reshape((heads, 1, 1))?
                .broadcast_mul(&dist)?
                .broadcast_add(&mask)
        }
    }
}

/// The sinusoidal position table for positions `0..len`, shape `(len, d_model)`:
/// `PE(p, 2i) = sin(p / 10000^(2i/d))`, `PE(p, 2i+1) = cos(p / 10000^(2i/d))`.
pub fn sinusoidal_table(
    len: usize,
    d_model: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    sinusoidal_rows(0, len, d_model, dtype, device)
}

/// Rows `start..start+len` of the sinusoidal table, shape `(len, d_model)`.
pub fn sinusoidal_rows(
    start: usize,
    len: usize,
    d_model: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut data = vec![0f32; len * d_model];
    for (row, p) in (start..start + len).enumerate() {
        for i in (0..d_model).step_by(2) {
            let freq = 1.0 / 10_000f64.powf(i as f64 / d_model as f64);
            let angle = p as f64 * freq;
            data[row * d_model + i] = angle.sin() as f32;
            if i + 1 < d_model {
                data[row * d_model + i + 1] = angle.cos() as f32;
            }
        }
    }
    Tensor::from_vec(data, (len, d_model), device)?.to_dtype(dtype)
}

/// Rotary cos/sin tables for positions `0..len`, each `(len, head_dim)` (halves repeated).
pub fn rotary_tables(
    len: usize,
    head_dim: usize,
    base: f64,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = vec![0f32; len * head_dim];
    let mut sin = vec![0f32; len * head_dim];
    for p in 0..len {
        for i in 0..half {
            let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
            let angle = p as f64 * freq;
            for k in [i, i + half] {
                cos[p * head_dim + k] = angle.cos() as f32;
                sin[p * head_dim + k] = angle.sin() as f32;
            }
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, head_dim), device)?.to_dtype(dtype)?,
        Tensor::from_vec(sin, (len, head_dim), device)?.to_dtype(dtype)?,
    ))
}

/// Applies rotary embeddings to `x` of shape `(batch, heads, len, head_dim)`:
/// `x*cos + rotate_half(x)*sin` with `rotate_half([a, b]) = [-b, a]`.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let head_dim = x.dim(D::Minus1)?;
    let half = head_dim / 2;
    let a = x.narrow(D::Minus1, 0, half)?;
    let b = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&b.neg()?, &a], D::Minus1)?;
    x.broadcast_mul(cos)?.add(&rotated.broadcast_mul(sin)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_block_matches_the_pure_formula() {
        let dev = Device::Cpu;
        let slopes_f64 = crate::alibi::paper_slopes(6);
        let slopes_f32: Vec<f32> = slopes_f64.iter().map(|&m| m as f32).collect();
        let slopes = Tensor::new(slopes_f32.as_slice(), &dev).unwrap();
        let b = causal_bias(Some(&slopes), 3, 4, 7, &dev).unwrap();
        assert_eq!(b.dims(), &[6, 4, 7]);
        let v = b.to_vec3::<f32>().unwrap();
        for (h, m) in slopes_f64.iter().enumerate() {
            for qi in 0..4 {
                for j in 0..7 {
                    let want = crate::alibi::bias(*m, qi + 3, j) as f32;
                    let got = v[h][qi][j];
                    assert!(got == want || (got - want).abs() < 1e-6, "{got} vs {want}");
                }
            }
        }
        let mask = causal_bias(None, 0, 2, 2, &dev)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!(mask[0], vec![vec![0.0, f32::NEG_INFINITY], vec![0.0, 0.0]]);
    }

    #[test]
    fn falcon_bias_rounds_in_bf16_and_keeps_the_mask() {
        let dev = Device::Cpu;
        // Effective slope 0.70710677/8 (Falcon's 2^-0.5 at head_dim 64).
        let m = std::f32::consts::FRAC_1_SQRT_2;
        let slopes = Tensor::new(&[m / 8.0, 0.25 / 8.0], &dev).unwrap();
        let form = BiasForm::Bf16Keys { scale: 0.125 };
        let b = alibi_bias(Some(&slopes), form, 300, 2, 302, &dev).unwrap();
        assert_eq!(b.dims(), &[2, 2, 302]);
        let v = b.to_vec3::<f32>().unwrap();
        let bf = |x: f32| half::bf16::from_f32(x).to_f32();
        for j in [0usize, 1, 23, 255, 256, 257, 259, 300] {
            let want = bf(bf(m) * bf(j as f32)) * 0.125;
            assert_eq!(v[0][0][j], want, "key {j}");
        }
        // 2^-0.5 is not a bf16 number; 257 is not either (it becomes 256).
        assert_ne!(v[0][0][23], m * 23.0 * 0.125);
        assert_eq!(v[1][0][257], v[1][0][256]);
        assert_eq!(v[0][0][301], f32::NEG_INFINITY);
        assert!(v[0][1][301].is_finite());
        // Without slopes only the mask is left, as in the relative form.
        let mask = alibi_bias(None, form, 0, 2, 2, &dev).unwrap();
        assert_eq!(mask.dims(), &[1, 2, 2]);
    }

    #[test]
    fn zero_slopes_do_not_make_nan() {
        let dev = Device::Cpu;
        let slopes = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let b = causal_bias(Some(&slopes), 0, 3, 3, &dev).unwrap();
        assert!(
            b.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|x| !x.is_nan())
        );
    }

    #[test]
    fn sinusoidal_values() {
        let t = sinusoidal_table(3, 4, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(t[0], vec![0.0, 1.0, 0.0, 1.0]);
        assert!((t[1][0] - 1f32.sin()).abs() < 1e-6);
        assert!((t[2][2] - (2.0f64 / 100.0).sin() as f32).abs() < 1e-6);
    }

    #[test]
    fn rotary_preserves_norm_and_relative_dot_products() {
        let dev = Device::Cpu;
        let (cos, sin) = rotary_tables(8, 4, 10_000.0, DType::F32, &dev).unwrap();
        let q = Tensor::new(&[0.3f32, -1.2, 0.7, 2.0], &dev).unwrap();
        let k = Tensor::new(&[1.1f32, 0.4, -0.5, 0.9], &dev).unwrap();
        let rep = |t: &Tensor| {
            t.reshape((1, 1, 1, 4))
                .unwrap()
                .repeat((1, 1, 8, 1))
                .unwrap()
        };
        let rq = apply_rotary(&rep(&q), &cos, &sin)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let rk = apply_rotary(&rep(&k), &cos, &sin)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let rq = rq.to_vec2::<f32>().unwrap();
        let rk = rk.to_vec2::<f32>().unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        // q at position 5, k at 3 equals q at 2, k at 0: only the distance matters.
        assert!((dot(&rq[5], &rk[3]) - dot(&rq[2], &rk[0])).abs() < 1e-4);
        assert!((dot(&rq[6], &rq[6]) - dot(&rq[0], &rq[0])).abs() < 1e-4);
    }
}
