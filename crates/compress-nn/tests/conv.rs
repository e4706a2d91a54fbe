//! Conv2d against a naive reference, plus shapes, costs and errors.

use compress_core::{CoreError, Layer, Mode, Module};
use compress_nn::{Conv2d, Conv2dConfig};
use compress_testkit::{ConvSpec, uniform_tensor};
use ndarray::ArrayD;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

/// The convolution by its definition (compress-testkit's seven loops).
pub(crate) fn reference(
    cfg: &Conv2dConfig,
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
) -> ArrayD<f64> {
    ConvSpec::new(cfg.stride, cfg.padding, cfg.dilation, cfg.groups).conv2d(x, w, b)
}

/// `cfg` on a random batch of `n` `h x w` images (seeded by `seed`) against the
/// definition, in `f64` and in `f32`.
pub(crate) fn compare(cfg: Conv2dConfig, n: usize, h: usize, w: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut conv = Conv2d::<f64>::new(cfg, &mut rng).unwrap();
    let x = uniform_tensor::<f64, _>(&[n, cfg.in_channels, h, w], 1.0, &mut rng);
    let y = conv.forward(&x, Mode::Eval).unwrap();
    let expect = reference(
        &cfg,
        &x,
        conv.weight.value(),
        conv.bias.as_ref().map(|b| b.value()),
    );
    assert_eq!(y.shape(), expect.shape());
    for (a, b) in y.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-10, "{cfg:?}: {a} vs {b}");
    }
    // f32 agrees with f64.
    let w32 = conv.weight.value().mapv(|v| v as f32);
    let b32 = conv.bias.as_ref().map(|b| b.value().mapv(|v| v as f32));
    let mut c32 = Conv2d::<f32>::from_arrays(cfg, w32, b32).unwrap();
    let y32 = c32.forward(&x.mapv(|v| v as f32), Mode::Eval).unwrap();
    for (a, b) in y32.iter().zip(&expect) {
        assert!((f64::from(*a) - b).abs() < 1e-4, "{cfg:?} f32: {a} vs {b}");
    }
}

#[test]
fn matches_reference_on_fixed_cases() {
    compare(Conv2dConfig::new(3, 5, 3).padding(1), 2, 6, 7, 1);
    compare(Conv2dConfig::new(4, 4, 3).groups(4).padding(1), 2, 8, 8, 2);
    compare(Conv2dConfig::new(4, 8, 3).groups(4).stride(2), 1, 9, 7, 3);
    compare(Conv2dConfig::new(6, 4, 1).groups(2), 2, 3, 4, 4);
    compare(
        Conv2dConfig::new(2, 3, (3, 2))
            .dilation((2, 1))
            .padding((2, 3)),
        1,
        4,
        3,
        5,
    );
    compare(Conv2dConfig::new(3, 3, 3).groups(3).padding(3), 1, 2, 2, 6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn matches_reference(
        cg in 1usize..3, og in 1usize..3, groups in 1usize..4,
        kh in 1usize..4, kw in 1usize..4, s in 1usize..3, p in 0usize..3, d in 1usize..3,
        h in 1usize..7, w in 1usize..7, bias: bool, depthwise: bool, seed: u64,
    ) {
        let (cin, cout) = if depthwise { (groups, groups * og) } else { (cg * groups, og * groups) };
        let cfg = Conv2dConfig::new(cin, cout, (kh, kw))
            .stride(s).padding(p).dilation(d).groups(groups).bias(bias);
        prop_assume!(cfg.output_hw(h, w).is_ok());
        compare(cfg, 2, h, w, seed);
    }
}

#[test]
fn cost_counts_macs_params_and_nonzeros() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(64, 64, 3).padding(1), &mut rng).unwrap();
    let c = conv.cost(&[64, 32, 32]).unwrap();
    assert_eq!(c.output_shape, vec![64, 32, 32]);
    assert_eq!(c.macs, 32 * 32 * 64 * 64 * 9);
    assert_eq!(c.params, 64 * 64 * 9 + 64);
    conv.weight
        .value_mut()
        .slice_mut(ndarray::s![..32, .., .., ..])
        .fill(0.0);
    assert_eq!(
        conv.cost(&[64, 32, 32]).unwrap().nonzero_params,
        32 * 64 * 9 + 64
    );
    let dw = Conv2d::<f32>::new(
        Conv2dConfig::new(64, 64, 3)
            .padding(1)
            .groups(64)
            .bias(false),
        &mut rng,
    )
    .unwrap();
    let c = dw.cost(&[64, 32, 32]).unwrap();
    assert_eq!((c.macs, c.params), (32 * 32 * 64 * 9, 64 * 9));
    let strided = Conv2d::<f32>::new(Conv2dConfig::new(3, 8, 3).stride(2), &mut rng).unwrap();
    assert_eq!(
        strided.cost(&[3, 9, 9]).unwrap().output_shape,
        vec![8, 4, 4]
    );
    assert_eq!(conv.num_params(), 64 * 64 * 9 + 64);
    assert_eq!(conv.config().kernel, (3, 3));
    assert_eq!((conv.in_channels(), conv.out_channels()), (64, 64));
}

