//! Seeded weight initialisation.

use compress_core::Float;
use ndarray::{ArrayD, IxDyn};
use rand::Rng;

/// Uniform values in `[-bound, bound]`.
///
/// # Panics
///
/// Never: the value count is the product of `shape` by construction.
pub fn uniform<F: Float, R: Rng + ?Sized>(shape: &[usize], bound: f64, rng: &mut R) -> ArrayD<F> {
    let n: usize = shape.iter().product();
    let v: Vec<F> = (0..n)
        .map(|_| F::lit(rng.random_range(-1.0..=1.0) * bound))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("n equals the product of shape")
}

/// Kaiming (He) uniform for ReLU networks with PyTorch's default `a = sqrt(5)`:
/// bound `1 / sqrt(fan_in)`.
pub fn kaiming_uniform<F: Float, R: Rng + ?Sized>(
    shape: &[usize],
    fan_in: usize,
    rng: &mut R,
) -> ArrayD<F> {
    uniform(shape, 1.0 / (fan_in.max(1) as f64).sqrt(), rng)
}

/// Kaiming (He) uniform with gain `sqrt(2)`: bound `sqrt(6 / fan_in)`.
pub fn he_uniform<F: Float, R: Rng + ?Sized>(
    shape: &[usize],
    fan_in: usize,
    rng: &mut R,
) -> ArrayD<F> {
    uniform(shape, (6.0 / fan_in.max(1) as f64).sqrt(), rng)
}

/// Xavier (Glorot) uniform: bound `sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform<F: Float, R: Rng + ?Sized>(
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    rng: &mut R,
) -> ArrayD<F> {
    uniform(shape, (6.0 / (fan_in + fan_out).max(1) as f64).sqrt(), rng)
}
