//! Structured shrinking: outputs preserved when removed units are zero, Conv/BN/Flatten
//! chains, APoZ, rounding, unsupported layers.

use compress_core::{Layer, Mode, Param};
use compress_nn::{
    BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten, Linear, MaxPool2d, ReLU,
    Sequential, Tanh,
};
use compress_prune::{
    PruneError, ShrinkConfig, UnitCriterion, apoz, prunable_layers, prune_structured, shrink_layer,
};
use compress_testkit::{max_abs_diff, seeded_tensor};
use ndarray::{ArrayD, Axis};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use crate::common::out;

fn zero_rows<F: compress_core::Float>(p: &mut Param<F>, rows: &[usize]) {
    for &r in rows {
        p.value_mut().index_axis_mut(Axis(0), r).fill(F::zero());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn removing_zero_units_preserves_outputs(
        widths in proptest::collection::vec(2usize..12, 3..5),
        seed in 0u64..1000,
        picks in proptest::collection::vec(any::<bool>(), 12),
        zero_bias in any::<bool>(),
        tanh in any::<bool>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Sequential::<f64>::new();
        for (i, w) in widths.windows(2).enumerate() {
            if i > 0 {
                if tanh { net.push(Tanh::new()); } else { net.push(ReLU::new()); }
                net.push(Dropout::new(0.3, 1).unwrap());
            }
            net.push(Linear::new(w[0], w[1], true, &mut rng));
        }
        let x = seeded_tensor::<f64>(&[6, widths[0]], seed);
        let prunable = prunable_layers(&net, &[widths[0]]);
        prop_assert_eq!(prunable.len(), widths.len() - 2);
        let mut plans = Vec::new();
        for &i in &prunable {
            let width = net.get::<Linear<f64>>(i).unwrap().out_features();
            let keep: Vec<usize> = (0..width).filter(|&u| u == 0 || picks[u % 12]).collect();
            let removed: Vec<usize> = (0..width).filter(|u| !keep.contains(u)).collect();
            let l = net.get_mut::<Linear<f64>>(i).unwrap();
            zero_rows(&mut l.weight, &removed);
            if zero_bias {
                zero_rows(l.bias.as_mut().unwrap(), &removed);
            }
            plans.push((i, keep));
        }
        let before = out(&mut net, &x);
        let params_before = net.cost(&[widths[0]]).unwrap().params;
        for (i, keep) in plans {
            shrink_layer(&mut net, i, &keep, &[widths[0]]).unwrap();
        }
        let after = out(&mut net, &x);
        prop_assert!(max_abs_diff(&before, &after) < 1e-10, "diff {}", max_abs_diff(&before, &after));
        prop_assert!(net.cost(&[widths[0]]).unwrap().params <= params_before);
    }
}

fn cnn(rng: &mut StdRng) -> Sequential<f64> {
    Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(1, 6, 3).padding(1), rng).unwrap())
        .with(BatchNorm2d::new(6))
        .with(ReLU::new())
        .with(MaxPool2d::new(2))
        .with(Conv2d::new(Conv2dConfig::new(6, 5, 3), rng).unwrap())
        .with(ReLU::new())
        .with(Flatten::new())
        .with(Linear::new(5 * 2 * 2, 8, true, rng))
        .with(BatchNorm1d::new(8))
        .with(ReLU::new())
        .with(Linear::new(8, 3, true, rng))
}

#[test]
fn conv_bn_flatten_chain_shrinks_exactly_when_units_are_dead() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut net = cnn(&mut rng);
    let x = seeded_tensor::<f64>(&[4, 1, 8, 8], 3);
    // Train-mode passes give the batch norms non-trivial running statistics.
    for _ in 0..3 {
        net.forward(&x, Mode::Train).unwrap();
    }
    assert_eq!(prunable_layers(&net, &[1, 8, 8]), vec![0, 4, 7]);
    // Kill conv0 filters 1, 4 (zero filters, zero BN scale and shift) and conv4 filter 2
    // (zero filter and bias: its ReLU output is 0), and Linear 7 units 0, 5 via BN1d.
    {
        let c = net.get_mut::<Conv2d<f64>>(0).unwrap();
        zero_rows(&mut c.weight, &[1, 4]);
        zero_rows(c.bias.as_mut().unwrap(), &[1, 4]);
        let bn = net.get_mut::<BatchNorm2d<f64>>(1).unwrap();
        zero_rows(bn.weight_mut(), &[1, 4]);
        zero_rows(bn.bias_mut(), &[1, 4]);
        let c = net.get_mut::<Conv2d<f64>>(4).unwrap();
        zero_rows(&mut c.weight, &[2]);
        zero_rows(c.bias.as_mut().unwrap(), &[2]);
        let bn = net.get_mut::<BatchNorm1d<f64>>(8).unwrap();
        zero_rows(bn.weight_mut(), &[0, 5]);
        zero_rows(bn.bias_mut(), &[0, 5]);
    }
    let before = out(&mut net, &x);
    let cost_before = net.cost(&[1, 8, 8]).unwrap();
    shrink_layer(&mut net, 0, &[0, 2, 3, 5], &[1, 8, 8]).unwrap();
    shrink_layer(&mut net, 4, &[0, 1, 3, 4], &[1, 8, 8]).unwrap();
    shrink_layer(&mut net, 7, &[1, 2, 3, 4, 6, 7], &[1, 8, 8]).unwrap();
    let after = out(&mut net, &x);
    assert!(
        max_abs_diff(&before, &after) < 1e-10,
        "{}",
        max_abs_diff(&before, &after)
    );
    assert_eq!(net.get::<Conv2d<f64>>(4).unwrap().in_channels(), 4);
    assert_eq!(net.get::<Linear<f64>>(7).unwrap().in_features(), 4 * 2 * 2);
    assert_eq!(net.get::<BatchNorm2d<f64>>(1).unwrap().channels(), 4);
    let cost_after = net.cost(&[1, 8, 8]).unwrap();
    assert!(cost_after.macs < cost_before.macs && cost_after.params < cost_before.params);
    // The shrunk model still trains.
    let y = net.forward(&x, Mode::Train).unwrap();
    net.backward(&y).unwrap();
}

