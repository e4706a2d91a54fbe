//! Shared helpers.

use compress_core::{Layer, Mode};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Seeded uniform data `[n, d]` in `[-1, 1)`.
pub(crate) fn data<F: compress_core::Float>(n: usize, d: &[usize], seed: u64) -> ArrayD<F> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut shape = vec![n];
    shape.extend_from_slice(d);
    let len: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(&shape),
        (0..len)
            .map(|_| F::lit(rng.random_range(-1.0..1.0)))
            .collect(),
    )
    .unwrap()
}

/// Eval-mode outputs.
pub(crate) fn out<F: compress_core::Float>(m: &mut dyn Layer<F>, x: &ArrayD<F>) -> ArrayD<F> {
    m.forward(x, Mode::Eval).unwrap()
}

/// Max absolute difference.
pub(crate) fn max_diff<F: compress_core::Float>(a: &ArrayD<F>, b: &ArrayD<F>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x.as_f64() - y.as_f64()).abs())
        .fold(0.0, f64::max)
}
