//! AWQ's clipping search: never worse than round-to-nearest on its objective, invariant to
//! the scale of the data, and the right answer on a problem whose best clip is known.

use compress_quant::calibrated::{
    AwqConfig, ClipConfig, InputStats, Method, ScaleGroup, ScaleSource, WeightQuant, clip_search,
    quantize_clipped, quantize_linears, quantize_rtn,
};
use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// `X^T X` of `x` in f64.
fn xtx_of(x: &Array2<f32>) -> Array2<f64> {
    let x = x.mapv(f64::from);
    x.t().dot(&x)
}

/// Summed squared output error `||X W^T - X Q^T||^2`, computed on the activations.
fn out_err(x: &Array2<f32>, w: &Array2<f32>, q: &Array2<f32>) -> f64 {
    let x = x.mapv(f64::from);
    let d = (w - q).mapv(f64::from);
    x.dot(&d.t()).mapv(|v| v * v).sum()
}

#[test]
fn an_outlier_on_a_dead_input_is_clipped_to_the_known_best_range() {
    // One row group of 16 int4 weights: 0..=14 on live inputs, and 30 on an input that is
    // always 0. Clipping the range to [0, 15] (ratio 0.5) puts every live weight exactly on
    // the grid (step 1): output error 0. Round to nearest spans [0, 30] (step 2) and misses
    // every odd weight by 1.
    let mut w = Array2::from_shape_fn((1, 16), |(_, c)| c as f32);
    w[[0, 15]] = 30.0;
    let mut rng = StdRng::seed_from_u64(1);
    let x = Array2::from_shape_fn((64, 16), |(_, c)| {
        if c == 15 {
            0.0
        } else {
            rng.random_range(-1.0f32..1.0)
        }
    });
    let quant = WeightQuant::new(4, Some(16));
    let c = clip_search("fc", &w.view(), &xtx_of(&x), quant, ClipConfig::default()).unwrap();
    assert_eq!(c.ratios, vec![0.5]);
    assert!(c.error.abs() < 1e-9, "{}", c.error);
    let q = quantize_clipped("fc", &w.view(), quant, &c.ratios)
        .unwrap()
        .dequantize();
    let rtn = quantize_rtn("fc", &w.view(), quant).unwrap().dequantize();
    assert!(out_err(&x, &w, &q) < 1e-9);
    let e_rtn = out_err(&x, &w, &rtn);
    assert!(e_rtn > 1.0, "{e_rtn}");
    assert!((c.rtn_error - e_rtn).abs() < 1e-6 * e_rtn);
    // The clipped weight saturates at the grid's end: 15, not 30.
    assert_eq!(q[[0, 15]], 15.0);
    assert_eq!(q.slice(ndarray::s![0, ..15]), w.slice(ndarray::s![0, ..15]));
}

#[test]
fn bad_settings_are_typed_errors() {
    let w = Array2::from_shape_fn((2, 8), |(r, c)| (r * 8 + c) as f32 * 0.1 - 0.5);
    let h = Array2::<f64>::eye(8);
    let q = WeightQuant::new(4, Some(4));
    let bad = ClipConfig {
        steps: 4,
        max_shrink: 1.0,
    };
    assert!(clip_search("fc", &w.view(), &h, q, bad).is_err());
    let e = clip_search("fc", &w.view(), &Array2::eye(4), q, ClipConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc"), "{e}");
    let e = clip_search(
        "fc",
        &w.view(),
        &h,
        WeightQuant::new(4, Some(3)),
        ClipConfig::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("group size 3"), "{e}");
    assert!(quantize_clipped("fc", &w.view(), q, &[1.0; 3]).is_err());
    assert!(quantize_clipped("fc", &w.view(), q, &[1.0, 1.0, 0.0, 1.0]).is_err());
    let mut nan = w.clone();
    nan[[1, 1]] = f32::NAN;
    assert!(clip_search("fc", &nan.view(), &h, q, ClipConfig::default()).is_err());
}

/// Inputs with a few salient channels (20 times the others at most).
fn salient_inputs(tokens: usize, k: usize, seed: u64) -> Array2<f32> {
    super::calibrated_scaling::salient_inputs((tokens, k), seed, 20.0, 0.3, 7)
}

/// Heavy-tailed weights (a few large ones per row), where clipping pays.
fn heavy_weights(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, k), |_| {
        let v: f32 = rng.random_range(-1.0f32..1.0);
        if rng.random_range(0.0f32..1.0) < 0.03 {
            v * 8.0
        } else {
            v
        }
    })
}

