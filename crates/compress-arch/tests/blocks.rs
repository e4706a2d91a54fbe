//! Blocks: shapes, gradient checks (f64 finite differences) and bad configurations.

use compress_arch::blocks::{
    Act, ChannelShuffle, DepthwiseSeparableConv, Fire, FireConfig, GhostConfig, GhostModule,
    InvertedConfig, InvertedResidual, MobileNetConfig, Pointwise, SeparableConfig, ShuffleConfig,
    ShuffleUnit, XceptionBlock, XceptionConfig,
};
use compress_core::{CoreError, Layer, Mode, Module};
use compress_testkit::{GradCheck, seeded_tensor};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

fn rng() -> StdRng {
    StdRng::seed_from_u64(11)
}

fn check<L: Layer<f64>>(mut layer: L, x_shape: &[usize], out_shape: &[usize]) {
    let x = seeded_tensor::<f64>(x_shape, 5);
    let y = layer.forward(&x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), out_shape, "{}", layer.name());
    let c = layer.cost(&x_shape[1..]).unwrap();
    assert_eq!(
        c.output_shape,
        &out_shape[1..],
        "{} cost shape",
        layer.name()
    );
    assert_eq!(
        c.params,
        layer.num_params() - buffers(&layer),
        "{}",
        layer.name()
    );
    let err = GradCheck::new().layer(&mut layer, &x).max_error();
    assert!(err < 1e-5, "{}: gradient error {err}", layer.name());
}

fn buffers<L: Layer<f64>>(layer: &L) -> usize {
    layer
        .named_params()
        .iter()
        .filter(|p| p.kind == compress_core::ParamKind::Buffer)
        .map(|p| p.len)
        .sum()
}

#[test]
fn depthwise_separable() {
    let cfg = SeparableConfig::new(3, 5, 3);
    check(
        DepthwiseSeparableConv::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 3, 5, 5],
        &[2, 5, 5, 5],
    );
    let cfg = SeparableConfig::new(3, 4, 3)
        .stride(2)
        .pointwise_bn_act(false);
    check(
        DepthwiseSeparableConv::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 3, 5, 5],
        &[2, 4, 3, 3],
    );
    let cfg = SeparableConfig::new(4, 6, 5)
        .pointwise(Pointwise::Ghost(2))
        .act(Act::ReLU6);
    check(
        DepthwiseSeparableConv::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 4, 4, 4],
        &[2, 6, 4, 4],
    );
}

#[test]
fn ghost_module() {
    check(
        GhostModule::<f64>::new(GhostConfig::new(3, 5), &mut rng()).unwrap(),
        &[2, 3, 4, 4],
        &[2, 5, 4, 4],
    );
    let cfg = GhostConfig::new(2, 7)
        .ratio(3)
        .kernel(3)
        .stride(2)
        .act(Act::None);
    check(
        GhostModule::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 2, 5, 5],
        &[2, 7, 3, 3],
    );
}

#[test]
fn inverted_residual() {
    let with_residual = InvertedConfig::new(4, 4, 3);
    assert!(with_residual.residual());
    check(
        InvertedResidual::<f64>::new(with_residual, &mut rng()).unwrap(),
        &[2, 4, 4, 4],
        &[2, 4, 4, 4],
    );
    let strided = InvertedConfig::new(3, 5, 2).stride(2);
    assert!(!strided.residual());
    check(
        InvertedResidual::<f64>::new(strided, &mut rng()).unwrap(),
        &[2, 3, 5, 5],
        &[2, 5, 3, 3],
    );
    let no_expand = InvertedConfig::new(4, 4, 1).act(Act::ReLU);
    check(
        InvertedResidual::<f64>::new(no_expand, &mut rng()).unwrap(),
        &[2, 4, 3, 3],
        &[2, 4, 3, 3],
    );
}

#[test]
fn inverted_residual_adds_the_input() {
    let mut b = InvertedResidual::<f64>::new(InvertedConfig::new(4, 4, 2), &mut rng()).unwrap();
    // Zero the projection's BN scale and shift: the branch outputs 0 and the block is the identity.
    b.visit_mut(
        &mut compress_core::ParamPath::root(),
        &mut |p: &compress_core::ParamPath, q: &mut compress_core::Param<f64>| {
            if p.to_string().starts_with("project_bn.")
                && q.kind() == compress_core::ParamKind::Norm
            {
                q.value_mut().fill(0.0);
            }
            Ok(())
        },
    )
    .unwrap();
    let x = seeded_tensor::<f64>(&[2, 4, 3, 3], 1);
    let y = b.forward(&x, Mode::Eval).unwrap();
    assert!((&y - &x).iter().all(|d| d.abs() < 1e-12));
}

