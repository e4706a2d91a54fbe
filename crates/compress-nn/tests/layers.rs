//! Behaviour of pooling, batch normalisation and dropout beyond their gradients.

use compress_core::{CoreError, Layer, Mode, ModelStats, Module, ParamKind};
use compress_nn::{AvgPool2d, BatchNorm1d, BatchNorm2d, Dropout, GlobalAvgPool, MaxPool2d};
use ndarray::{ArrayD, IxDyn, array};

fn arr(shape: &[usize], v: Vec<f64>) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

#[test]
fn pools_compute_known_values() {
    let x = arr(&[1, 1, 4, 4], (0..16).map(f64::from).collect());
    let mut mp = MaxPool2d::new(2);
    let y = mp.forward(&x, Mode::Train).unwrap();
    assert_eq!(y.into_raw_vec_and_offset().0, vec![5.0, 7.0, 13.0, 15.0]);
    let dx = mp
        .backward(&arr(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]))
        .unwrap();
    assert_eq!(dx[[0, 0, 1, 1]], 1.0);
    assert_eq!(dx[[0, 0, 3, 3]], 4.0);
    assert_eq!(dx.sum(), 10.0);
    // Padding is -inf for max: all-negative input keeps its values.
    let neg = x.mapv(|v| -v - 1.0);
    let y = MaxPool2d::new(3)
        .stride(2)
        .padding(1)
        .forward(&neg, Mode::Eval)
        .unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y[[0, 0, 0, 0]], -1.0);
    let y = AvgPool2d::new(2).forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.into_raw_vec_and_offset().0, vec![2.5, 4.5, 10.5, 12.5]);
    // count_include_pad: a corner window of 3x3 with padding 1 sees 4 real values.
    let y = AvgPool2d::new(3)
        .stride(2)
        .padding(1)
        .forward(&x, Mode::Eval)
        .unwrap();
    assert!((y[[0, 0, 0, 0]] - (0.0 + 1.0 + 4.0 + 5.0) / 9.0).abs() < 1e-12);
    let y = GlobalAvgPool::new().forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[1, 1]);
    assert_eq!(y[[0, 0]], 7.5);
}

#[test]
fn pool_costs_and_errors() {
    let mp = MaxPool2d::new(2);
    let c = Layer::<f32>::cost(&mp, &[3, 8, 7]).unwrap();
    assert_eq!(c.output_shape, vec![3, 4, 3]);
    assert_eq!(c.macs, 0);
    assert!(Layer::<f32>::cost(&mp, &[3, 1, 7]).is_err());
    assert!(Layer::<f32>::cost(&MaxPool2d::new(2).padding(2), &[3, 8, 8]).is_err());
    assert!(Layer::<f32>::cost(&MaxPool2d::new(2).stride(0), &[3, 8, 8]).is_err());
    let c = Layer::<f32>::cost(&GlobalAvgPool::new(), &[5, 3, 3]).unwrap();
    assert_eq!(c.output_shape, vec![5]);
    let mut g = GlobalAvgPool::new();
    assert!(Layer::<f32>::forward(&mut g, &ArrayD::zeros(vec![2, 3]), Mode::Eval).is_err());
    let e = Layer::<f32>::backward(&mut g, &ArrayD::zeros(vec![2, 3])).unwrap_err();
    assert!(matches!(e, CoreError::InvalidState { .. }));
}

