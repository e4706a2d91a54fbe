//! Decoupled KD: decomposition identity, gradient, extreme inputs.

use compress_core::CoreError;
use compress_distill::{DistillError, DkdConfig, dkd_loss, kl_div, softmax_with_temperature};
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::array;
use proptest::prelude::*;

use crate::common::logits_with_labels;

fn cfg(t: f64, alpha: f64, beta: f64, ce_weight: f64) -> DkdConfig {
    DkdConfig {
        temperature: t,
        alpha,
        beta,
        ce_weight,
    }
}

#[test]
fn rejects_bad_config_and_single_class() {
    let s = array![[1.0f64]];
    assert!(matches!(
        dkd_loss(&s, &s, &[0], &DkdConfig::default()),
        Err(DistillError::Core(CoreError::InvalidConfig { name, .. })) if name == "classes"
    ));
    let s2 = array![[1.0f64, 0.0]];
    for bad in [
        cfg(0.0, 1.0, 1.0, 1.0),
        cfg(1.0, -1.0, 1.0, 1.0),
        cfg(1.0, 1.0, f64::NAN, 1.0),
    ] {
        assert!(dkd_loss(&s2, &s2, &[0], &bad).is_err());
    }
}

#[test]
fn extreme_logits_stay_finite() {
    let big = array![[1e4f64, -1e4, 0.0, -1e4], [-1e4, 1e4, 1e4, -1e4]];
    let flip = big.mapv(|v| -v);
    for t in [1.0, 4.0, 20.0] {
        for (s, tt) in [(&big, &flip), (&flip, &big), (&big, &big)] {
            for y in [[0, 3], [1, 1]] {
                let out = dkd_loss(s, tt, &y, &cfg(t, 1.0, 8.0, 1.0)).unwrap();
                assert!(out.loss.is_finite(), "{out:?}");
                assert!(out.grad.iter().all(|v| v.is_finite()));
                let o32 = dkd_loss(
                    &s.mapv(|v| v as f32),
                    &tt.mapv(|v| v as f32),
                    &y,
                    &cfg(t, 1.0, 8.0, 1.0),
                )
                .unwrap();
                assert!(o32.loss.is_finite() && o32.grad.iter().all(|v| v.is_finite()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Zhao et al. 2022, eq. (5): KD = TCKD + (1 - p_target^teacher) * NCKD, per sample.
    #[test]
    fn kd_decomposes_into_tckd_and_nckd(
        (s, t, y) in logits_with_labels(1, 8, 5.0),
        temp in 0.5f64..10.0,
    ) {
        let out = dkd_loss(&s, &t, &y, &cfg(temp, 1.0, 1.0, 0.0)).unwrap();
        let (kl, _) = kl_div(&s, &t, temp).unwrap();
        let pt = softmax_with_temperature(&t, temp).unwrap()[[0, y[0]]];
        prop_assert!((kl - (out.tckd + (1.0 - pt) * out.nckd)).abs() < 1e-10);
        prop_assert!(out.tckd >= 0.0 && out.nckd >= 0.0 && out.ce >= 0.0);
    }

    #[test]
    fn gradient_matches_finite_differences(
        (s, t, y) in logits_with_labels(4, 6, 4.0),
        temp in 0.5f64..10.0,
        alpha in 0.0f64..4.0,
        beta in 0.0f64..8.0,
        ce_weight in 0.0f64..2.0,
    ) {
        let c = cfg(temp, alpha, beta, ce_weight);
        let out = dkd_loss(&s, &t, &y, &c).unwrap();
        let num = fd_grad(|x| dkd_loss(x, &t, &y, &c).unwrap().loss, &s, 1e-5);
        assert_grad_close(&out.grad, &num, 1e-6, 1e-6);
        prop_assert!(out.loss >= 0.0);
    }
}
