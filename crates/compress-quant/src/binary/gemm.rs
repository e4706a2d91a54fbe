//! Inference with binary weights: binary weights x real activations, and the XNOR-popcount
//! GEMM for binary weights x binary activations.

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayView2};

use super::kernels::{XnorArgs, XnorKernel, xnor_gemm_kernel};
use super::matrix::BinaryMatrix;
use crate::QuantError;

/// `y = x W^T (+ bias)` for real `x` `[batch, in]` and binary `W` `[out, in]`:
/// `y[i, o] = alpha_o * (2 * sum_{c: W[o,c] = +1} x[i, c] - sum_c x[i, c])`, so only
/// additions touch the activations.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when `x` does not have `w.cols()` columns or the bias does not
/// have `w.rows()` values.
///
/// ```
/// use compress_quant::binary::{BinaryMatrix, BinaryScale, binary_linear};
/// use ndarray::array;
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let w = BinaryMatrix::from_weights(array![[1.0f32, -1.0], [-2.0, -2.0]].view(), BinaryScale::PerChannel)?;
/// let y = binary_linear(array![[3.0f32, 5.0]].view(), &w, None)?;
/// assert_eq!(y, array![[-2.0f32, -16.0]]);
/// # Ok(()) }
/// ```
pub fn binary_linear<F: Float>(
    x: ArrayView2<'_, F>,
    w: &BinaryMatrix,
    bias: Option<&[F]>,
) -> Result<Array2<F>, QuantError> {
    if x.ncols() != w.cols() {
        return Err(
            CoreError::shape("binary_linear input", &[x.nrows(), w.cols()], x.shape()).into(),
        );
    }
    if let Some(b) = bias
        && b.len() != w.rows()
    {
        return Err(CoreError::shape("binary_linear bias", &[w.rows()], &[b.len()]).into());
    }
    let mut y = Array2::zeros((x.nrows(), w.rows()));
    let mut row = vec![F::zero(); w.cols()];
    let two = F::lit(2.0);
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        for (d, &s) in row.iter_mut().zip(xr.iter()) {
            *d = s;
        }
        let total = row.iter().fold(F::zero(), |a, &v| a + v);
        for (o, yo) in yr.iter_mut().enumerate() {
            let mut pos = F::zero();
            for (wi, &word) in w.row_words(o).iter().enumerate() {
                let base = wi * 64;
                let mut bits = word;
                while bits != 0 {
                    pos += row[base + bits.trailing_zeros() as usize];
                    bits &= bits - 1;
                }
            }
            let mut v = F::lit(f64::from(w.alphas()[o])) * (two * pos - total);
            if let Some(b) = bias {
                v += b[o];
            }
            *yo = v;
        }
    }
    Ok(y)
}

/// The ±1 dot products of every row of `a` with every row of `b` (`a` `[m, k]`, `b` `[n, k]`,
/// result `[m, n]`): `k - 2 * popcount(a_i xor b_j)`, unscaled.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when the column counts differ.
///
/// ```
/// use compress_quant::binary::{BinaryMatrix, xnor_gemm};
/// use ndarray::array;
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let a = BinaryMatrix::from_signs(array![[1.0f32, -1.0, 1.0]].view(), vec![1.0]);
/// let b = BinaryMatrix::from_signs(array![[1.0f32, 1.0, 1.0], [-1.0, 1.0, -1.0]].view(), vec![1.0, 1.0]);
/// assert_eq!(xnor_gemm(&a, &b)?, array![[1, -3]]);
/// # Ok(()) }
/// ```
pub fn xnor_gemm(a: &BinaryMatrix, b: &BinaryMatrix) -> Result<Array2<i32>, QuantError> {
    let mut out = Array2::zeros((a.rows(), b.rows()));
    // A fresh standard-layout array is contiguous.
    let slice = out.as_slice_mut().unwrap_or(&mut []);
    xnor_gemm_into(a, b, slice, XnorKernel::Auto)?;
    Ok(out)
}

/// [`xnor_gemm`] into a caller's row-major buffer of `a.rows() * b.rows()` values, with a
/// chosen kernel (an unavailable kernel falls back to the portable one).
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when the column counts or the buffer length differ.
pub fn xnor_gemm_into(
    a: &BinaryMatrix,
    b: &BinaryMatrix,
    out: &mut [i32],
    kernel: XnorKernel,
) -> Result<(), QuantError> {
    if a.cols() != b.cols() {
        return Err(
            CoreError::shape("xnor_gemm b", &[b.rows(), a.cols()], &[b.rows(), b.cols()]).into(),
        );
    }
    if out.len() != a.rows() * b.rows() {
        return Err(CoreError::shape("xnor_gemm out", &[a.rows() * b.rows()], &[out.len()]).into());
    }
    let args = XnorArgs {
        a: a.words(),
        b: b.words(),
        m: a.rows(),
        n: b.rows(),
        w: a.words_per_row(),
        k: a.cols(),
    };
    xnor_gemm_kernel(&args, out, kernel);
    Ok(())
}

/// XNOR-Net's binary layer: `y[i, o] = beta_i * alpha_o * (±1 dot)` for binarized activations
/// (`beta` = their per-row scales) and binary weights.
///
/// # Errors
///
/// As [`xnor_gemm`].
pub fn xnor_linear(x: &BinaryMatrix, w: &BinaryMatrix) -> Result<Array2<f32>, QuantError> {
    let dots = xnor_gemm(x, w)?;
    Ok(Array2::from_shape_fn(dots.dim(), |(i, o)| {
        x.alphas()[i] * w.alphas()[o] * dots[[i, o]] as f32
    }))
}