#[test]
fn awq_with_clipping_beats_round_to_nearest_and_scaling_alone() {
    let (n, k) = (32, 64);
    let x = salient_inputs(256, k, 3);
    let w = heavy_weights(n, k, 4);
    let mut stats = InputStats::new(k, true);
    stats.observe(&x.view(), "x").unwrap();
    let stats: BTreeMap<String, InputStats> = [("0".to_string(), stats)].into_iter().collect();
    // One linear reading the activation, its scales kept explicit.
    let groups = [ScaleGroup {
        source: ScaleSource::Explicit,
        linears: vec!["0".into()],
    }];
    let quant = WeightQuant::new(3, Some(32));
    let mut errors = Vec::new();
    for method in [
        Method::Rtn,
        Method::Awq(AwqConfig {
            grid: 20,
            clip: None,
        }),
        Method::Awq(AwqConfig::default()),
    ] {
        let mut model = compress_nn::Sequential::<f32>::new().with(compress_nn::Linear::new(
            k,
            n,
            false,
            &mut StdRng::seed_from_u64(0),
        ));
        compress_core::surgery::with_param_mut(&mut model, "0.weight", |p| {
            p.reset(w.clone().into_dyn());
            Ok(())
        })
        .unwrap();
        let l = quantize_linears(&mut model, &groups, &stats, &method, quant).unwrap();
        // The effective weight: Q(W s) times the explicit input factor 1/s.
        let mut q = l[0]
            .weight
            .dequantize::<f32>()
            .into_dimensionality()
            .unwrap();
        if let Some(f) = &l[0].input_scale {
            for mut row in q.rows_mut() {
                for (v, fi) in row.iter_mut().zip(f) {
                    *v *= fi;
                }
            }
        }
        errors.push(out_err(&x, &w, &q));
    }
    let [rtn, scaled, clipped] = errors[..] else {
        unreachable!()
    };
    assert!(scaled < rtn, "scaling {scaled} vs rtn {rtn}");
    assert!(
        clipped < 0.95 * scaled,
        "clipping {clipped} vs scaling alone {scaled}"
    );
}

fn problem(seed: u64, n: usize, k: usize) -> (Array2<f32>, Array2<f64>) {
    let w = heavy_weights(n, k, seed);
    let x = salient_inputs(3 * k, k, seed + 100);
    (w, xtx_of(&x))
}

/// The objective recomputed from the quantized weight: each row group's error against its
/// diagonal block of `X^T X` (cross-group terms are not part of it).
fn objective(w: &ArrayView2<'_, f32>, q: &Array2<f32>, h: &Array2<f64>, group: usize) -> f64 {
    let d = w.mapv(f64::from) - q.mapv(f64::from);
    let blocks = Array2::from_shape_fn(h.dim(), |(i, j)| {
        if i / group == j / group {
            h[[i, j]]
        } else {
            0.0
        }
    });
    (&d.dot(&blocks) * &d).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn clip_search_invariants(
        seed in 0u64..1000,
        bits in 2u32..=5,
        group in prop::sample::select(vec![8usize, 16, 32]),
        steps in 1usize..=12,
        max_shrink in 0.0f32..0.9,
        pow in -3i32..=3,
    ) {
        let (n, k) = (6, 32);
        let (w, h) = problem(seed, n, k);
        let quant = WeightQuant::new(bits, Some(group));
        let cfg = ClipConfig { steps, max_shrink };
        let c = clip_search("fc", &w.view(), &h, quant, cfg).unwrap();
        // Never worse than round to nearest, on the whole and (so) per row group.
        prop_assert!(c.error <= c.rtn_error * (1.0 + 1e-12));
        prop_assert_eq!(c.ratios.len(), n * k / group);
        for &r in &c.ratios {
            prop_assert!((1.0 - max_shrink - 1e-6..=1.0).contains(&r));
            prop_assert!(cfg.ratios().contains(&r));
        }
        // The reported errors are the objective of the weights actually produced.
        let q = quantize_clipped("fc", &w.view(), quant, &c.ratios).unwrap().dequantize();
        let e = objective(&w.view(), &q, &h, group);
        prop_assert!((e - c.error).abs() <= 1e-9 * (1.0 + c.error), "{} vs {} ratios {:?}", e, c.error, c.ratios);
        let ones = vec![1.0; c.ratios.len()];
        let rtn = quantize_clipped("fc", &w.view(), quant, &ones).unwrap();
        prop_assert_eq!(&rtn, &quantize_rtn("fc", &w.view(), quant).unwrap());
        let e_rtn = objective(&w.view(), &rtn.dequantize(), &h, group);
        prop_assert!((e_rtn - c.rtn_error).abs() <= 1e-9 * (1.0 + c.rtn_error));
        // Scale invariance: a power-of-two factor on the weights (exact in floats) and any
        // power-of-two factor on X^T X choose the same ratios and the same codes.
        let f = 2f32.powi(pow);
        let ws = w.mapv(|v| v * f);
        let hs = h.mapv(|v| v * 4.0);
        let cs = clip_search("fc", &ws.view(), &hs, quant, cfg).unwrap();
        prop_assert_eq!(&cs.ratios, &c.ratios);
        let qs = quantize_clipped("fc", &ws.view(), quant, &cs.ratios).unwrap();
        let q0 = quantize_clipped("fc", &w.view(), quant, &c.ratios).unwrap();
        prop_assert_eq!(qs.codes, q0.codes);
    }
}
