//! Masks: exact sparsity per scope, monotonicity, zeros surviving training, bake, errors.

use compress_core::{Layer, Mode, ModelStats, Module, Param, ParamDict, ParamFilter, TensorExt};
use compress_nn::models::mlp;
use compress_nn::{Adam, Optimizer, Sgd};
use compress_prune::{
    Importance, Mask, PruneConfig, PruneError, Scope, mask_of, mask_report, prune, remove_masks,
};
use compress_testkit::seeded_tensor;
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

fn net() -> compress_nn::Sequential<f64> {
    mlp::<f64, _>(&[20, 30, 17, 5], &mut StdRng::seed_from_u64(3))
}

#[test]
fn global_scope_reaches_exact_sparsity() {
    let mut m = net();
    let r = prune(&mut m, &PruneConfig::new(0.7)).unwrap();
    let n = 20 * 30 + 30 * 17 + 17 * 5;
    assert_eq!(r.total(), n);
    assert_eq!(r.pruned(), (0.7 * n as f64).ceil() as usize);
    // Biases untouched by default.
    assert!(
        m.named_params()
            .iter()
            .filter(|p| p.path.ends_with("bias"))
            .all(|p| p.nonzero == p.len)
    );
}

#[test]
fn per_param_scope_is_exact_in_each_parameter() {
    let mut m = net();
    let r = prune(&mut m, &PruneConfig::new(0.5).scope(Scope::PerParam)).unwrap();
    for p in &r.params {
        assert_eq!(p.pruned, (p.len as f64 * 0.5).ceil() as usize, "{}", p.path);
    }
}

#[test]
fn per_layer_scope_with_biases_shares_a_threshold() {
    let mut m = net();
    let cfg = PruneConfig::new(0.4)
        .scope(Scope::PerLayer)
        .filter(ParamFilter::new().with_bias(true));
    let r = prune(&mut m, &cfg).unwrap();
    assert_eq!(r.params.len(), 6);
    for layer in r.params.chunks(2) {
        let n = layer[0].len + layer[1].len;
        assert_eq!(
            layer[0].pruned + layer[1].pruned,
            (0.4 * n as f64).ceil() as usize
        );
    }
}

#[test]
fn filters_select_by_glob() {
    let mut m = net();
    let r = prune(
        &mut m,
        &PruneConfig::new(0.9).filter(ParamFilter::new().exclude("4.*")),
    )
    .unwrap();
    assert_eq!(r.params.len(), 2);
    assert!(mask_of(&m.get::<compress_nn::Linear<f64>>(4).unwrap().weight).is_none());
}

#[test]
fn masks_are_monotone_and_lower_targets_do_not_unprune() {
    let mut m = net();
    prune(&mut m, &PruneConfig::new(0.5)).unwrap();
    let before: Vec<ArrayD<f64>> = m.state_dict().into_iter().map(|(_, v)| v).collect();
    // Change weights so magnitudes reorder, then prune further.
    let _ = m.visit_mut(
        &mut compress_core::ParamPath::root(),
        &mut |_: &compress_core::ParamPath, p: &mut Param<f64>| {
            p.value_mut().mapv_inplace(|v| 1.0 / (v.abs() + 0.1));
            Ok(())
        },
    );
    let r = prune(&mut m, &PruneConfig::new(0.8)).unwrap();
    assert_eq!(r.pruned(), (0.8 * r.total() as f64).ceil() as usize);
    let after: Vec<ArrayD<f64>> = m.state_dict().into_iter().map(|(_, v)| v).collect();
    for (a, b) in before.iter().zip(&after) {
        for (x, y) in a.iter().zip(b.iter()) {
            if *x == 0.0 {
                assert_eq!(*y, 0.0, "a pruned weight came back");
            }
        }
    }
    let r2 = prune(&mut m, &PruneConfig::new(0.3)).unwrap();
    assert_eq!(r2.pruned(), r.pruned());
}

fn train_steps(m: &mut compress_nn::Sequential<f64>, opt: &mut dyn Optimizer<f64>, steps: usize) {
    let x = seeded_tensor::<f64>(&[16, 20], 9);
    for _ in 0..steps {
        m.zero_grad();
        let y = m.forward(&x, Mode::Train).unwrap();
        // Gradient of sum(y^2)/2 pushes every weight.
        m.backward(&y).unwrap();
        opt.step(m).unwrap();
    }
}

