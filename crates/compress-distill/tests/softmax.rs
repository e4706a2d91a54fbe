//! Temperature softmax, soft targets and the batch-mean KL divergence.

use compress_core::CoreError;
use compress_distill::{
    DistillError, kl_div, log_softmax_with_temperature, soft_targets, softmax_with_temperature,
};
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::{Array2, array};
use proptest::prelude::*;

use crate::common::{matrix, matrix_pair};

#[test]
fn matches_compress_nn_at_t1_and_scaling_elsewhere() {
    let z = array![[1.0f64, -2.0, 0.5], [10.0, 10.0, -3.0]];
    let ours = softmax_with_temperature(&z, 1.0).unwrap();
    let nn = compress_nn::loss::softmax(&z);
    assert!((&ours - &nn).iter().all(|d| d.abs() < 1e-15));
    let t4 = softmax_with_temperature(&z, 4.0).unwrap();
    let scaled = softmax_with_temperature(&(&z / 4.0), 1.0).unwrap();
    assert!((&t4 - &scaled).iter().all(|d| d.abs() < 1e-15));
    assert_eq!(soft_targets(&z, 4.0).unwrap(), t4);
    let lp = log_softmax_with_temperature(&z, 4.0).unwrap();
    assert!((lp.mapv(f64::exp) - &t4).iter().all(|d| d.abs() < 1e-15));
}

#[test]
fn extreme_logits_are_finite_in_f32_and_f64() {
    let z32 = array![[1e4f32, -1e4, 0.0], [-1e4, -1e4, -1e4]];
    for t in [0.05f32, 1.0, 4.0, 20.0] {
        let p = softmax_with_temperature(&z32, t).unwrap();
        let lp = log_softmax_with_temperature(&z32, t).unwrap();
        assert!(p.iter().chain(lp.iter()).all(|v| v.is_finite()), "T = {t}");
        assert_eq!(p[[0, 0]], 1.0);
        assert!((p.row(1).sum() - 1.0).abs() < 1e-6);
    }
    let z64 = z32.mapv(f64::from);
    let (kl, g) = kl_div(&z64, &(-&z64), 1.0).unwrap();
    assert!(kl.is_finite() && g.iter().all(|v| v.is_finite()));
    assert!(kl > 1e3); // the teacher puts all mass where the student has e^-2e4
}

#[test]
fn bad_temperature_and_non_finite_logits_are_errors() {
    let z = array![[1.0f64, 2.0]];
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        match softmax_with_temperature(&z, t) {
            Err(DistillError::Core(CoreError::InvalidConfig { name, .. })) => {
                assert_eq!(name, "temperature");
            }
            other => panic!("T = {t}: {other:?}"),
        }
        assert!(kl_div(&z, &z, t).is_err());
    }
    let bad = array![[1.0f64, f64::NAN]];
    assert!(matches!(
        kl_div(&bad, &z, 1.0),
        Err(DistillError::Core(CoreError::NonFinite { index: 1, .. }))
    ));
    assert!(matches!(
        kl_div(&z, &array![[1.0, 2.0, 3.0]], 1.0),
        Err(DistillError::Core(CoreError::ShapeMismatch { .. }))
    ));
}

#[test]
fn kl_is_batch_mean_not_element_mean() {
    let s = array![[0.0f64, 1.0, 2.0, 3.0]];
    let t = array![[3.0f64, 0.0, 1.0, -1.0]];
    let (one, _) = kl_div(&s, &t, 2.0).unwrap();
    // Sum over classes by hand.
    let p = softmax_with_temperature(&t, 2.0).unwrap();
    let lp = log_softmax_with_temperature(&t, 2.0).unwrap();
    let lq = log_softmax_with_temperature(&s, 2.0).unwrap();
    let manual: f64 = (0..4).map(|j| p[[0, j]] * (lp[[0, j]] - lq[[0, j]])).sum();
    assert!((one - manual).abs() < 1e-14);
    // Repeating the row leaves the batch mean unchanged.
    let s3 = ndarray::concatenate![ndarray::Axis(0), s, s, s];
    let t3 = ndarray::concatenate![ndarray::Axis(0), t, t, t];
    let (three, g3) = kl_div(&s3, &t3, 2.0).unwrap();
    assert!((three - one).abs() < 1e-14);
    let (_, g1) = kl_div(&s, &t, 2.0).unwrap();
    assert!((g3[[0, 0]] * 3.0 - g1[[0, 0]]).abs() < 1e-15);
    // Empty batch.
    let e = Array2::<f64>::zeros((0, 4));
    assert_eq!(kl_div(&e, &e, 2.0).unwrap().0, 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn softmax_rows_sum_to_one(z in matrix(5, 1, 8, 50.0), t in 0.1f64..30.0) {
        let p = softmax_with_temperature(&z, t).unwrap();
        for row in p.rows() {
            prop_assert!((row.sum() - 1.0).abs() < 1e-12);
            prop_assert!(row.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
        let p32 = softmax_with_temperature(&z.mapv(|v| v as f32), t as f32).unwrap();
        for row in p32.rows() {
            prop_assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn kl_is_non_negative((s, t) in matrix_pair(5, 1, 8, 20.0), temp in 0.1f64..30.0) {
        let (kl, _) = kl_div(&s, &t, temp).unwrap();
        prop_assert!(kl >= 0.0);
        let (kl32, _) = kl_div(&s.mapv(|v| v as f32), &t.mapv(|v| v as f32), temp as f32).unwrap();
        prop_assert!(kl32 >= 0.0);
    }

    #[test]
    fn kl_is_zero_exactly_for_shifted_logits(
        t in matrix(5, 2, 8, 10.0),
        shift in -100.0f64..100.0,
        temp in 0.5f64..20.0,
    ) {
        let (kl, g) = kl_div(&(&t + shift), &t, temp).unwrap();
        prop_assert!(kl < 1e-12, "KL {kl} for a shift of {shift}");
        prop_assert!(g.iter().all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn kl_is_positive_for_logits_that_are_not_a_shift(
        t in matrix(5, 2, 8, 3.0),
        shift in -100.0f64..100.0,
        temp in 0.5f64..20.0,
        k in 0usize..8,
        delta in prop_oneof![-3.0f64..-0.5, 0.5f64..3.0],
    ) {
        // Change one logit of row 0 by more than a shift can explain. With logits in
        // [-3, 3] every class has p >= e^-12 / 8, so KL >= ~1e-10 (second order in delta).
        let mut other = &t + shift;
        other[[0, k % t.ncols()]] += delta;
        let (kl, _) = kl_div(&other, &t, temp).unwrap();
        prop_assert!(kl > 1e-13, "KL {kl}");
    }

    #[test]
    fn kl_gradient_matches_finite_differences(
        (s, t) in matrix_pair(4, 2, 6, 4.0),
        temp in 0.5f64..10.0,
    ) {
        let (_, g) = kl_div(&s, &t, temp).unwrap();
        let num = fd_grad(|x| kl_div(x, &t, temp).unwrap().0, &s, 1e-5);
        assert_grad_close(&g, &num, 1e-6, 1e-6);
    }
}
