//! The fast depthwise, batch-norm and activation paths against their definitions, and
//! rebuilding (shrinking) grouped and depthwise convolutions.

use compress_core::{Layer, Mode};
use compress_nn::{BatchNorm2d, Conv2d, Conv2dConfig, ReLU};
use compress_testkit::uniform_tensor;
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::conv::{compare, reference};

#[test]
fn depthwise_paths_match_the_definition_on_wide_planes() {
    let dw = |c: usize, m: usize, k: usize| Conv2dConfig::new(c, c * m, k).groups(c);
    // The fused 3x3 stride-1 path, with and without padding, dilated, wide and narrow.
    compare(dw(3, 1, 3).padding(1), 2, 33, 37, 1);
    compare(dw(2, 2, 3).padding(1).bias(false), 1, 17, 70, 2);
    compare(dw(2, 1, 3), 2, 9, 40, 3);
    compare(dw(2, 1, 3).padding(2).dilation(2), 1, 19, 23, 4);
    compare(dw(1, 1, 3).padding(1), 1, 1, 1, 5);
    // The tap-by-tap path: stride 2, 5x5, rectangular kernels and paddings.
    compare(dw(3, 1, 3).padding(1).stride(2), 2, 32, 31, 6);
    compare(dw(2, 3, 5).padding(2), 1, 21, 18, 7);
    compare(
        Conv2dConfig::new(2, 2, (3, 1))
            .groups(2)
            .padding((1, 0))
            .stride((1, 2)),
        1,
        12,
        35,
        8,
    );
    compare(dw(2, 1, 3).padding(4), 1, 2, 3, 9);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn depthwise_matches_the_definition(
        c in 1usize..4, mult in 1usize..3, kh in 1usize..6, kw in 1usize..6,
        s in 1usize..3, p in 0usize..3, d in 1usize..3,
        h in 1usize..24, w in 1usize..40, bias: bool, seed: u64,
    ) {
        let cfg = Conv2dConfig::new(c, c * mult, (kh, kw))
            .stride(s).padding(p).dilation(d).groups(c).bias(bias);
        prop_assume!(cfg.output_hw(h, w).is_ok());
        compare(cfg, 2, h, w, seed);
    }
}

#[test]
fn batch_norm_eval_is_the_affine_map_of_the_running_statistics() {
    let mut rng = StdRng::seed_from_u64(10);
    let mut bn = BatchNorm2d::<f64>::new(3).with_eps(1e-3);
    let rand3 = |rng: &mut StdRng, lo: f64, hi: f64| {
        ArrayD::from_shape_simple_fn(IxDyn(&[3]), || rng.random_range(lo..hi))
    };
    let (g, b) = (rand3(&mut rng, 0.5, 2.0), rand3(&mut rng, -1.0, 1.0));
    let (m, v) = (rand3(&mut rng, -1.0, 1.0), rand3(&mut rng, 0.1, 3.0));
    bn.set_tensors(g.clone(), b.clone(), m.clone(), v.clone())
        .unwrap();
    let x = uniform_tensor::<f64, _>(&[2, 3, 4, 5], 1.0, &mut rng);
    let y = bn.forward(&x, Mode::Eval).unwrap();
    for ((idx, &yv), &xv) in y.indexed_iter().zip(&x) {
        let ch = idx[1];
        let expect = g[ch] * (xv - m[ch]) / (v[ch] + 1e-3).sqrt() + b[ch];
        assert!((yv - expect).abs() < 1e-12, "{idx:?}: {yv} vs {expect}");
    }
    // Eval keeps nothing for backward.
    assert!(bn.backward(&y).is_err());
    // A non-standard layout gives the same result.
    let xt = x.clone().reversed_axes();
    let xt = xt.as_standard_layout().to_owned().reversed_axes();
    assert_eq!(bn.forward(&xt, Mode::Eval).unwrap(), y);
}

