//! Shared helpers: logit strategies.

use ndarray::Array2;
use proptest::prelude::*;

/// `[n, c]` matrices with `n in 1..=max_n`, `c in min_c..=max_c`, values in `[-scale, scale]`.
pub(crate) fn matrix(
    max_n: usize,
    min_c: usize,
    max_c: usize,
    scale: f64,
) -> impl Strategy<Value = Array2<f64>> {
    (1..=max_n, min_c..=max_c).prop_flat_map(move |(n, c)| {
        proptest::collection::vec(-scale..=scale, n * c)
            .prop_map(move |v| Array2::from_shape_vec((n, c), v).expect("n * c values"))
    })
}

/// A pair of same-shape matrices.
pub(crate) fn matrix_pair(
    max_n: usize,
    min_c: usize,
    max_c: usize,
    scale: f64,
) -> impl Strategy<Value = (Array2<f64>, Array2<f64>)> {
    (1..=max_n, min_c..=max_c).prop_flat_map(move |(n, c)| {
        let m = move || {
            proptest::collection::vec(-scale..=scale, n * c)
                .prop_map(move |v| Array2::from_shape_vec((n, c), v).expect("n * c values"))
        };
        (m(), m())
    })
}

/// Two same-shape logit matrices and labels for their rows.
pub(crate) fn logits_with_labels(
    max_n: usize,
    max_c: usize,
    scale: f64,
) -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Vec<usize>)> {
    matrix_pair(max_n, 2, max_c, scale).prop_flat_map(|(s, t)| {
        let (n, c) = s.dim();
        (Just(s), Just(t), proptest::collection::vec(0..c, n))
    })
}
