//! The scalar bound and tensor statistics.

use ndarray::{ArrayRef, Dimension, NdFloat};
use num_traits::{FromPrimitive, float::TotalOrder};

use crate::{CoreError, Result};

/// Scalar types the compression crates are generic over (`f32`, `f64`).
pub trait Float: NdFloat + FromPrimitive + Default + TotalOrder {
    /// Converts an `f64` constant to this type (exact for `f64`, rounded for `f32`).
    fn lit(x: f64) -> Self;
    /// Widens to `f64` for statistics and reporting.
    fn as_f64(self) -> f64;
    /// Whether this is `f32`: kernels written for `f32` (SIMD paths) dispatch on it.
    const IS_F32: bool;
    /// `s` itself as `&[f32]` when `Self` is `f32`, `None` otherwise (no copy, no cast).
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]>;
    /// `s` itself as `&mut [f32]` when `Self` is `f32`, `None` otherwise.
    fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]>;
    /// `s` itself as `&[f64]` when `Self` is `f64`, `None` otherwise.
    fn as_f64_slice(s: &[Self]) -> Option<&[f64]>;
    /// `s` itself as `&mut [f64]` when `Self` is `f64`, `None` otherwise.
    fn as_f64_slice_mut(s: &mut [Self]) -> Option<&mut [f64]>;
}

impl Float for f32 {
    #[inline]
    fn lit(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
    const IS_F32: bool = true;
    #[inline]
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    #[inline]
    fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
    #[inline]
    fn as_f64_slice(_: &[Self]) -> Option<&[f64]> {
        None
    }
    #[inline]
    fn as_f64_slice_mut(_: &mut [Self]) -> Option<&mut [f64]> {
        None
    }
}

impl Float for f64 {
    #[inline]
    fn lit(x: f64) -> Self {
        x
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
    const IS_F32: bool = false;
    #[inline]
    fn as_f32_slice(_: &[Self]) -> Option<&[f32]> {
        None
    }
    #[inline]
    fn as_f32_slice_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    #[inline]
    fn as_f64_slice(s: &[Self]) -> Option<&[f64]> {
        Some(s)
    }
    #[inline]
    fn as_f64_slice_mut(s: &mut [Self]) -> Option<&mut [f64]> {
        Some(s)
    }
}

/// Statistics every technique needs, on any owned array or view.
pub trait TensorExt<F: Float> {
    /// Sum of absolute values.
    fn l1_norm(&self) -> F;
    /// Euclidean (Frobenius) norm.
    fn l2_norm(&self) -> F;
    /// Number of elements that are not exactly zero.
    fn count_nonzero(&self) -> usize;
    /// Fraction of exactly-zero elements, in `[0, 1]`; `0` for an empty array.
    fn sparsity(&self) -> f64;
    /// Checks that every element is finite.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] naming `path`, the first bad flat index and its value.
    fn check_finite(&self, path: &str) -> Result<()>;
}

impl<F: Float, D: Dimension> TensorExt<F> for ArrayRef<F, D> {
    fn l1_norm(&self) -> F {
        self.iter().fold(F::zero(), |acc, &x| acc + x.abs())
    }

    fn l2_norm(&self) -> F {
        self.iter().fold(F::zero(), |acc, &x| acc + x * x).sqrt()
    }

    fn count_nonzero(&self) -> usize {
        self.iter().filter(|&&x| x != F::zero()).count()
    }

    fn sparsity(&self) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        (n - self.count_nonzero()) as f64 / n as f64
    }

    fn check_finite(&self, path: &str) -> Result<()> {
        match self.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(index) => Err(CoreError::NonFinite {
                path: path.to_string(),
                index,
                value: self.iter().nth(index).map_or(f64::NAN, |v| v.as_f64()),
            }),
        }
    }
}

/// Signal-to-quantization-noise ratio in dB of a signal `x` and its approximation `y`:
/// `10 log10(sum x^2 / sum (x - y)^2)`, summed in `f64`; `+inf` when `y == x` exactly,
/// `-inf` for a zero signal with noise.
///
/// ```
/// use compress_core::sqnr_db;
/// let db = sqnr_db(&[1.0, -1.0], &[1.1, -0.9]);
/// assert!((db - 20.0).abs() < 1e-3);
/// assert_eq!(sqnr_db(&[1.0], &[1.0]), f64::INFINITY);
/// ```
///
/// # Panics
///
/// If the slices differ in length.
#[track_caller]
pub fn sqnr_db(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len(), "sqnr_db: lengths differ");
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (f64::from(a), f64::from(b));
        signal += a * a;
        noise += (a - b) * (a - b);
    }
    sqnr_db_of_sums(signal, noise)
}

/// [`sqnr_db`] from the sums already taken: `signal = sum x^2`, `noise = sum (x - y)^2`
/// (sums that are accumulated in pieces, such as a streamed tensor's).
pub fn sqnr_db_of_sums(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (signal / noise).log10()
}
