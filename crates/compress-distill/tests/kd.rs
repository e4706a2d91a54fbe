//! The Hinton KD loss: value, gradient, T^2 scaling, extreme inputs.

use compress_core::CoreError;
use compress_distill::{DistillError, KdConfig, kd_loss, kl_div};
use compress_nn::loss::softmax_cross_entropy;
use compress_testkit::{assert_grad_close, fd_grad};
use ndarray::{Array2, array};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::common::logits_with_labels;

fn cfg(t: f64, alpha: f64) -> KdConfig {
    KdConfig::new(t, alpha).unwrap()
}

#[test]
fn alpha_endpoints_are_pure_ce_and_pure_t2_kl() {
    let s = array![[1.0f64, 0.0, -1.0], [0.3, 0.2, 0.9]];
    let t = array![[2.0f64, 1.0, -3.0], [0.0, 0.0, 4.0]];
    let y = [0, 2];
    let hard = kd_loss(&s, &t, &y, &cfg(4.0, 0.0)).unwrap();
    let (ce, ce_g) = softmax_cross_entropy(&s, &y).unwrap();
    assert!((hard.loss - ce).abs() < 1e-14);
    assert!((&hard.grad - &ce_g).iter().all(|d| d.abs() < 1e-15));
    let soft = kd_loss(&s, &t, &y, &cfg(4.0, 1.0)).unwrap();
    let (kl, kl_g) = kl_div(&s, &t, 4.0).unwrap();
    assert!((soft.loss - 16.0 * kl).abs() < 1e-13);
    assert!(
        (&soft.grad - &(kl_g * 16.0))
            .iter()
            .all(|d| d.abs() < 1e-14)
    );
    let mut plain = cfg(4.0, 1.0);
    plain.t_squared = false;
    let unscaled = kd_loss(&s, &t, &y, &plain).unwrap();
    assert!((unscaled.loss - kl).abs() < 1e-14);
}

#[test]
fn config_and_input_errors() {
    let s = array![[1.0f64, 0.0]];
    assert!(matches!(
        KdConfig::new(4.0, 1.5),
        Err(DistillError::Core(CoreError::InvalidConfig { name, .. })) if name == "alpha"
    ));
    assert!(matches!(
        KdConfig::new(-1.0, 0.5),
        Err(DistillError::Core(CoreError::InvalidConfig { name, .. })) if name == "temperature"
    ));
    assert!(matches!(
        kd_loss(&s, &s, &[2], &cfg(2.0, 0.5)),
        Err(DistillError::Label {
            index: 0,
            label: 2,
            classes: 2
        })
    ));
    assert!(matches!(
        kd_loss(&s, &s, &[0, 1], &cfg(2.0, 0.5)),
        Err(DistillError::Core(CoreError::ShapeMismatch { .. }))
    ));
    let bad = KdConfig {
        temperature: 0.0,
        ..KdConfig::default()
    };
    assert!(kd_loss(&s, &s, &[0], &bad).is_err());
}

#[test]
fn extreme_logits_stay_finite() {
    let big = array![[1e4f64, -1e4, 0.0, -1e4], [-1e4, 1e4, 1e4, -1e4]];
    let flip = big.mapv(|v| -v);
    for t in [1.0, 2.0, 4.0, 20.0] {
        for alpha in [0.0, 0.5, 1.0] {
            for (s, tt) in [(&big, &flip), (&flip, &big), (&big, &big)] {
                let out = kd_loss(s, tt, &[0, 3], &cfg(t, alpha)).unwrap();
                assert!(out.loss.is_finite() && out.grad.iter().all(|v| v.is_finite()));
                let s32 = s.mapv(|v| v as f32);
                let t32 = tt.mapv(|v| v as f32);
                let o32 = kd_loss(&s32, &t32, &[0, 3], &cfg(t, alpha)).unwrap();
                assert!(o32.loss.is_finite() && o32.grad.iter().all(|v| v.is_finite()));
                assert!(o32.loss >= 0.0);
            }
        }
    }
}

/// Hinton et al. 2015, section 2: the soft-target gradient `(q_T - p_T) / T` shrinks like
/// `1 / T^2` for large T; multiplying the KL by T^2 keeps its scale roughly constant.
#[test]
fn t_squared_keeps_the_soft_gradient_scale_constant() {
    let mut rng = StdRng::seed_from_u64(7);
    let (n, c) = (32, 10);
    let s = Array2::from_shape_fn((n, c), |_| rng.random_range(-3.0..3.0));
    let t = Array2::from_shape_fn((n, c), |_| rng.random_range(-3.0..3.0));
    let y = vec![0; n];
    let norm = |g: &Array2<f64>| g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let temps = [4.0, 8.0, 16.0, 32.0];
    let mut scaled = Vec::new();
    let mut plain = Vec::new();
    for &temp in &temps {
        scaled.push(norm(&kd_loss(&s, &t, &y, &cfg(temp, 1.0)).unwrap().grad));
        let mut p = cfg(temp, 1.0);
        p.t_squared = false;
        plain.push(norm(&kd_loss(&s, &t, &y, &p).unwrap().grad));
    }
    let (lo, hi) = scaled
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(hi / lo < 1.3, "with T^2: {scaled:?}");
    // Without it the gradient falls by ~(32/4)^2 = 64.
    assert!(plain[0] / plain[3] > 40.0, "without T^2: {plain:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn loss_is_non_negative(
        (s, t, y) in logits_with_labels(6, 8, 30.0),
        temp in 0.1f64..30.0,
        alpha in 0.0f64..=1.0,
    ) {
        let out = kd_loss(&s, &t, &y, &cfg(temp, alpha)).unwrap();
        prop_assert!(out.loss >= 0.0 && out.kl >= 0.0 && out.ce >= 0.0);
        let o32 = kd_loss(&s.mapv(|v| v as f32), &t.mapv(|v| v as f32), &y, &cfg(temp, alpha)).unwrap();
        prop_assert!(o32.loss >= 0.0);
        for row in out.grad.rows() {
            prop_assert!(row.sum().abs() < 1e-12);
        }
    }

    #[test]
    fn gradient_matches_finite_differences(
        (s, t, y) in logits_with_labels(4, 6, 4.0),
        temp in 0.5f64..20.0,
        alpha in 0.0f64..=1.0,
    ) {
        let c = cfg(temp, alpha);
        let out = kd_loss(&s, &t, &y, &c).unwrap();
        let num = fd_grad(|x| kd_loss(x, &t, &y, &c).unwrap().loss, &s, 1e-5);
        assert_grad_close(&out.grad, &num, 1e-6, 1e-6);
    }
}
