//! Array-level helpers: int8 matrix products of `f32` arrays, and a [`QTensor`]'s codes,
//! scales and error bound per element.

use compress_core::CoreError;
use ndarray::{Array2, ArrayD, ArrayRef, Ix2, IxDyn};

use crate::kernels::{PackedB, gemm_i8, quantize_rows_i8_into};
use crate::pack::{sign_extend, unpack_bits};
use crate::qtensor::BlockLayout;
use crate::{QTensor, QuantError, QuantScheme};

/// A matrix quantized row by row to symmetric int8: `x[r, c] ~ codes[r, c] * scales[r]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Rows {
    /// The codes, `[rows, cols]`, in `-127..=127`.
    pub codes: Array2<i8>,
    /// One scale per row (`max |row| / 127`, or `1` for an all-zero row).
    pub scales: Vec<f32>,
}

impl Int8Rows {
    /// Quantizes each row of `x` with its own symmetric scale.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] naming `path`, the flat index and the value.
    pub fn quantize(x: &ArrayRef<f32, Ix2>, path: &str) -> Result<Self, QuantError> {
        let (rows, cols) = x.dim();
        let mut codes = Array2::<i8>::zeros((rows, cols));
        let mut scales = vec![1.0f32; rows];
        if rows == 0 || cols == 0 {
            return Ok(Self { codes, scales });
        }
        let flat = x.as_standard_layout();
        let (Some(src), Some(dst)) = (flat.as_slice(), codes.as_slice_mut()) else {
            unreachable!("standard-layout arrays are contiguous");
        };
        quantize_rows_i8_into(src, cols, dst, &mut scales).map_err(|e| e.at_path(path))?;
        Ok(Self { codes, scales })
    }

    /// The dequantized matrix.
    pub fn dequantize(&self) -> Array2<f32> {
        let mut out = self.codes.mapv(f32::from);
        for (mut row, &s) in out.rows_mut().into_iter().zip(&self.scales) {
            row *= s;
        }
        out
    }
}

/// `a · w^T` through the int8 GEMM, with `w` as `[n, k]` (a Linear weight `[out, in]`):
/// rows of `a` and rows of `w` get their own symmetric scales, the products are exact
/// `i32` sums, and each output is rescaled by `scale_a[i] * scale_w[j]`.
///
/// The error of each output is bounded by the rounding of the inputs (at most half a scale
/// per element on each side); see [`matmul_i8`] for `a · b`.
///
/// ```
/// use compress_quant::matmul_i8_t;
/// use ndarray::array;
/// let a = array![[1.0f32, 2.0], [0.5, -1.0]];
/// let w = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// let y = matmul_i8_t(&a, &w).unwrap();
/// let exact = a.dot(&w.t());
/// assert!(y.iter().zip(&exact).all(|(p, e)| (p - e).abs() < 0.02));
/// ```
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when the inner dimensions differ; [`CoreError::NonFinite`]
/// (path `a` or `w`) for a NaN or infinite input.
pub fn matmul_i8_t(
    a: &ArrayRef<f32, Ix2>,
    w: &ArrayRef<f32, Ix2>,
) -> Result<Array2<f32>, QuantError> {
    let (m, k) = a.dim();
    let (n, kw) = w.dim();
    if k != kw {
        return Err(CoreError::shape("w", &[n, k], &[n, kw]).into());
    }
    let qa = Int8Rows::quantize(a, "a")?;
    let qw = Int8Rows::quantize(w, "w")?;
    if m == 0 || n == 0 || k == 0 {
        return Ok(Array2::zeros((m, n)));
    }
    let (Some(ca), Some(cw)) = (qa.codes.as_slice(), qw.codes.as_slice()) else {
        unreachable!("freshly built arrays are contiguous");
    };
    let packed = PackedB::from_nk(cw, n, k);
    let mut acc = vec![0i32; m * n];
    gemm_i8(ca, m, &packed, &mut acc);
    let mut out = Array2::<f32>::zeros((m, n));
    for ((mut row, acc_row), &sa) in out
        .rows_mut()
        .into_iter()
        .zip(acc.chunks_exact(n))
        .zip(&qa.scales)
    {
        for ((o, &c), &sw) in row.iter_mut().zip(acc_row).zip(&qw.scales) {
            *o = c as f32 * sa * sw;
        }
    }
    Ok(out)
}

