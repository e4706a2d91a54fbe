//! Shared, seeded fixtures for the criterion benchmarks (not published).

use compress_core::Float;
use compress_nn::Dataset;
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A random data set of `n` samples with `d` features in `[0, 1)` and labels `< classes`.
///
/// # Panics
///
/// If `classes` is 0.
pub fn random_dataset<F: Float>(n: usize, d: usize, classes: usize, seed: u64) -> Dataset<F> {
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<F> = (0..n * d).map(|_| F::lit(rng.random::<f64>())).collect();
    let labels = (0..n).map(|_| rng.random_range(0..classes)).collect();
    Dataset::new(
        ArrayD::from_shape_vec(IxDyn(&[n, d]), x).expect("n*d values"),
        labels,
        classes,
    )
    .expect("labels < classes")
}

/// A `rows x cols` matrix of seeded standard-normal-ish values (sum of uniforms).
pub fn random_matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| {
        (0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0
    })
}

/// `n` seeded weights, roughly normal with standard deviation 0.05.
pub fn random_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| ((0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0) * 0.087)
        .collect()
}