#[test]
fn zeros_survive_momentum_weight_decay_and_adam() {
    for opt in [
        Box::new(
            Sgd::new(0.05)
                .momentum(0.9)
                .nesterov(true)
                .weight_decay(1e-2),
        ) as Box<dyn Optimizer<f64>>,
        Box::new(Adam::new(0.01).weight_decay(1e-2).decoupled(true)),
    ] {
        let mut opt = opt;
        let mut m = net();
        // Momentum from dense steps first, so the velocity of soon-pruned weights is non-zero.
        train_steps(&mut m, opt.as_mut(), 3);
        prune(&mut m, &PruneConfig::new(0.75)).unwrap();
        train_steps(&mut m, opt.as_mut(), 10);
        let rep = mask_report(&m, &ParamFilter::new());
        let mut zeros = 0;
        m.visit(
            &mut compress_core::ParamPath::root(),
            &mut |_: &compress_core::ParamPath, p: &Param<f64>| {
                if let Some(mask) = mask_of(p) {
                    for (w, k) in p.value().iter().zip(mask.array().iter()) {
                        if *k == 0.0 {
                            assert_eq!(*w, 0.0, "stored weight revived");
                            zeros += 1;
                        }
                    }
                }
            },
        );
        assert_eq!(zeros, rep.pruned());
        m.bake();
        assert!(ModelStats::of(&m).nonzero <= ModelStats::of(&m).params - rep.pruned());
    }
}

#[test]
fn mask_gradient_is_masked() {
    let mut p = Param::new(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0f64, 2.0, 3.0]).unwrap());
    p.push_parametrization(Box::new(
        Mask::from_keep(&[3], &[true, false, true]).unwrap(),
    ))
    .unwrap();
    p.accumulate_grad(ArrayD::from_elem(IxDyn(&[3]), 1.0))
        .unwrap();
    assert_eq!(p.grad().unwrap().as_slice().unwrap(), &[1.0, 0.0, 1.0]);
    assert_eq!(p.value().as_slice().unwrap(), &[1.0, 0.0, 3.0]);
}

#[test]
fn remove_masks_lets_weights_regrow() {
    let mut m = net();
    prune(&mut m, &PruneConfig::new(0.5)).unwrap();
    assert_eq!(remove_masks(&mut m, &ParamFilter::new()).unwrap(), 3);
    assert_eq!(mask_report(&m, &ParamFilter::new()).pruned(), 0);
}

#[test]
fn taylor_needs_gradients_and_random_is_seeded() {
    let mut m = net();
    assert!(matches!(
        prune(
            &mut m,
            &PruneConfig::new(0.5).importance(Importance::Taylor)
        ),
        Err(PruneError::NoGradient { .. })
    ));
    train_steps(&mut m, &mut Sgd::new(0.0), 1);
    let r = prune(
        &mut m,
        &PruneConfig::new(0.5).importance(Importance::Taylor),
    )
    .unwrap();
    assert!((r.sparsity() - 0.5).abs() < 1e-3);
    let (mut a, mut b) = (net(), net());
    let cfg = PruneConfig::new(0.6).importance(Importance::Random { seed: 5 });
    prune(&mut a, &cfg).unwrap();
    prune(&mut b, &cfg).unwrap();
    assert_eq!(a.state_dict(), b.state_dict());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mut m = net();
    assert!(matches!(
        prune(&mut m, &PruneConfig::new(1.0)),
        Err(PruneError::Sparsity { .. })
    ));
    assert!(matches!(
        prune(&mut m, &PruneConfig::new(-0.1)),
        Err(PruneError::Sparsity { .. })
    ));
    let mut d = ParamDict::<f32>::new();
    d.insert(
        "a.weight",
        Param::new(ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![1.0, f32::NAN, 0.0]).unwrap()),
    );
    match prune(&mut d, &PruneConfig::new(0.5)) {
        Err(PruneError::Core(compress_core::CoreError::NonFinite { path, index, .. })) => {
            assert_eq!((path.as_str(), index), ("a.weight", 1));
        }
        other => panic!("{other:?}"),
    }
    // Nothing attached after the error.
    assert!(mask_of(d.get("a.weight").unwrap()).is_none());
    // Empty tensors are fine.
    let mut e = ParamDict::<f32>::new();
    e.insert("w", Param::new(ArrayD::zeros(IxDyn(&[0, 4]))));
    assert_eq!(prune(&mut e, &PruneConfig::new(0.5)).unwrap().pruned(), 0);
    assert_eq!(e.get("w").unwrap().effective().sparsity(), 0.0);
}