/// `a · b` through the int8 GEMM (`a` `[m, k]` per-row scales, `b` `[k, n]` per-column
/// scales); the same as [`matmul_i8_t`] with `b^T`.
///
/// ```
/// use compress_quant::matmul_i8;
/// use ndarray::Array2;
/// let a = Array2::from_shape_fn((4, 16), |(i, j)| ((i * 16 + j) as f32).sin());
/// let b = Array2::from_shape_fn((16, 3), |(i, j)| ((i + 5 * j) as f32).cos());
/// let y = matmul_i8(&a, &b).unwrap();
/// let exact = a.dot(&b);
/// assert!(y.iter().zip(&exact).all(|(p, e)| (p - e).abs() < 0.1));
/// ```
///
/// # Errors
///
/// As [`matmul_i8_t`] (the second operand is named `b`).
pub fn matmul_i8(
    a: &ArrayRef<f32, Ix2>,
    b: &ArrayRef<f32, Ix2>,
) -> Result<Array2<f32>, QuantError> {
    if a.ncols() != b.nrows() {
        return Err(CoreError::shape("b", &[a.ncols(), b.ncols()], b.shape()).into());
    }
    matmul_i8_t(a, &b.t()).map_err(|e| match e {
        QuantError::Core(CoreError::NonFinite { path, index, value }) if path == "w" => {
            // Index into `b^T`; report it as an index into `b`.
            let k = b.nrows().max(1);
            let (j, i) = (index / k, index % k);
            CoreError::NonFinite {
                path: "b".to_string(),
                index: i * b.ncols() + j,
                value,
            }
            .into()
        }
        other => other,
    })
}

impl QTensor {
    /// The integer codes as `i8`, in the tensor's shape, without widening to `i32`: signed
    /// two's-complement codes of a symmetric scheme (`x ~ code * scale`), or the unsigned
    /// codes of an affine scheme of at most 7 bits (`x ~ (code - zero_point) * scale`).
    ///
    /// # Errors
    ///
    /// [`QuantError::UnsupportedBits`] for a float cast (f16/bf16) and for affine 8-bit
    /// codes, which do not fit `i8` (use [`QTensor::codes`]).
    pub fn codes_i8(&self) -> Result<ArrayD<i8>, QuantError> {
        let s = match self.scheme() {
            QuantScheme::Int(s) if !s.affine || s.bits < 8 => s,
            QuantScheme::Int(s) => {
                return Err(QuantError::UnsupportedBits {
                    bits: s.bits,
                    what: "i8 codes of an affine QTensor",
                    supported: "1..=7 (affine), 1..=8 (symmetric)",
                });
            }
            _ => {
                return Err(QuantError::UnsupportedBits {
                    bits: 16,
                    what: "i8 codes of a float cast",
                    supported: "integer schemes",
                });
            }
        };
        let codes: Vec<i8> = if s.bits == 8 {
            self.data().iter().map(|&b| b as i8).collect()
        } else if s.affine {
            unpack_bits(self.data(), s.bits, self.len())
                .into_iter()
                .map(|c| c as i8)
                .collect()
        } else {
            unpack_bits(self.data(), s.bits, self.len())
                .into_iter()
                .map(|c| sign_extend(c, s.bits) as i8)
                .collect()
        };
        ArrayD::from_shape_vec(IxDyn(self.shape()), codes)
            .map_err(|e| QuantError::Core(CoreError::from(e)))
    }

    /// The parameter set (scale and zero point) of the element at row-major flat `index`.
    fn param_of(&self, index: usize) -> Option<usize> {
        let QuantScheme::Int(s) = self.scheme() else {
            return None;
        };
        if index >= self.len() {
            return None;
        }
        let lay = BlockLayout::new(self.shape(), s.granularity, "x").ok()?;
        Some(lay.param(index / lay.block_len))
    }

    /// The scale used for the element at row-major flat `index` (per tensor, channel or
    /// group, as the scheme says); `None` past the end or for float casts.
    ///
    /// ```
    /// use compress_quant::{IntScheme, QTensor};
    /// use ndarray::array;
    /// let w = array![[1.0f32, -0.5], [4.0, 2.0]].into_dyn();
    /// let q = QTensor::quantize(&w, IntScheme::int8_per_channel()).unwrap();
    /// assert_eq!(q.scale_of(1), Some(1.0 / 127.0)); // row 0
    /// assert_eq!(q.scale_of(2), Some(4.0 / 127.0)); // row 1
    /// assert!(q.round_trip_bound(2).unwrap() <= 2.0 / 127.0);
    /// ```
    pub fn scale_of(&self, index: usize) -> Option<f32> {
        self.param_of(index).map(|p| self.scales()[p])
    }

    /// The zero point of the element at flat `index` (`0` for symmetric schemes); `None`
    /// past the end or for float casts.
    pub fn zero_point_of(&self, index: usize) -> Option<i32> {
        self.param_of(index)
            .map(|p| self.zero_points().get(p).copied().unwrap_or(0))
    }

    /// The round-trip error bound of the element at flat `index`: half its scale. Every
    /// element inside its block's range (always so for min-max ranges, as
    /// [`QTensor::quantize`] takes them) satisfies `|x - dequantize(quantize(x))| <= bound`,
    /// up to `f32` rounding of the product. `None` past the end or for float casts.
    pub fn round_trip_bound(&self, index: usize) -> Option<f32> {
        self.scale_of(index).map(|s| 0.5 * s)
    }
}