#[test]
fn batch_norm_statistics() {
    let mut bn = BatchNorm1d::<f64>::new(2);
    let x = array![[1.0, 10.0], [3.0, 20.0], [5.0, 30.0]].into_dyn();
    let y = bn.forward(&x, Mode::Train).unwrap();
    // Each column is normalised to mean 0 and biased variance ~1.
    for c in 0..2 {
        let col: Vec<f64> = (0..3).map(|i| y[[i, c]]).collect();
        let mean = col.iter().sum::<f64>() / 3.0;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
    // Running stats: momentum 0.1, unbiased variance.
    let rm = bn.running_mean().value();
    let rv = bn.running_var().value();
    assert!((rm[0] - 0.1 * 3.0).abs() < 1e-12 && (rm[1] - 0.1 * 20.0).abs() < 1e-12);
    assert!((rv[0] - (0.9 + 0.1 * 4.0)).abs() < 1e-12);
    assert!((rv[1] - (0.9 + 0.1 * 100.0)).abs() < 1e-12);
    // Eval uses running statistics.
    let z = bn
        .forward(&array![[0.3, 2.0]].into_dyn(), Mode::Eval)
        .unwrap();
    assert!(z[[0, 0]].abs() < 1e-12);
    bn.reset_running_stats();
    assert_eq!(bn.running_mean().value().sum(), 0.0);
    assert_eq!(bn.running_var().value().sum(), 2.0);
    // Kinds and stats: buffers are saved but not counted as parameters.
    let kinds: Vec<_> = bn
        .named_params()
        .into_iter()
        .map(|p| (p.path, p.kind))
        .collect();
    assert_eq!(kinds[0], ("weight".to_string(), ParamKind::Norm));
    assert_eq!(kinds[3], ("running_var".to_string(), ParamKind::Buffer));
    assert_eq!(ModelStats::of(&bn).params, 4);
    assert_eq!(bn.num_params(), 8);
}

#[test]
fn batch_norm_2d_shapes_and_errors() {
    let mut bn = BatchNorm2d::<f32>::new(3);
    let y = bn
        .forward(&ArrayD::ones(vec![2, 3, 4, 4]), Mode::Train)
        .unwrap();
    assert_eq!(y.shape(), &[2, 3, 4, 4]);
    assert!(
        bn.forward(&ArrayD::ones(vec![2, 4, 4, 4]), Mode::Train)
            .is_err()
    );
    assert!(bn.forward(&ArrayD::ones(vec![2, 3]), Mode::Train).is_err());
    // One value per channel cannot be normalised in training.
    let mut bn1 = BatchNorm1d::<f32>::new(3);
    let e = bn1
        .forward(&ArrayD::ones(vec![1, 3]), Mode::Train)
        .unwrap_err();
    assert!(matches!(e, CoreError::InvalidState { .. }), "{e}");
    assert!(bn1.forward(&ArrayD::ones(vec![1, 3]), Mode::Eval).is_ok());
    let c = bn.cost(&[3, 4, 4]).unwrap();
    assert_eq!((c.params, c.macs), (6, 48));
    bn.set_tensors(
        ArrayD::ones(vec![2]),
        ArrayD::zeros(vec![2]),
        ArrayD::zeros(vec![2]),
        ArrayD::ones(vec![2]),
    )
    .unwrap();
    assert_eq!(bn.channels(), 2);
    assert!(
        bn.set_tensors(
            ArrayD::ones(vec![2]),
            ArrayD::zeros(vec![3]),
            ArrayD::zeros(vec![2]),
            ArrayD::ones(vec![2]),
        )
        .is_err()
    );
}

#[test]
fn dropout_keeps_the_expected_fraction_and_scales() {
    let mut d = Dropout::<f64>::new(0.25, 3).unwrap();
    let x = ArrayD::ones(vec![100, 100]);
    let y = d.forward(&x, Mode::Train).unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 1e4;
    assert!((kept - 0.75).abs() < 0.02, "{kept}");
    assert!(
        y.iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12)
    );
    assert!((y.mean().unwrap() - 1.0).abs() < 0.03);
    let g = d.backward(&x).unwrap();
    assert_eq!(g, y);
    assert_eq!(d.forward(&x, Mode::Eval).unwrap(), x);
    // Reseeding reproduces the mask.
    d.reseed(5);
    let a = d.forward(&x, Mode::Train).unwrap();
    d.reseed(5);
    assert_eq!(a, d.forward(&x, Mode::Train).unwrap());
    let mut all = Dropout::<f64>::new(1.0, 0).unwrap();
    assert_eq!(all.forward(&x, Mode::Train).unwrap().sum(), 0.0);
    assert!(Dropout::<f64>::new(1.5, 0).is_err());
    assert!(Dropout::<f64>::new(-0.1, 0).is_err());
    assert!(Dropout::<f64>::new(f64::NAN, 0).is_err());
}

