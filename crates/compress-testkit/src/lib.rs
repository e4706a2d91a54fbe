//! Shared test fixtures for the netcompress crates (not published): seeded tensors, small
//! reference models and the core proptest strategies.

pub use compress_core::strategies;

use compress_core::{Float, Layer, Mode};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A tensor of `shape` with seeded uniform values in `[-1, 1)`.
///
/// # Panics
///
/// Never: the value count equals the shape's product.
pub fn seeded_tensor<F: Float>(shape: &[usize], seed: u64) -> ArrayD<F> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v = (0..n).map(|_| F::lit(rng.random_range(-1.0..1.0))).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("n equals the shape's product")
}

/// Checks a layer's input gradient against central finite differences of
/// `sum(forward(x) * r)` for a seeded random `r`; returns the largest absolute difference
/// between analytic and numeric gradients, relative to `max(1, |numeric|)`.
///
/// The layer is run in `Mode::Train` (so it caches for `backward`).
///
/// # Panics
///
/// If the layer errors on `x` (a test fixture bug).
pub fn input_grad_error<L: Layer<f64> + ?Sized>(layer: &mut L, x: &ArrayD<f64>, eps: f64) -> f64 {
    let y = layer.forward(x, Mode::Train).expect("forward");
    let r = seeded_tensor::<f64>(y.shape(), 99);
    layer.zero_grad();
    let analytic = layer.backward(&r).expect("backward");
    let mut worst: f64 = 0.0;
    let mut xp = x.clone();
    for i in 0..x.len() {
        let orig = xp.as_slice_mut().expect("standard layout")[i];
        xp.as_slice_mut().expect("standard layout")[i] = orig + eps;
        let fp = (layer.forward(&xp, Mode::Train).expect("forward") * &r).sum();
        xp.as_slice_mut().expect("standard layout")[i] = orig - eps;
        let fm = (layer.forward(&xp, Mode::Train).expect("forward") * &r).sum();
        xp.as_slice_mut().expect("standard layout")[i] = orig;
        let numeric = (fp - fm) / (2.0 * eps);
        let a = analytic.as_slice().expect("standard layout")[i];
        worst = worst.max((a - numeric).abs() / numeric.abs().max(1.0));
    }
    worst
}
