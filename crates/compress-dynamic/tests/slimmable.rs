//! Slimmable layers and networks: width MACs against the formula, width switching,
//! sandwich training on digits, batch-norm recalibration for a new width.

use compress_core::{Layer, Mode};
use compress_dynamic::{
    DynamicError, SandwichConfig, SlimLayer, Slimmable, SlimmableConv2d, SlimmableLinear,
    SlimmableNet, active_channels, recalibrate_bn, train_sandwich,
};
use compress_nn::{Adam, Conv2dConfig, Flatten, Linear, ReLU, data::digits};
use compress_testkit::seeded_tensor;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

fn ceil(w: f64, c: usize) -> u64 {
    (w * c as f64).ceil() as u64
}

#[test]
fn mlp_width_macs_match_the_formula() {
    let mut rng = StdRng::seed_from_u64(0);
    let dims = [64, 100, 60, 10];
    for bn in [false, true] {
        let mut net =
            SlimmableNet::<f32>::mlp(&dims, &[0.25, 0.5, 0.75, 1.0], bn, &mut rng).unwrap();
        for w in [0.25, 0.5, 0.75, 1.0] {
            let (h1, h2) = (ceil(w, 100), ceil(w, 60));
            let bn_macs = if bn { h1 + h2 } else { 0 };
            let formula = 64 * h1 + h1 * h2 + h2 * 10 + bn_macs;
            assert_eq!(
                net.macs_at(w, &[64]).unwrap(),
                formula,
                "width {w}, bn {bn}"
            );
            net.set_width(w).unwrap();
            let y = net
                .forward(&ndarray::ArrayD::zeros(vec![3, 64]), Mode::Eval)
                .unwrap();
            assert_eq!(y.shape(), &[3, 10]);
        }
    }
}

#[test]
fn conv_net_width_macs_match_the_formula() {
    let mut rng = StdRng::seed_from_u64(1);
    let widths = [0.5, 1.0];
    let mut net = SlimmableNet::<f64>::new(&widths).unwrap();
    let cfg = Conv2dConfig::new(1, 8, 3).padding(1);
    net.push(SlimLayer::Conv(
        SlimmableConv2d::new(cfg, false, true, &mut rng).unwrap(),
    ))
    .unwrap();
    net.push(SlimLayer::Fixed(Box::new(ReLU::new()))).unwrap();
    let cfg = Conv2dConfig::new(8, 16, 3).stride(2).padding(1);
    net.push(SlimLayer::Conv(
        SlimmableConv2d::new(cfg, true, true, &mut rng).unwrap(),
    ))
    .unwrap();
    net.push(SlimLayer::Fixed(Box::new(Flatten::new())))
        .unwrap();
    for w in widths {
        let (c1, c2) = (ceil(w, 8), ceil(w, 16));
        net.set_width(w).unwrap();
        let lin_in = (c2 * 16) as usize;
        let mut net_w = SlimmableNet::<f64>::new(&[1.0]).unwrap();
        net_w
            .push(SlimLayer::Linear(SlimmableLinear::new(
                lin_in, 10, false, false, true, &mut rng,
            )))
            .unwrap();
        let formula = c1 * 9 * 64 + c2 * c1 * 9 * 16;
        assert_eq!(net.cost(&[1, 8, 8]).unwrap().macs, formula);
        let y = net
            .forward(&seeded_tensor(&[2, 1, 8, 8], 2), Mode::Eval)
            .unwrap();
        assert_eq!(y.shape(), &[2, lin_in]);
        assert_eq!(net_w.cost(&[lin_in]).unwrap().macs, lin_in as u64 * 10);
    }
}