#[test]
fn batch_norm_train_normalises_each_channel() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut bn = BatchNorm2d::<f64>::new(2);
    let x = uniform_tensor::<f64, _>(&[4, 2, 3, 3], 1.0, &mut rng).mapv(|v| 3.0 * v + 2.0);
    let y = bn.forward(&x, Mode::Train).unwrap();
    for ch in 0..2 {
        let plane = y.index_axis(Axis(1), ch);
        let mean = plane.mean().unwrap();
        let var = plane.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
        assert!(mean.abs() < 1e-12, "channel {ch}: mean {mean}");
        assert!((var - 1.0).abs() < 1e-3, "channel {ch}: var {var}");
    }
}

#[test]
fn relu_eval_and_train_agree() {
    let mut rng = StdRng::seed_from_u64(12);
    let x = uniform_tensor::<f64, _>(&[2, 3, 4, 4], 1.0, &mut rng);
    let mut r = ReLU::<f64>::new();
    let ye = r.forward(&x, Mode::Eval).unwrap();
    assert_eq!(ye, x.mapv(|v| v.max(0.0)));
    let yt = r.forward(&x, Mode::Train).unwrap();
    assert_eq!(ye, yt);
}

#[test]
fn shrinking_a_depthwise_conv_by_replacing_its_weight_keeps_it_depthwise() {
    let mut rng = StdRng::seed_from_u64(13);
    let cfg = Conv2dConfig::new(6, 12, 3).padding(1).groups(6);
    let mut conv = Conv2d::<f64>::new(cfg, &mut rng).unwrap();
    // Keep input channels 1, 2, 4 and so output channels 2..6 and 8..10 (multiplier 2).
    let keep = [2, 3, 4, 5, 8, 9];
    let w = conv.weight.value().select(Axis(0), &keep);
    let b = conv.bias.as_ref().unwrap().value().select(Axis(0), &keep);
    conv.weight.reset(w.clone());
    conv.bias.as_mut().unwrap().reset(b.clone());
    let c = conv.config();
    assert_eq!(
        (c.in_channels, c.out_channels, c.groups),
        (3, 6, 3),
        "{c:?}"
    );
    assert!(c.is_depthwise());
    let x = uniform_tensor::<f64, _>(&[2, 3, 5, 4], 1.0, &mut rng);
    let y = conv.forward(&x, Mode::Eval).unwrap();
    let expect = reference(&c, &x, &w, Some(&b));
    assert_eq!(y.shape(), expect.shape());
    for (a, e) in y.iter().zip(&expect) {
        assert!((a - e).abs() < 1e-12, "{a} vs {e}");
    }
    assert_eq!(conv.cost(&[3, 5, 4]).unwrap().macs, 5 * 4 * 6 * 9);
}

#[test]
fn with_channels_rebuilds_grouped_convs() {
    let mut rng = StdRng::seed_from_u64(14);
    let conv = Conv2d::<f64>::new(Conv2dConfig::new(8, 4, 3).groups(2), &mut rng).unwrap();
    // Drop one whole group: 4 inputs and 2 outputs remain, in one group.
    let w = conv.weight.value().select(Axis(0), &[2, 3]);
    let cfg = conv.config().with_channels(4, 2, 1);
    let small = Conv2d::from_arrays(cfg, w, None::<ArrayD<f64>>);
    // The bias flag is still set: the mismatch is a typed error, not a panic.
    assert!(small.is_err());
    let w = conv.weight.value().select(Axis(0), &[2, 3]);
    let b = conv.bias.as_ref().unwrap().value().select(Axis(0), &[2, 3]);
    let small = Conv2d::from_arrays(cfg, w, Some(b)).unwrap();
    assert_eq!(small.config(), cfg);
    // Counts that the groups do not divide are rejected.
    let bad = conv.config().with_channels(3, 2, 2);
    assert!(bad.validate().is_err());
}
