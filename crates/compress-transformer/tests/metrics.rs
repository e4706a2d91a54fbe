//! Fidelity metrics on cases with known answers.

use compress_transformer::fidelity;
use compress_transformer::metrics::{
    cosine_rows, nearest_neighbours, ranks, similarity_matrix, spearman,
};
use ndarray::array;
use proptest::prelude::*;

#[test]
fn ranks_average_ties() {
    assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
}

#[test]
fn spearman_known_values() {
    // Monotone but non-linear: rank correlation 1; reversed: -1.
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(spearman(&x, &[1.0, 4.0, 9.0, 16.0, 100.0]).unwrap(), 1.0);
    assert!((spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
    // d = [0, 0, 1, -1, 0]: rho = 1 - 6 * 2 / (5 * 24) = 0.9.
    let r = spearman(&x, &[1.0, 2.0, 4.0, 3.0, 5.0]).unwrap();
    assert!((r - 0.9).abs() < 1e-12, "{r}");
    assert!(spearman(&[1.0], &[1.0]).is_err());
}

#[test]
fn cosine_and_neighbours_known_values() {
    let a = array![[1.0f32, 0.0], [0.0, 2.0]];
    let b = array![[1.0f32, 1.0], [0.0, -1.0]];
    let c = cosine_rows(&a.view(), &b.view()).unwrap();
    assert!((c[0] - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12 && c[1] == -1.0);
    let s = similarity_matrix(&array![[1.0f32, 0.0], [0.9, 0.1], [0.0, 1.0]].view());
    assert_eq!(nearest_neighbours(&s), vec![1, 0, 1]);
}

#[test]
fn fidelity_of_a_swapped_neighbour() {
    // b moves sentence 2 next to sentences 0 and 1: in a the neighbours are 1, 0, 3, 2; in
    // b they are 2, 2, 0, 1.
    let a = array![
        [1.0f32, 0.0, 0.0],
        [0.9, 0.1, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.9, 0.2]
    ];
    let mut b = a.clone();
    b.row_mut(2).assign(&array![0.95, 0.05, 0.0]);
    let f = fidelity(&a.view(), &b.view()).unwrap();
    assert_eq!(f.sentences, 4);
    assert_eq!(f.top1_agreement, 0.0);
    assert!(f.min_cosine < 0.1 && f.mean_cosine < 1.0 && f.spearman < 1.0);
    assert!(
        fidelity(
            &a.slice(ndarray::s![..2, ..]),
            &a.slice(ndarray::s![..2, ..])
        )
        .is_err()
    );
}

proptest! {
    #[test]
    fn fidelity_is_perfect_for_scaled_copies(
        v in proptest::collection::vec(-1.0f32..1.0, 12..=40), k in 0.1f32..10.0
    ) {
        let n = v.len() / 4;
        let a = ndarray::Array2::from_shape_vec((n, 4), v[..n * 4].to_vec()).unwrap();
        prop_assume!(a.rows().into_iter().all(|r| r.dot(&r) > 1e-3));
        let b = &a * k;
        let f = fidelity(&a.view(), &b.view()).unwrap();
        prop_assert!((f.mean_cosine - 1.0).abs() < 1e-6 && (f.min_cosine - 1.0).abs() < 1e-6);
        prop_assert!((f.spearman - 1.0).abs() < 1e-6 || f.spearman > 0.99);
    }

    #[test]
    fn spearman_is_symmetric_and_bounded(
        x in proptest::collection::vec(-5.0f64..5.0, 3..30),
        y in proptest::collection::vec(-5.0f64..5.0, 3..30)
    ) {
        let n = x.len().min(y.len());
        let r = spearman(&x[..n], &y[..n]).unwrap();
        prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&r));
        prop_assert!((r - spearman(&y[..n], &x[..n]).unwrap()).abs() < 1e-12);
    }
}