mod visitor_contract {
    use std::collections::HashSet;

    use compress_core::{Layer, Module, Param, ParamPath};
    use compress_nn::{
        BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
    };
    use proptest::prelude::*;
    use rand::{SeedableRng, rngs::StdRng};

    /// A random conv stack on `[c, 6, 6]` inputs, then a classifier.
    fn model(widths: &[usize], bias: &[bool], seed: u64) -> Sequential<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Sequential::new();
        let mut c = 1;
        for (&w, &b) in widths.iter().zip(bias) {
            let cfg = Conv2dConfig::new(c, w, 3).padding(1).bias(b);
            net.push(Conv2d::new(cfg, &mut rng).unwrap());
            net.push(BatchNorm2d::new(w));
            net.push(ReLU::new());
            c = w;
        }
        net.push(MaxPool2d::new(2));
        net.push(Flatten::new());
        net.push(Dropout::new(0.1, seed).unwrap());
        net.push(Linear::new(c * 9, 3, true, &mut rng));
        net
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn each_parameter_once_with_unique_paths(
            widths in prop::collection::vec(1usize..5, 0..4),
            bias in prop::collection::vec(any::<bool>(), 4),
            seed: u64,
        ) {
            let mut net = model(&widths, &bias, seed);
            let mut paths = Vec::new();
            let mut total = 0;
            net.visit(&mut ParamPath::root(), &mut |p: &ParamPath, param: &Param<f32>| {
                paths.push(p.to_string());
                total += param.len();
            });
            let unique: HashSet<_> = paths.iter().collect();
            prop_assert_eq!(unique.len(), paths.len());
            prop_assert_eq!(total, net.num_params());
            let mut visits = 0;
            net.visit_mut(&mut ParamPath::root(), &mut |_: &ParamPath, _: &mut Param<f32>| {
                visits += 1;
                Ok(())
            }).unwrap();
            prop_assert_eq!(visits, paths.len());
            let cost = net.cost(&[1, 6, 6]).unwrap();
            let trainable: usize = net
                .named_params()
                .iter()
                .filter(|p| p.kind != compress_core::ParamKind::Buffer)
                .map(|p| p.len)
                .sum();
            prop_assert_eq!(cost.params, trainable);
            prop_assert_eq!(cost.output_shape, vec![3]);
        }
    }
}

#[test]
fn forward_owned_equals_forward_and_keeps_the_training_cache() {
    use compress_nn::{HardSwish, Linear, ReLU, ReLU6, Sequential, Sigmoid, Tanh};
    let x = arr(&[3, 4], (0..12).map(|i| f64::from(i) * 0.7 - 4.0).collect());
    let g = arr(&[3, 4], (0..12).map(|i| f64::from(i % 5) - 2.0).collect());
    let mut layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(ReLU::new()),
        Box::new(ReLU6::new()),
        Box::new(Sigmoid::new()),
        Box::new(Tanh::new()),
        Box::new(HardSwish::new()),
        Box::new(
            Sequential::new()
                .with(Linear::from_arrays(
                    arr(
                        &[4, 4],
                        (0..16).map(|i| f64::from(i % 7) * 0.1 - 0.3).collect(),
                    ),
                    Some(arr(&[4], vec![0.1, -0.2, 0.3, 0.0])),
                ))
                .with(ReLU::new())
                .with(Tanh::new()),
        ),
    ];
    for l in &mut layers {
        for mode in [Mode::Eval, Mode::Train] {
            let want = l.forward(&x, mode).unwrap();
            let want_dx = (mode == Mode::Train).then(|| l.backward(&g).unwrap());
            let got = l.forward_owned(x.clone(), mode).unwrap();
            assert_eq!(got, want, "{} {mode:?}", l.name());
            match want_dx {
                Some(dx) => assert_eq!(l.backward(&g).unwrap(), dx, "{}", l.name()),
                // Eval mode leaves nothing for backward.
                None => assert!(l.backward(&g).is_err(), "{}", l.name()),
            }
        }
    }
}

