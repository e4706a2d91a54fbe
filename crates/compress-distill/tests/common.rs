//! Shared helpers: finite-difference gradients and logit strategies.

use ndarray::Array2;
use proptest::prelude::*;

/// Central finite-difference gradient of `f` at `x`.
pub(crate) fn fd_grad(f: impl Fn(&Array2<f64>) -> f64, x: &Array2<f64>, eps: f64) -> Array2<f64> {
    let mut g = Array2::zeros(x.raw_dim());
    let mut xp = x.clone();
    for idx in 0..x.len() {
        let (i, j) = (idx / x.ncols(), idx % x.ncols());
        let v = x[[i, j]];
        xp[[i, j]] = v + eps;
        let fp = f(&xp);
        xp[[i, j]] = v - eps;
        let fm = f(&xp);
        xp[[i, j]] = v;
        g[[i, j]] = (fp - fm) / (2.0 * eps);
    }
    g
}

/// Asserts `|a - b| <= tol * (1 + |b|)` elementwise.
#[track_caller]
pub(crate) fn assert_grad_close(analytic: &Array2<f64>, numeric: &Array2<f64>, tol: f64) {
    assert_eq!(analytic.shape(), numeric.shape());
    for (i, (&a, &n)) in analytic.iter().zip(numeric.iter()).enumerate() {
        assert!(
            (a - n).abs() <= tol * (1.0 + n.abs()),
            "element {i}: analytic {a}, numeric {n}\nanalytic {analytic:?}\nnumeric {numeric:?}"
        );
    }
}

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