#[test]
fn prune_structured_halves_widths_with_rounding_and_apoz() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut net = compress_nn::models::mlp::<f32, _>(&[16, 40, 24, 4], &mut rng);
    let x = seeded_tensor::<f32>(&[50, 16], 1);
    let a = apoz(&mut net, &x, &[16], 16).unwrap();
    assert!(
        a[0].as_ref().unwrap().len() == 40 && a[2].as_ref().unwrap().len() == 24 && a[4].is_none()
    );
    assert!(
        a[0].as_ref()
            .unwrap()
            .iter()
            .all(|&z| (0.0..=1.0).contains(&z))
    );
    let cfg = ShrinkConfig::new(0.5)
        .criterion(UnitCriterion::Apoz)
        .round_to(8);
    let r = prune_structured(&mut net, &cfg, &[16], Some(&x)).unwrap();
    assert_eq!((r.layers[0].after, r.layers[1].after), (24, 16));
    assert!(r.params_after < r.params_before && r.macs_after < r.macs_before);
    assert_eq!(out(&mut net, &x).shape(), &[50, 4]);
    // APoZ without data is a typed error.
    assert!(prune_structured(&mut net, &cfg, &[16], None).is_err());
    for crit in [
        UnitCriterion::L1,
        UnitCriterion::L2,
        UnitCriterion::Random { seed: 3 },
    ] {
        let mut n2 = compress_nn::models::mlp::<f32, _>(&[16, 40, 24, 4], &mut rng);
        let r = prune_structured(
            &mut n2,
            &ShrinkConfig::new(0.25).criterion(crit),
            &[16],
            None,
        )
        .unwrap();
        assert_eq!((r.layers[0].after, r.layers[1].after), (30, 18));
    }
}

#[test]
fn l2_criterion_removes_the_zeroed_units() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut net = compress_nn::models::mlp::<f64, _>(&[8, 10, 3], &mut rng);
    let x = seeded_tensor::<f64>(&[5, 8], 0);
    {
        let l = net.get_mut::<Linear<f64>>(0).unwrap();
        zero_rows(&mut l.weight, &[1, 3, 5, 7, 9]);
    }
    let before = out(&mut net, &x);
    prune_structured(&mut net, &ShrinkConfig::new(0.5), &[8], None).unwrap();
    assert!(max_abs_diff(&before, &out(&mut net, &x)) < 1e-10);
}

#[test]
fn unsupported_positions_are_typed_errors() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = compress_nn::models::mlp::<f32, _>(&[4, 6, 2], &mut rng);
    // The last layer's outputs are the model's outputs.
    assert!(matches!(
        shrink_layer(&mut net, 2, &[0], &[4]),
        Err(PruneError::Unsupported { index: 2, .. })
    ));
    assert!(matches!(
        shrink_layer(&mut net, 1, &[0], &[4]),
        Err(PruneError::Unsupported { .. })
    ));
    assert!(shrink_layer(&mut net, 0, &[], &[4]).is_err());
    assert!(shrink_layer(&mut net, 0, &[3, 1], &[4]).is_err());
    assert!(shrink_layer(&mut net, 0, &[6], &[4]).is_err());
    let mut dw = Sequential::<f32>::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 4, 1), &mut rng).unwrap())
        .with(Conv2d::new(Conv2dConfig::new(4, 4, 3).groups(4), &mut rng).unwrap())
        .with(Flatten::new());
    assert!(matches!(
        shrink_layer(&mut dw, 0, &[0, 1], &[2, 5, 5]),
        Err(PruneError::Unsupported { index: 1, .. })
    ));
    let _ = ArrayD::<f32>::zeros(vec![1]);
}
