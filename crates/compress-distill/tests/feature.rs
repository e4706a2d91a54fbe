//! FitNets hint loss: gradients for the regressor and the student features.

use compress_core::{CoreError, Module};
use compress_distill::{DistillError, HintLoss};
use compress_nn::{Linear, Optimizer, Sgd};
use compress_testkit::{GradCheck, assert_grad_close, fd_grad};
use ndarray::{Array2, ArrayD};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn random(rng: &mut StdRng, n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |_| rng.random_range(-1.0..1.0))
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(3);
    let (n, ds, dt) = (5, 4, 6);
    let s = random(&mut rng, n, ds);
    let t = random(&mut rng, n, dt);
    let w = random(&mut rng, dt, ds);
    let b = random(&mut rng, 1, dt).into_shape_with_order(dt).unwrap();
    let make = |w: &Array2<f64>| {
        HintLoss::new(Linear::from_arrays(
            w.clone().into_dyn(),
            Some(b.clone().into_dyn()),
        ))
        .with_weight(0.7)
        .unwrap()
    };
    let mut hint = make(&w);
    let (loss, gs) = hint
        .forward_backward(&s.clone().into_dyn(), &t.clone().into_dyn())
        .unwrap();
    assert!(
        (loss
            - make(&w)
                .loss(&s.clone().into_dyn(), &t.clone().into_dyn())
                .unwrap())
        .abs()
            < 1e-15
    );
    // Student features.
    let num_s = fd_grad(
        |x| {
            make(&w)
                .loss(&x.clone().into_dyn(), &t.clone().into_dyn())
                .unwrap()
        },
        &s,
        1e-6,
    );
    let gs = gs.into_dimensionality::<ndarray::Ix2>().unwrap();
    assert_grad_close(&gs, &num_s, 1e-7, 1e-7);
    // Regressor weight and bias (stored values) against what forward_backward accumulated.
    let (s, t) = (s.into_dyn(), t.into_dyn());
    let report = GradCheck::new().params(&mut hint, &mut |h| h.loss(&s, &t).unwrap());
    assert_eq!(report.params, ["regressor.weight", "regressor.bias"]);
    report.assert_close(1e-7, 1e-7);
    assert_eq!(hint.named_params()[1].path, "regressor.bias");
}

#[test]
fn training_the_regressor_and_features_reduces_the_loss() {
    let mut rng = StdRng::seed_from_u64(4);
    let s = random(&mut rng, 16, 3).into_dyn();
    // Teacher features: a fixed linear map of the student features.
    let map = random(&mut rng, 3, 5);
    let t = s
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
        .dot(&map)
        .into_dyn();
    let mut hint = HintLoss::<f64>::linear(3, 5, &mut rng);
    let mut opt = Sgd::new(0.2);
    let first = hint.loss(&s, &t).unwrap();
    for _ in 0..300 {
        hint.zero_grad();
        hint.forward_backward(&s, &t).unwrap();
        opt.step(&mut hint).unwrap();
    }
    let last = hint.loss(&s, &t).unwrap();
    assert!(last < first * 1e-3, "{first} -> {last}");
}

#[test]
fn shape_errors_are_reported() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut hint = HintLoss::<f64>::linear(3, 5, &mut rng);
    let s = ArrayD::zeros(vec![2, 3]);
    assert!(matches!(
        hint.forward_backward(&s, &ArrayD::zeros(vec![2, 4])),
        Err(DistillError::Core(CoreError::ShapeMismatch { path, .. })) if path == "teacher features"
    ));
    assert!(
        hint.loss(&ArrayD::zeros(vec![2, 4]), &ArrayD::zeros(vec![2, 5]))
            .is_err()
    );
    assert!(
        HintLoss::<f64>::linear(3, 5, &mut rng)
            .with_weight(-1.0)
            .is_err()
    );
}
