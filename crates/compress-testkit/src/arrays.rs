//! Seeded arrays and array comparisons.

use compress_core::Float;
use ndarray::{Array2, ArrayD, ArrayRef, Dimension, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A tensor of `shape` with values drawn uniformly from `[-scale, scale)` by `rng`, in
/// logical (row-major) order.
///
/// Use it when a test draws several arrays from one generator; [`seeded_tensor`] is the
/// one-array form.
///
/// ```
/// use compress_testkit::uniform_tensor;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(7);
/// let x = uniform_tensor::<f64, _>(&[2, 3], 2.0, &mut rng);
/// assert_eq!(x.shape(), &[2, 3]);
/// assert!(x.iter().all(|v| (-2.0..2.0).contains(v)));
/// ```
///
/// # Panics
///
/// If `scale` is not positive and finite (an empty range).
pub fn uniform_tensor<F: Float, R: Rng + ?Sized>(
    shape: &[usize],
    scale: f64,
    rng: &mut R,
) -> ArrayD<F> {
    assert!(
        scale > 0.0 && scale.is_finite(),
        "uniform_tensor: scale must be positive and finite, got {scale}"
    );
    ArrayD::from_shape_simple_fn(IxDyn(shape), || F::lit(rng.random_range(-scale..scale)))
}

/// A tensor of `shape` with seeded uniform values in `[-1, 1)`: the same seed gives the
/// same tensor, in every test and every crate.
///
/// ```
/// use compress_testkit::seeded_tensor;
///
/// let a = seeded_tensor::<f32>(&[4, 2], 3);
/// assert_eq!(a, seeded_tensor::<f32>(&[4, 2], 3));
/// assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
/// ```
pub fn seeded_tensor<F: Float>(shape: &[usize], seed: u64) -> ArrayD<F> {
    uniform_tensor(shape, 1.0, &mut StdRng::seed_from_u64(seed))
}

/// [`seeded_tensor`] of shape `[rows, cols]` as a matrix (same values).
///
/// ```
/// use compress_testkit::{seeded_matrix, seeded_tensor};
///
/// let m = seeded_matrix::<f64>(3, 4, 1);
/// assert_eq!(m.into_dyn(), seeded_tensor::<f64>(&[3, 4], 1));
/// ```
pub fn seeded_matrix<F: Float>(rows: usize, cols: usize, seed: u64) -> Array2<F> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((rows, cols), || F::lit(rng.random_range(-1.0..1.0)))
}

/// Largest absolute elementwise difference `max |a - b|`, in `f64` (`0` for empty arrays;
/// NaN if any difference is NaN, so a comparison `< tol` fails).
///
/// ```
/// use compress_testkit::max_abs_diff;
/// use ndarray::array;
///
/// assert_eq!(max_abs_diff(&array![1.0f32, 2.0], &array![1.5f32, 1.0]), 1.0);
/// ```
///
/// # Panics
///
/// If the shapes differ.
#[track_caller]
pub fn max_abs_diff<F: Float, D: Dimension>(a: &ArrayRef<F, D>, b: &ArrayRef<F, D>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "max_abs_diff: shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x.as_f64() - y.as_f64()).abs())
        .fold(0.0, |m, d| {
            if d.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(d)
            }
        })
}

/// Sets every non-buffer parameter of `m` to seeded uniform values in `[-scale, scale)`,
/// so that gradient checks do not run at trivial values (LayerNorm/BatchNorm scales of 1
/// and shifts of 0, zero biases).
pub fn randomize_params<M: compress_core::Module<f64> + ?Sized>(m: &mut M, seed: u64, scale: f64) {
    use compress_core::{Param, ParamKind, ParamPath};
    let mut rng = StdRng::seed_from_u64(seed);
    // The closure never fails.
    let _ = m.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f64>| {
            if p.kind() != ParamKind::Buffer {
                p.value_mut()
                    .mapv_inplace(|_| rng.random_range(-scale..scale));
            }
            Ok(())
        },
    );
}