#[test]
fn channel_shuffle_is_a_permutation() {
    let mut s = ChannelShuffle::new(3);
    let x = ArrayD::from_shape_fn(IxDyn(&[1, 6, 1, 1]), |i| i[1] as f64);
    let y = Layer::<f64>::forward(&mut s, &x, Mode::Train).unwrap();
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    );
    let back = Layer::<f64>::backward(&mut s, &y).unwrap();
    assert_eq!(back, x);
    assert!(matches!(
        Layer::<f64>::forward(&mut ChannelShuffle::new(4), &x, Mode::Eval),
        Err(CoreError::InvalidConfig { .. })
    ));
}

#[test]
fn shuffle_unit() {
    let cfg = ShuffleConfig::new(6, 6, 3).bottleneck(3);
    check(
        ShuffleUnit::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 6, 4, 4],
        &[2, 6, 4, 4],
    );
    let cfg = ShuffleConfig::new(4, 10, 2).stride(2).bottleneck(4);
    check(
        ShuffleUnit::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 4, 5, 5],
        &[2, 10, 3, 3],
    );
}

#[test]
fn fire() {
    check(
        Fire::<f64>::new(FireConfig::new(5, 2, 3, 4), &mut rng()).unwrap(),
        &[2, 5, 4, 4],
        &[2, 7, 4, 4],
    );
}

#[test]
fn xception_block() {
    let cfg = XceptionConfig::new(3, 5, 2)
        .stride(2)
        .start_with_relu(false);
    check(
        XceptionBlock::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 3, 5, 5],
        &[2, 5, 3, 3],
    );
    let cfg = XceptionConfig::new(4, 4, 3);
    assert!(!cfg.projects());
    check(
        XceptionBlock::<f64>::new(cfg, &mut rng()).unwrap(),
        &[2, 4, 4, 4],
        &[2, 4, 4, 4],
    );
}

#[test]
fn mobilenet_builds_and_trains_a_step() {
    let cfg = MobileNetConfig {
        blocks: vec![(8, 1), (16, 2)],
        stem_channels: 4,
        ..MobileNetConfig::small(1, 6, 3)
    };
    let net = cfg.build::<f64, _>(&mut rng()).unwrap();
    check(net, &[2, 1, 6, 6], &[2, 3]);
    let ghost = MobileNetConfig {
        pointwise: Pointwise::Ghost(2),
        ..cfg
    };
    check(
        ghost.build::<f64, _>(&mut rng()).unwrap(),
        &[2, 1, 6, 6],
        &[2, 3],
    );
}

#[test]
fn bad_configurations_are_errors() {
    let bad = |r: compress_core::Result<()>| matches!(r, Err(CoreError::InvalidConfig { .. }));
    assert!(bad(SeparableConfig::new(0, 4, 3).validate()));
    assert!(bad(SeparableConfig::new(4, 4, 2).validate()));
    assert!(bad(SeparableConfig::new(4, 4, 3)
        .pointwise(Pointwise::Ghost(1))
        .validate()));
    assert!(bad(GhostConfig::new(4, 4).ratio(1).validate()));
    assert!(bad(InvertedConfig::new(4, 4, 0).validate()));
    assert!(bad(ShuffleConfig::new(6, 8, 3).validate())); // stride 1 needs M == N
    assert!(bad(ShuffleConfig::new(6, 6, 4).validate())); // 4 does not divide 6
    assert!(bad(ShuffleConfig::new(6, 6, 3).stride(2).validate())); // N must exceed M
    assert!(bad(ShuffleConfig::new(6, 12, 3).stride(3).validate()));
    assert!(bad(FireConfig::new(4, 0, 2, 2).validate()));
    assert!(bad(XceptionConfig::new(4, 4, 0).validate()));
    assert!(bad(MobileNetConfig::small(1, 8, 10).alpha(0.0).validate()));
    assert!(bad(MobileNetConfig::small(1, 8, 10)
        .alpha(f64::NAN)
        .validate()));
    assert!(bad(MobileNetConfig::small(1, 8, 10)
        .resolution_multiplier(1.5)
        .validate()));
    // Wrong input channels is a shape error, not a panic.
    let mut b =
        DepthwiseSeparableConv::<f64>::new(SeparableConfig::new(3, 4, 3), &mut rng()).unwrap();
    assert!(matches!(
        b.forward(&ArrayD::zeros(vec![1, 2, 4, 4]), Mode::Eval),
        Err(CoreError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        b.backward(&ArrayD::zeros(vec![1, 4, 4, 4])),
        Err(CoreError::InvalidState { .. })
    ));
}
