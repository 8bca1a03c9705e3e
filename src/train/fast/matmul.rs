//! Matrix products for the fast trainer: a bounds-checked, safe view of the `gemm` crate (the
//! AVX-512/AVX2 kernels candle uses on CPU), called straight on our own buffers so a step
//! allocates nothing and transposes are strides, not copies.

use gemm::Parallelism;

/// Products smaller than this many multiply-adds run on one thread (splitting costs more).
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// A read-only `rows x cols` matrix inside `data`: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// The row-major `rows x cols` matrix at the start of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// Rows `row_stride` apart, columns adjacent (a column block of a wider matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let m = Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        m.check("matrix");
        m
    }

    /// Rows `start..start + n` of a row-major view (columns adjacent).
    pub fn rows(self, start: usize, n: usize) -> Self {
        assert!(
            start + n <= self.rows,
            "rows {start}..{} of {}",
            start + n,
            self.rows
        );
        Self::strided(
            &self.data[(start * self.row_stride).min(self.data.len())..],
            n,
            self.cols,
            self.row_stride,
        )
    }

    /// The transpose (a view: strides swapped).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "{what}: {}x{} with strides ({}, {}) needs {} values, has {}",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                last + 1,
                self.data.len()
            );
        }
    }
}

/// A writable `rows x cols` matrix, rows `row_stride` apart, columns adjacent.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// The row-major `rows x cols` matrix at the start of `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// Rows `row_stride` apart (a column block of a wider matrix).
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + cols - 1;
            assert!(
                last < data.len(),
                "output: {rows}x{cols} with row stride {row_stride} needs {} values, has {}",
                last + 1,
                data.len()
            );
        }
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }
}

/// `dst = alpha * a @ b` (or `dst += alpha * a @ b` when `accumulate`), on every thread of the
/// pool for large products and on the caller's thread for small ones (`threads = false` forces
/// one thread, inside parallel tasks).
pub fn matmul(dst: MatMut, a: Mat, b: Mat, alpha: f32, accumulate: bool, threads: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.rows == m && dst.cols == n,
        "matmul shapes: ({m}x{k}) @ ({}x{n}) into ({}x{})",
        b.rows,
        dst.rows,
        dst.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst.data[r * dst.row_stride..r * dst.row_stride + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads && m * n * k >= PARALLEL_MIN_MACS {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: the views' constructors checked that every element `(r, c)` they address lies
    // inside their slices (strides and sizes are fixed once checked); the shapes agree (asserted
    // above); `dst` is borrowed mutably, so it overlaps neither input. `gemm` reads `m x k` of
    // `a`, `k x n` of `b` and writes `m x n` of `dst` at exactly those strides, and reads `dst`
    // only when `read_dst` is set.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn products_transposes_and_column_blocks_match_the_definition() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 * 0.5).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0f32; m * n];
        matmul(
            MatMut::new(&mut c, m, n),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            false,
            true,
        );
        assert_eq!(c, want);
        // a^T stored as (k, m): the transpose view gives a back.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut c2 = vec![1f32; m * n];
        matmul(
            MatMut::new(&mut c2, m, n),
            Mat::new(&at, k, m).t(),
            Mat::new(&b, k, n),
            2.0,
            true,
            false,
        );
        for (x, w) in c2.iter().zip(&want) {
            assert_eq!(*x, 1.0 + 2.0 * w);
        }
        // Output into a column block of a wider matrix leaves the other columns alone.
        let mut wide = vec![9f32; m * (n + 2)];
        matmul(
            MatMut::strided(&mut wide[1..], m, n, n + 2),
            Mat::new(&a, m, k),
            Mat::new(&b, k, n),
            1.0,
            false,
            true,
        );
        for r in 0..m {
            assert_eq!(wide[r * (n + 2)], 9.0);
            assert_eq!(
                &wide[r * (n + 2) + 1..r * (n + 2) + 1 + n],
                &want[r * n..(r + 1) * n]
            );
        }
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn views_past_the_end_are_refused() {
        let a = vec![0f32; 5];
        let _ = Mat::strided(&a, 2, 3, 3);
    }
}