mod max_pool_2x2 {
    use compress_core::{Layer, Mode};
    use compress_nn::MaxPool2d;
    use ndarray::ArrayD;
    use proptest::prelude::*;

    /// Brute-force 2x2 / stride-2 max pooling: the value and flat index of each window's
    /// first maximum (rows top to bottom, left to right), NaN winning.
    fn reference(x: &[f32], planes: usize, h: usize, w: usize) -> (Vec<f32>, Vec<usize>) {
        let (oh, ow) = (h / 2, w / 2);
        let (mut vals, mut idx) = (vec![], vec![]);
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    let (mut best, mut bi) = (f32::NEG_INFINITY, p * h * w + 2 * i * w + 2 * j);
                    for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let k = p * h * w + (2 * i + di) * w + 2 * j + dj;
                        if x[k] > best || (x[k].is_nan() && !best.is_nan()) {
                            best = x[k];
                            bi = k;
                        }
                    }
                    vals.push(best);
                    idx.push(bi);
                }
            }
        }
        (vals, idx)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The 2x2 fast path gives the brute-force values (eval and train) and routes each
        /// gradient to the brute-force arg-max, with ties, -inf, NaN and odd sides.
        #[test]
        fn fast_path_matches_brute_force(
            n in 1usize..3, c in 1usize..3, h in 2usize..8, w in 2usize..8,
            codes in prop::collection::vec(0u8..8, 2 * 2 * 7 * 7),
        ) {
            let len = n * c * h * w;
            // Few distinct values, so ties are common; code 6 is -inf and 7 NaN.
            let xs: Vec<f32> = codes.iter().cycle().take(len).map(|&k| match k {
                6 => f32::NEG_INFINITY,
                7 => f32::NAN,
                k => f32::from(k) - 2.0,
            }).collect();
            let x = ArrayD::from_shape_vec(vec![n, c, h, w], xs.clone()).unwrap();
            let (vals, idx) = reference(&xs, n * c, h, w);
            let same = |y: &ArrayD<f32>| {
                y.iter().zip(&vals).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
            };
            let mut pool = MaxPool2d::new(2);
            let y = pool.forward(&x, Mode::Eval).unwrap();
            prop_assert_eq!(y.shape(), &[n, c, h / 2, w / 2]);
            prop_assert!(same(&y));
            let y = pool.forward(&x, Mode::Train).unwrap();
            prop_assert!(same(&y));
            let g = ArrayD::from_shape_vec(y.raw_dim(), (1..=y.len()).map(|v| v as f32).collect()).unwrap();
            let dx = pool.backward(&g).unwrap();
            let mut expected = vec![0.0f32; len];
            for (&k, &gv) in idx.iter().zip(g.iter()) {
                expected[k] += gv;
            }
            prop_assert_eq!(dx.iter().copied().collect::<Vec<_>>(), expected);
        }
    }
}

/// Eval through `forward_owned` (in place, as `Sequential` runs it) equals `forward`.
#[test]
fn batch_norm_eval_in_place_equals_forward() {
    let mut bn = BatchNorm2d::<f64>::new(3);
    let x = compress_testkit::seeded_tensor::<f64>(&[4, 3, 5, 5], 3);
    // Non-trivial running statistics from a training pass.
    bn.forward(&x.mapv(|v| 2.0 * v + 1.0), Mode::Train).unwrap();
    let y = bn.forward(&x, Mode::Eval).unwrap();
    assert_eq!(bn.forward_owned(x.clone(), Mode::Eval).unwrap(), y);
    assert_ne!(y, x);
    let mut bn1 = BatchNorm1d::<f64>::new(3);
    let x1 = compress_testkit::seeded_tensor::<f64>(&[6, 3], 4);
    bn1.forward(&x1, Mode::Train).unwrap();
    let y1 = bn1.forward(&x1, Mode::Eval).unwrap();
    assert_eq!(bn1.forward_owned(x1, Mode::Eval).unwrap(), y1);
}
