//! Quantization-aware training: fake quantization, STE, LSQ and composition with a mask.

use compress_core::{Layer, Mode, Module, Param, ParamFilter, Parametrization};
use compress_nn::{Linear, Sequential};
use compress_quant::{ActRange, FakeQuant, FakeQuantAct, IntScheme, attach_fake_quant};
use compress_testkit::FixedMask;
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

fn arr(v: &[f64], shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

#[test]
fn fake_quant_forward_matches_qtensor_grid() {
    let w = arr(&[0.9, -0.35, 0.2, 0.05, -1.0, 0.61], &[2, 3]);
    let fq = FakeQuant::observer(IntScheme::new(3).per_channel(0)).unwrap();
    let y = Parametrization::<f64>::forward(&fq, &w);
    // 3-bit symmetric: codes -3..=3; row scales 0.9/3 and 1.0/3.
    for (r, s) in [(0, 0.3), (1, 1.0 / 3.0)] {
        for c in 0..3 {
            let v = y[[r, c]];
            let code = v / s;
            assert!((code - code.round()).abs() < 1e-6 && code.abs() <= 3.0 + 1e-6);
            assert!((v - w[[r, c]]).abs() <= s / 2.0 + 1e-6);
        }
    }
}

#[test]
fn ste_passes_inside_and_blocks_outside_the_clip_range() {
    // learnable scale initialised at absmax / 1 (2-bit: codes -1..=1), then shrunk so 2.0 clips
    let w = arr(&[0.1, -0.5, 2.0], &[3]);
    let mut fq = FakeQuant::learnable(IntScheme::new(2), &w).unwrap();
    assert_eq!(fq.scales(), [2.0]);
    // push the scale down with a fake gradient step: grad_s = sum g * d(w_hat)/ds
    Parametrization::<f64>::accumulate_own_grad(&mut fq, &w, &arr(&[0.0, 1.0, 0.0], &[3]));
    sgd_own(&mut fq, 10.0);
    let s = fq.scales()[0];
    assert!(s < 1.0, "scale {s}");
    let g = Parametrization::<f64>::backward(&fq, &w, arr(&[1.0, 1.0, 1.0], &[3]));
    assert_eq!(g.as_slice().unwrap(), &[1.0, 1.0, 0.0]);
}

#[test]
fn lsq_gradient_formula() {
    // one element, symmetric 4-bit (qmax 7), s = 0.5, w = 0.8: r = 1.6, round = 2
    let w = arr(&[0.8, 10.0], &[2]);
    let mut fq = FakeQuant::learnable(IntScheme::new(4), &w).unwrap();
    let s0 = fq.scales()[0]; // 10 / 7
    let g = arr(&[1.0, 1.0], &[2]);
    Parametrization::<f64>::accumulate_own_grad(&mut fq, &w, &g);
    let d = |r: f64| {
        if r < -7.0 {
            -7.0
        } else if r > 7.0 {
            7.0
        } else {
            r.round() - r
        }
    };
    let expect = (d(0.8 / s0) + d(10.0 / s0)) / (2.0f64 * 7.0).sqrt();
    sgd_own(&mut fq, 1.0);
    assert!((s0 - fq.scales()[0] - expect).abs() < 1e-12);
}

#[test]
fn composes_with_a_mask_on_the_same_weight() {
    let w = arr(&[0.9, -0.35, 0.2, 0.05], &[2, 2]);
    let m = arr(&[1.0, 0.0, 1.0, 0.0], &[2, 2]);
    let mut p = Param::new(w.clone());
    // A fixed pruning mask (the real one lives in compress-prune).
    p.push_parametrization(Box::new(FixedMask::new(m.clone())))
        .unwrap();
    p.push_parametrization(Box::new(FakeQuant::observer(IntScheme::new(4)).unwrap()))
        .unwrap();
    let eff = p.effective().into_owned();
    // pruned entries stay exactly zero after quantization
    assert_eq!(eff[[0, 1]], 0.0);
    assert_eq!(eff[[1, 1]], 0.0);
    let direct = Parametrization::<f64>::forward(
        &FakeQuant::observer(IntScheme::new(4)).unwrap(),
        &(&w * &m),
    );
    assert_eq!(eff, direct);
    // gradients: STE passes through fake quant (min-max never clips), the mask zeroes them
    p.accumulate_grad(arr(&[1.0, 2.0, 3.0, 4.0], &[2, 2]))
        .unwrap();
    assert_eq!(p.grad().unwrap().as_slice().unwrap(), &[1.0, 0.0, 3.0, 0.0]);
}

#[test]
fn attach_to_a_model_and_train_a_step() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = Sequential::<f64>::new()
        .with(Linear::new(4, 3, true, &mut rng))
        .with(
            FakeQuantAct::new(
                IntScheme::new(8).affine(),
                ActRange::Observed { momentum: 0.1 },
            )
            .unwrap(),
        )
        .with(Linear::new(3, 2, true, &mut rng));
    let paths = attach_fake_quant(
        &mut net,
        &ParamFilter::new(),
        IntScheme::new(4).per_channel(0),
        true,
    )
    .unwrap();
    assert_eq!(paths, vec!["0.weight", "2.weight"]);
    let x = ArrayD::from_shape_fn(vec![5, 4], |ix| (ix[0] as f64 - ix[1] as f64) * 0.3);
    let y = net.forward(&x, Mode::Train).unwrap();
    let dx = net.backward(&ArrayD::ones(y.raw_dim())).unwrap();
    assert_eq!(dx.shape(), &[5, 4]);
    // effective weights lie on the 4-bit grid of their (learnable) scales
    let lin = net.get::<Linear<f64>>(0).unwrap();
    let fq = lin.weight.find_parametrization::<FakeQuant<f64>>().unwrap();
    let eff = lin.weight.effective();
    for (r, row) in eff.outer_iter().enumerate() {
        for &v in row {
            let c = v / fq.scales()[r];
            assert!((c - c.round()).abs() < 1e-9 && c.abs() <= 7.0 + 1e-9);
        }
    }
    // eval uses the observed range
    assert!(net.forward(&x, Mode::Eval).is_ok());
}

