//! Closed-form cost formulas against what each block's `cost` counts, for random shapes.

use compress_arch::blocks::{
    DepthwiseSeparableConv, Fire, FireConfig, GhostConfig, GhostModule, InvertedConfig,
    InvertedResidual, MobileNetConfig, Pointwise, SeparableConfig, ShuffleConfig, ShuffleUnit,
    XceptionBlock, XceptionConfig,
};
use compress_arch::cost::{self, BlockCost};
use compress_core::{Cost, Layer};
use compress_nn::{BatchNorm2d, Conv2d, Conv2dConfig, Sequential};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

fn rng() -> StdRng {
    StdRng::seed_from_u64(3)
}

fn assert_same(formula: &BlockCost, counted: &Cost) -> Result<(), TestCaseError> {
    prop_assert_eq!(&formula.output, &counted.output_shape);
    prop_assert_eq!(formula.params(), counted.params);
    prop_assert_eq!(formula.macs(), counted.macs);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn standard_conv(m in 1usize..9, n in 1usize..9, k in prop::sample::select(vec![1usize, 3, 5]),
                     s in 1usize..3, h in 1usize..9, w in 1usize..9) {
        let mut net = Sequential::<f32>::new();
        net.push(Conv2d::new(Conv2dConfig::new(m, n, k).stride(s).padding(k / 2).bias(false), &mut rng()).unwrap());
        net.push(BatchNorm2d::new(n));
        assert_same(&cost::standard_conv(m, n, k, s, h, w, true), &net.cost(&[m, h, w]).unwrap())?;
    }

    #[test]
    fn depthwise_separable(m in 1usize..9, n in 1usize..9, k in prop::sample::select(vec![1usize, 3, 5]),
                           s in 1usize..3, h in 1usize..9, w in 1usize..9, bn in any::<bool>(),
                           ghost in prop::option::of(2usize..4)) {
        let mut cfg = SeparableConfig::new(m, n, k).stride(s).pointwise_bn_act(bn);
        if let Some(r) = ghost {
            cfg = cfg.pointwise(Pointwise::Ghost(r));
        }
        let b = DepthwiseSeparableConv::<f32>::new(cfg, &mut rng()).unwrap();
        let f = cost::depthwise_separable(&cfg, h, w);
        assert_same(&f, &b.cost(&[m, h, w]).unwrap())?;
        if ghost.is_none() {
            // Weights and weight MACs are exactly 1/N + 1/K^2 of the standard convolution's.
            let std = cost::standard_conv(m, n, k, s, h, w, false);
            prop_assert_eq!(f.weights, m * k * k + m * n);
            let ratio = f.weights as f64 / std.weights as f64;
            prop_assert!((ratio - cost::separable_ratio(n, k)).abs() < 1e-12);
            let ratio = f.weight_macs as f64 / std.weight_macs as f64;
            prop_assert!((ratio - cost::separable_ratio(n, k)).abs() < 1e-12);
        }
    }

    #[test]
    fn ghost_module(m in 1usize..9, n in 1usize..12, r in 2usize..5, k in prop::sample::select(vec![1usize, 3]),
                    d in prop::sample::select(vec![1usize, 3]), s in 1usize..3, h in 1usize..8) {
        let cfg = GhostConfig::new(m, n).ratio(r).kernel(k).dw_kernel(d).stride(s);
        let b = GhostModule::<f32>::new(cfg, &mut rng()).unwrap();
        assert_same(&cost::ghost_module(&cfg, h, h + 1), &b.cost(&[m, h, h + 1]).unwrap())?;
    }

    #[test]
    fn inverted_residual(m in 1usize..7, n in 1usize..7, t in 1usize..5, s in 1usize..3, h in 1usize..8) {
        let cfg = InvertedConfig::new(m, n, t).stride(s);
        let b = InvertedResidual::<f32>::new(cfg, &mut rng()).unwrap();
        assert_same(&cost::inverted_residual(&cfg, h, h), &b.cost(&[m, h, h]).unwrap())?;
    }

    #[test]
    fn shuffle_unit(g in 1usize..4, mg in 1usize..4, bg in 1usize..4, extra in 1usize..4,
                    stride2 in any::<bool>(), h in 1usize..8) {
        let m = g * mg;
        let cfg = if stride2 {
            ShuffleConfig::new(m, m + g * extra, g).stride(2).bottleneck(g * bg)
        } else {
            ShuffleConfig::new(m, m, g).bottleneck(g * bg)
        };
        let b = ShuffleUnit::<f32>::new(cfg, &mut rng()).unwrap();
        assert_same(&cost::shuffle_unit(&cfg, h, h), &b.cost(&[m, h, h]).unwrap())?;
    }

    #[test]
    fn fire(m in 1usize..9, s in 1usize..5, e1 in 1usize..9, e3 in 1usize..9, h in 1usize..8) {
        let cfg = FireConfig::new(m, s, e1, e3);
        let b = Fire::<f32>::new(cfg, &mut rng()).unwrap();
        assert_same(&cost::fire(&cfg, h, h), &b.cost(&[m, h, h]).unwrap())?;
    }

    #[test]
    fn xception_block(m in 1usize..7, n in 1usize..7, reps in 1usize..4, s in 1usize..3,
                      relu in any::<bool>(), h in 1usize..8) {
        let cfg = XceptionConfig::new(m, n, reps).stride(s).start_with_relu(relu);
        let b = XceptionBlock::<f32>::new(cfg, &mut rng()).unwrap();
        assert_same(&cost::xception_block(&cfg, h, h), &b.cost(&[m, h, h]).unwrap())?;
    }

    #[test]
    fn mobilenet(alpha in 0.1f64..=1.0, rho in 0.3f64..=1.0, ghost in any::<bool>()) {
        let mut cfg = MobileNetConfig::small(1, 12, 10).alpha(alpha).resolution_multiplier(rho);
        if ghost {
            cfg = cfg.pointwise(Pointwise::Ghost(2));
        }
        let net = cfg.build::<f32, _>(&mut rng()).unwrap();
        assert_same(&cost::mobilenet_v1(&cfg), &net.cost(&cfg.input_shape()).unwrap())?;
    }
}

#[test]
fn mobilenet_imagenet_matches_the_paper() {
    // Howard et al. (2017), table 1/8: 1.0 MobileNet-224 has 569M mult-adds and 4.2M params.
    let cfg = MobileNetConfig::imagenet();
    let c = cost::mobilenet_v1(&cfg);
    assert!(
        (c.weight_macs as f64 / 1e6 - 569.0).abs() < 6.0,
        "{}",
        c.weight_macs
    );
    assert!(
        (c.weights + c.biases) as f64 / 1e6 > 4.1 && ((c.weights + c.biases) as f64) / 1e6 < 4.3
    );
    // alpha = 0.5, rho = 160/224: 76M mult-adds, 1.32M params.
    let half = MobileNetConfig::imagenet()
        .alpha(0.5)
        .resolution_multiplier(160.0 / 224.0);
    let c = cost::mobilenet_v1(&half);
    assert!(
        (c.weight_macs as f64 / 1e6 - 76.0).abs() < 2.0,
        "{}",
        c.weight_macs
    );
    // The ratio separable / standard at 3x3 and N = 512 is ~1/8.8.
    assert!((1.0 / cost::separable_ratio(512, 3) - 8.84).abs() < 0.01);
}
