//! Finite-difference gradient checks (f64) for every layer and loss of the crate.

use compress_core::{Layer, Mode, Module};
use compress_dynamic::{
    ExitDistill, Slimmable, SlimmableConv2d, SlimmableLinear, SlimmableNet, SwitchableBatchNorm,
    distill_loss, joint_exit_loss,
};
use compress_testkit::{GradCheck, fd_grad, seeded_matrix, seeded_tensor};
use ndarray::{Array2, ArrayD};
use rand::{SeedableRng, rngs::StdRng};

use crate::common::three_exit_net;

const TOL: f64 = 1e-6;

const EPS: f64 = 1e-6;

/// Largest scaled error (`|a - n| / max(1, |n|)`) of the input and parameter gradients.
/// The batch norms of inactive widths get no gradient and are skipped.
fn grad_error<L: Layer<f64>>(layer: &mut L, x: &ArrayD<f64>) -> f64 {
    GradCheck::new()
        .allow_missing_grads()
        .layer(layer, x)
        .max_error()
}

#[test]
fn distill_loss_gradient() {
    let s = seeded_matrix::<f64>(3, 4, 1) * 3.0;
    let t = seeded_matrix::<f64>(3, 4, 2) * 3.0;
    for temp in [1.0, 2.5] {
        let (_, g) = distill_loss(&s, &t, temp).unwrap();
        let num = fd_grad(|z| distill_loss(z, &t, temp).unwrap().0, &s, EPS);
        assert!(g.abs_diff_eq(&num, TOL), "T={temp}: {g} vs {num}");
    }
    assert!(distill_loss(&s, &t, 0.0).is_err());
    assert!(distill_loss(&s, &t.slice(ndarray::s![..2, ..]), 1.0).is_err());
}

#[test]
fn joint_exit_loss_gradient_per_exit() {
    let z: Vec<Array2<f64>> = (0..3)
        .map(|k| seeded_matrix::<f64>(4, 3, 10 + k) * 2.0)
        .collect();
    let labels = [0, 2, 1, 1];
    let w = [0.5, 1.0, 2.0];
    let d = Some(ExitDistill {
        temperature: 2.0,
        alpha: 0.3,
    });
    let (_, grads) = joint_exit_loss(&z, &labels, &w, d).unwrap();
    // Early exits: the last exit is a constant teacher for them.
    for k in 0..2 {
        let f = |zk: &Array2<f64>| {
            let mut zz = z.clone();
            zz[k] = zk.clone();
            joint_exit_loss(&zz, &labels, &w, d).unwrap().0
        };
        let num = fd_grad(f, &z[k], EPS);
        assert!(grads[k].abs_diff_eq(&num, TOL), "exit {k}");
    }
    // Without distillation every exit's gradient is exact.
    let (_, grads) = joint_exit_loss(&z, &labels, &w, None).unwrap();
    let f = |z2: &Array2<f64>| {
        let mut zz = z.clone();
        zz[2] = z2.clone();
        joint_exit_loss(&zz, &labels, &w, None).unwrap().0
    };
    assert!(grads[2].abs_diff_eq(&fd_grad(f, &z[2], EPS), TOL));
}

#[test]
fn early_exit_backward_all_matches_finite_differences() {
    let mut net = three_exit_net(3, 2, 7);
    let x = seeded_tensor::<f64>(&[4, 3], 8);
    let r: Vec<Array2<f64>> = (0..3).map(|k| seeded_matrix(4, 2, 20 + k)).collect();
    let mut obj = |net: &mut compress_dynamic::EarlyExitNet<f64>| -> f64 {
        let ys = net.forward_all(&x, Mode::Train).unwrap();
        ys.iter().zip(&r).map(|(y, r)| (y * r).sum()).sum()
    };
    obj(&mut net);
    net.zero_grad();
    net.backward_all(&r).unwrap();
    let report = GradCheck::new().params(&mut net, &mut obj);
    assert_eq!(report.params.len(), net.named_params().len());
    assert!(report.max_error() < TOL, "{report:?}");
}

#[test]
fn slimmable_linear_gradients_at_reduced_width() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut l = SlimmableLinear::<f64>::new(6, 8, true, true, true, &mut rng);
    l.set_width(0.5).unwrap();
    let x = seeded_tensor::<f64>(&[3, 3], 2);
    assert!(grad_error(&mut l, &x) < TOL);
    // Inactive rows and columns get exactly zero gradient.
    l.zero_grad();
    let y = l.forward(&x, Mode::Train).unwrap();
    l.backward(&y).unwrap();
    let g = l.weight.grad().unwrap();
    assert!(g.slice(ndarray::s![4.., ..]).iter().all(|&v| v == 0.0));
    assert!(g.slice(ndarray::s![.., 3..]).iter().all(|&v| v == 0.0));
}

#[test]
fn slimmable_conv_gradients_at_reduced_width() {
    let mut rng = StdRng::seed_from_u64(3);
    let cfg = compress_nn::Conv2dConfig::new(4, 6, 3).stride(2).padding(1);
    let mut c = SlimmableConv2d::<f64>::new(cfg, true, true, &mut rng).unwrap();
    c.set_width(0.5).unwrap();
    let x = seeded_tensor::<f64>(&[2, 2, 5, 5], 4);
    assert!(grad_error(&mut c, &x) < TOL);
}

#[test]
fn switchable_batch_norm_gradients() {
    let mut bn = SwitchableBatchNorm::<f64>::new(6, &[0.5, 1.0]).unwrap();
    // Non-trivial affine parameters for the half width.
    bn.set_width(0.5).unwrap();
    let mut st = bn.stored_dict();
    st[0].1 = seeded_tensor(&[3], 9) + 1.5;
    st[1].1 = seeded_tensor(&[3], 10);
    bn.load_state(&st).unwrap();
    let x2 = seeded_tensor::<f64>(&[5, 3], 11);
    assert!(grad_error(&mut bn, &x2) < TOL);
    let x4 = seeded_tensor::<f64>(&[2, 3, 2, 3], 12);
    assert!(grad_error(&mut bn, &x4) < TOL);
}

#[test]
fn slimmable_net_gradients_at_every_width() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut net =
        SlimmableNet::<f64>::mlp(&[4, 8, 6, 3], &[0.25, 0.5, 1.0], true, &mut rng).unwrap();
    let x = seeded_tensor::<f64>(&[6, 4], 6);
    for w in [0.25, 0.5, 1.0] {
        net.set_width(w).unwrap();
        assert!(grad_error(&mut net, &x) < 1e-5, "width {w}");
    }
}