#[test]
fn full_width_equals_a_plain_linear() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut s = SlimmableLinear::<f64>::new(5, 7, true, true, true, &mut rng);
    let mut l = Linear::from_arrays(
        s.weight.value().clone(),
        Some(s.bias.as_ref().unwrap().value().clone()),
    );
    let x = seeded_tensor::<f64>(&[3, 5], 3);
    let a = s.forward(&x, Mode::Eval).unwrap();
    let b = l.forward(&x, Mode::Eval).unwrap();
    assert!(a.abs_diff_eq(&b, 1e-12));
    s.set_width(0.4).unwrap();
    assert!(
        s.forward(&x, Mode::Eval).is_err(),
        "input width must follow the active width"
    );
    let y = s
        .forward(
            &x.slice(ndarray::s![.., ..2]).to_owned().into_dyn(),
            Mode::Eval,
        )
        .unwrap();
    assert_eq!(y.shape(), &[3, 3]);
}

#[test]
fn unknown_widths_are_rejected() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut net = SlimmableNet::<f32>::mlp(&[4, 8, 2], &[0.5, 1.0], true, &mut rng).unwrap();
    assert!(matches!(
        net.set_width(0.75),
        Err(DynamicError::UnknownWidth { .. })
    ));
    assert!(SlimmableNet::<f32>::new(&[0.0]).is_err());
    assert!(SlimmableNet::<f32>::new(&[]).is_err());
    assert!(
        SlimmableLinear::<f32>::new(2, 2, true, true, true, &mut rng)
            .set_width(1.5)
            .is_err()
    );
}

#[test]
fn sandwich_training_makes_every_width_work_and_recalibration_adds_one() {
    let (train, test) = digits::<f32>().unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    let widths = [0.25, 0.5, 1.0];
    let mut net = SlimmableNet::<f32>::mlp(&[64, 64, 10], &widths, true, &mut rng).unwrap();
    let cfg = SandwichConfig {
        epochs: 6,
        ..SandwichConfig::default()
    };
    let rep = train_sandwich(&mut net, &mut Adam::new(3e-3), &train, &cfg).unwrap();
    assert!(rep.epochs.last().unwrap().loss_max < rep.epochs[0].loss_max);
    let mut accs = Vec::new();
    for w in widths {
        net.set_width(w).unwrap();
        accs.push(compress_nn::train::evaluate(&mut net, &test, 256).unwrap());
    }
    assert!(accs.iter().all(|&a| a > 0.85), "{accs:?}");
    // A width never trained: new BN entry, recalibrated from the training data.
    net.add_width(0.75).unwrap();
    recalibrate_bn(&mut net, 0.75, &train, 128, 100).unwrap();
    let a = compress_nn::train::evaluate(&mut net, &test, 256).unwrap();
    assert!(a > 0.85, "recalibrated 0.75: {a}");
    assert_eq!(net.widths(), &[0.25, 0.5, 0.75, 1.0]);
}

proptest! {
    #[test]
    fn active_channels_is_a_monotone_ceiling(w in 0.001f64..=1.0, c in 1usize..512) {
        let a = active_channels(w, c);
        prop_assert!(a >= 1 && a <= c);
        prop_assert!(a as f64 >= w * c as f64 - 1e-6);
        prop_assert!(active_channels((w + 0.01).min(1.0), c) >= a);
        prop_assert_eq!(active_channels(1.0, c), c);
    }
}

#[test]
fn sandwich_with_one_width_is_plain_training() {
    let (train, _) = digits::<f32>().unwrap();
    let small = train.subset(&(0..64).collect::<Vec<_>>());
    let mut rng = StdRng::seed_from_u64(9);
    let mut net = SlimmableNet::<f32>::mlp(&[64, 8, 10], &[1.0], true, &mut rng).unwrap();
    let cfg = SandwichConfig {
        epochs: 2,
        ..SandwichConfig::default()
    };
    let rep = train_sandwich(&mut net, &mut Adam::new(1e-3), &small, &cfg).unwrap();
    assert_eq!(rep.steps, 4);
    assert_eq!(rep.epochs[0].loss_min, 0.0);
}