#[test]
fn bad_configs_and_inputs_are_errors() {
    let mut rng = StdRng::seed_from_u64(0);
    for cfg in [
        Conv2dConfig::new(0, 4, 3),
        Conv2dConfig::new(4, 4, 0),
        Conv2dConfig::new(4, 4, 3).stride(0),
        Conv2dConfig::new(4, 4, 3).dilation(0),
        Conv2dConfig::new(4, 6, 3).groups(4),
        Conv2dConfig::new(3, 4, 3).groups(2),
        Conv2dConfig::new(4, 4, 3).groups(0),
    ] {
        let e = Conv2d::<f32>::new(cfg, &mut rng).unwrap_err();
        assert!(matches!(e, CoreError::InvalidConfig { .. }), "{cfg:?}: {e}");
    }
    let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(3, 4, 3), &mut rng).unwrap();
    let e = conv
        .forward(&ArrayD::zeros(vec![1, 2, 5, 5]), Mode::Eval)
        .unwrap_err();
    assert!(matches!(e, CoreError::ShapeMismatch { .. }), "{e}");
    let e = conv
        .forward(&ArrayD::zeros(vec![1, 3, 2, 5]), Mode::Eval)
        .unwrap_err();
    assert!(e.to_string().contains("smaller"), "{e}");
    let e = conv
        .forward(&ArrayD::zeros(vec![3, 5, 5]), Mode::Eval)
        .unwrap_err();
    assert!(matches!(e, CoreError::ShapeMismatch { .. }), "{e}");
    let e = conv.backward(&ArrayD::zeros(vec![1, 4, 3, 3])).unwrap_err();
    assert!(matches!(e, CoreError::InvalidState { .. }), "{e}");
    conv.forward(&ArrayD::zeros(vec![1, 3, 5, 5]), Mode::Train)
        .unwrap();
    let e = conv.backward(&ArrayD::zeros(vec![1, 4, 3, 4])).unwrap_err();
    assert!(matches!(e, CoreError::ShapeMismatch { .. }), "{e}");
    let w = ArrayD::zeros(vec![4, 3, 3, 3]);
    assert!(Conv2d::<f32>::from_arrays(Conv2dConfig::new(3, 4, 2), w.clone(), None).is_err());
    assert!(Conv2d::<f32>::from_arrays(Conv2dConfig::new(3, 4, 3), w, None).is_err());
}

#[test]
fn empty_batch_gives_empty_output() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(2, 3, 3).padding(1), &mut rng).unwrap();
    let y = conv
        .forward(&ArrayD::zeros(vec![0, 2, 4, 4]), Mode::Train)
        .unwrap();
    assert_eq!(y.shape(), &[0, 3, 4, 4]);
    let dx = conv.backward(&y).unwrap();
    assert_eq!(dx.shape(), &[0, 2, 4, 4]);
}

#[test]
fn non_standard_layouts_are_accepted() {
    let mut rng = StdRng::seed_from_u64(9);
    for cfg in [
        Conv2dConfig::new(3, 4, 3).padding(1),
        Conv2dConfig::new(3, 3, 3).groups(3),
        Conv2dConfig::new(3, 2, 1),
    ] {
        let mut conv = Conv2d::<f64>::new(cfg, &mut rng).unwrap();
        // A [2, 3, 5, 4] input stored as [4, 5, 3, 2] and viewed through reversed axes.
        let base = uniform_tensor::<f64, _>(&[4, 5, 3, 2], 1.0, &mut rng);
        let x = base.view().reversed_axes();
        let std_x = x.as_standard_layout().into_owned();
        let y = conv.forward(&x, Mode::Train).unwrap();
        let dx = conv.backward(&y).unwrap();
        let y2 = conv.forward(&std_x, Mode::Train).unwrap();
        let dx2 = conv.backward(&y2).unwrap();
        assert_eq!(y, y2);
        assert_eq!(dx, dx2);
    }
}