#[test]
fn fake_quant_act_ste_and_errors() {
    let mut a =
        FakeQuantAct::new(IntScheme::new(8), ActRange::Fixed { lo: -1.0, hi: 1.0 }).unwrap();
    let x = arr(&[0.5, -2.0, 0.999, 3.0], &[1, 4]);
    let y = Layer::<f64>::forward(&mut a, &x, Mode::Train).unwrap();
    assert!((y[[0, 1]] + 1.0).abs() < 1e-6 && (y[[0, 3]] - 1.0).abs() < 1e-6);
    let g = Layer::<f64>::backward(&mut a, &ArrayD::ones(IxDyn(&[1, 4]))).unwrap();
    assert_eq!(g.as_slice().unwrap(), &[1.0, 0.0, 1.0, 0.0]);
    let mut fresh =
        FakeQuantAct::new(IntScheme::new(8), ActRange::Observed { momentum: 0.1 }).unwrap();
    assert!(Layer::<f64>::forward(&mut fresh, &x, Mode::Eval).is_err());
    assert!(Layer::<f64>::backward(&mut fresh, &x).is_err());
    assert!(FakeQuantAct::new(IntScheme::new(8).per_group(2), ActRange::Dynamic).is_err());
    let mut dynamic =
        FakeQuantAct::new(IntScheme::new(8).per_channel(0), ActRange::Dynamic).unwrap();
    let xx = arr(&[1.0, 0.5, 100.0, 50.0], &[2, 2]);
    let yy = Layer::<f64>::forward(&mut dynamic, &xx, Mode::Eval).unwrap();
    assert!((yy[[0, 1]] - 0.5).abs() < 1.0 / 254.0 + 1e-12); // per-row scale 1/127
    assert!(FakeQuant::learnable(IntScheme::new(4).affine(), &xx).is_err());
    let _ = Module::<f64>::num_params(&dynamic);
}

/// One plain SGD step on a parametrization's own (nested) tensors.
fn sgd_own(p: &mut dyn Parametrization<f64>, lr: f64) {
    for (_, t) in p.params_mut() {
        t.update(|v, g| v.scaled_add(-lr, g));
        t.zero_grad();
    }
}

#[test]
fn lsq_scales_are_nested_params_that_adam_and_checkpoints_see() {
    use compress_core::{Module, ParamKind};
    use compress_nn::{Adam, Optimizer};
    let w = arr(&[0.8, -0.3, 0.5, 0.1], &[2, 2]);
    let mut p = compress_core::Param::new(w.clone());
    p.push_parametrization(Box::new(
        FakeQuant::learnable(IntScheme::new(4).per_channel(0), &w).unwrap(),
    ))
    .unwrap();
    let names: Vec<(String, ParamKind)> = p
        .named_params()
        .into_iter()
        .map(|i| (i.path, i.kind))
        .collect();
    assert_eq!(
        names,
        [
            (String::new(), ParamKind::Weight),
            ("fake_quant.scale".to_string(), ParamKind::Parametrization)
        ]
    );
    assert_eq!(p.state_dict()[1].1.shape(), &[2]);
    p.accumulate_grad(arr(&[1.0, -1.0, 0.5, 2.0], &[2, 2]))
        .unwrap();
    let before = p.find_parametrization::<FakeQuant<f64>>().unwrap().scales();
    let mut adam = Adam::new(0.01);
    adam.step(&mut p).unwrap();
    let after = p.find_parametrization::<FakeQuant<f64>>().unwrap().scales();
    // Adam's first step moves every parameter with a gradient by about lr.
    for (a, b) in before.iter().zip(&after) {
        assert!(((a - b).abs() - 0.01).abs() < 1e-6, "{a} -> {b}");
    }
    // Saved and loaded like any parameter.
    let mut state = p.state_dict();
    state[1].1.fill(0.25);
    p.load_state(&state).unwrap();
    assert_eq!(
        p.find_parametrization::<FakeQuant<f64>>().unwrap().scales(),
        [0.25, 0.25]
    );
    // Removed by type.
    assert_eq!(p.remove_parametrizations::<FakeQuant<f64>>(), 1);
    assert_eq!(p.named_params().len(), 1);
}
