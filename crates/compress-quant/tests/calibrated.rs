//! Calibrated quantization: input capture on any model, GPTQ against round-to-nearest.

use compress_core::{Layer, Mode};
use compress_nn::models::{ResidualMlp, mlp};
use compress_quant::QuantError;
use compress_quant::calibrated::{
    CaptureSpec, GptqConfig, QuantizedWeight, WeightQuant, capture_inputs, gptq_quantize,
    quantize_rtn,
};
use compress_testkit::seeded_tensor;
use ndarray::{Array2, ArrayView2, Ix2};
use proptest::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};

#[test]
fn capture_accumulates_xtx_of_each_selected_input_and_restores_the_model() {
    let mut net = mlp::<f32, _>(&[6, 5, 3], &mut StdRng::seed_from_u64(3));
    let x = seeded_tensor::<f32>(&[10, 6], 4);
    let before = net.forward(&x, Mode::Eval).unwrap();
    let stats = capture_inputs(&mut net, &CaptureSpec::new(["0"]), |m| {
        m.forward(&x.slice(ndarray::s![..4, ..]).into_dyn(), Mode::Eval)?;
        m.forward(&x.slice(ndarray::s![4.., ..]).into_dyn(), Mode::Eval)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(stats.keys().collect::<Vec<_>>(), ["0"]);
    let s = &stats["0"];
    assert_eq!(s.tokens, 10);
    let x2 = x
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .mapv(f64::from);
    let want = x2.t().dot(&x2);
    let got = s.xtx.as_ref().unwrap();
    assert!((got - &want).iter().all(|d| d.abs() < 1e-9));
    let mean0 = x2.column(0).iter().map(|v| v.abs()).sum::<f64>() / 10.0;
    assert!((s.abs_mean()[0] - mean0).abs() < 1e-6);
    // The wrappers are gone and the model computes what it did.
    assert_eq!(net.layers()[0].name(), "Linear");
    assert_eq!(net.forward(&x, Mode::Eval).unwrap(), before);
}

#[test]
fn capture_reaches_layers_of_a_model_that_is_not_a_sequential_by_glob() {
    let mut net = ResidualMlp::<f32>::new(10, 12, 20, 2, 4, &mut StdRng::seed_from_u64(9));
    let x = seeded_tensor::<f32>(&[7, 10], 2);
    let spec = CaptureSpec {
        patterns: vec!["blocks.*.fc1".into()],
        hessian: false,
    };
    let stats = capture_inputs(&mut net, &spec, |m| m.forward(&x, Mode::Eval).map(|_| ())).unwrap();
    assert_eq!(
        stats.keys().collect::<Vec<_>>(),
        ["blocks.0.fc1", "blocks.1.fc1"]
    );
    assert!(stats.values().all(|s| s.tokens == 7 && s.xtx.is_none()));
    assert!(
        net.blocks[0]
            .fc1
            .as_ref()
            .as_any()
            .is::<compress_nn::Linear<f32>>()
    );
}

#[test]
fn capture_without_a_match_is_a_typed_error_and_leaves_the_model_alone() {
    let mut net = mlp::<f32, _>(&[6, 5, 3], &mut StdRng::seed_from_u64(3));
    let err = capture_inputs(&mut net, &CaptureSpec::new(["nope.*"]), |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("nope.*"), "{err}");
    assert_eq!(net.layers()[0].name(), "Linear");
}

/// Correlated calibration inputs `[tokens, k]`: a few latent factors mixed into every
/// feature plus noise, and outlier scales per feature.
fn correlated_inputs(tokens: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let latent = 4;
    let mix = Array2::from_shape_fn((latent, k), |_| rng.random_range(-1.0f32..1.0));
    let z = Array2::from_shape_fn((tokens, latent), |_| rng.random_range(-1.0f32..1.0));
    let scale: Vec<f32> = (0..k).map(|j| if j % 7 == 0 { 8.0 } else { 1.0 }).collect();
    let mut x = z.dot(&mix);
    for ((_, j), v) in x.indexed_iter_mut() {
        *v = (*v + 0.05 * rng.random_range(-1.0f32..1.0)) * scale[j];
    }
    x
}

fn weights(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0))
}

fn output_error(x: &Array2<f32>, w: &Array2<f32>, q: &QuantizedWeight) -> f64 {
    let d = x.dot(&w.t()) - x.dot(&q.dequantize().t());
    d.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt()
}

fn hessian(x: &Array2<f32>) -> Array2<f64> {
    let x = x.mapv(f64::from);
    x.t().dot(&x) * (2.0 / x.nrows() as f64)
}

#[test]
fn gptq_beats_round_to_nearest_on_correlated_inputs() {
    let (n, k) = (16, 64);
    let x = correlated_inputs(256, k, 1);
    let w = weights(n, k, 2);
    let h = hessian(&x);
    for (bits, group) in [(4, Some(32)), (3, Some(32)), (4, None), (3, Some(64))] {
        let quant = WeightQuant::new(bits, group);
        let rtn = quantize_rtn("w", &w.view(), quant).unwrap();
        for act_order in [false, true] {
            let cfg = GptqConfig {
                act_order,
                ..GptqConfig::new(quant)
            };
            let g = gptq_quantize("w", &w.view(), &h, &cfg).unwrap();
            let (eg, er) = (output_error(&x, &w, &g), output_error(&x, &w, &rtn));
            assert!(
                eg < 0.8 * er,
                "int{bits} g{group:?} act_order {act_order}: gptq {eg} vs rtn {er}"
            );
        }
    }
}

#[test]
fn gptq_small_blocks_match_one_block() {
    // Lazy block updates are exact reorderings of the same arithmetic.
    let x = correlated_inputs(128, 32, 5);
    let w = weights(8, 32, 6);
    let h = hessian(&x);
    let mut cfg = GptqConfig::new(WeightQuant::new(4, Some(8)));
    cfg.act_order = false;
    let one = gptq_quantize("w", &w.view(), &h, &cfg).unwrap();
    cfg.block_size = 8;
    let blocked = gptq_quantize("w", &w.view(), &h, &cfg).unwrap();
    let diff = one
        .codes
        .iter()
        .zip(&blocked.codes)
        .filter(|(a, b)| a != b)
        .count();
    assert!(diff <= 2, "{diff} codes differ");
}

#[test]
fn gptq_bad_input_is_typed() {
    let w = weights(4, 12, 1);
    let h = Array2::<f64>::eye(12);
    for bits in [9, 1] {
        let bad_bits = gptq_quantize(
            "l",
            &w.view(),
            &h,
            &GptqConfig::new(WeightQuant::new(bits, None)),
        );
        assert!(
            matches!(bad_bits, Err(QuantError::UnsupportedBits { bits: b, .. }) if b == bits),
            "{bits} bits: {bad_bits:?}"
        );
    }
    let bad_group = gptq_quantize(
        "l",
        &w.view(),
        &h,
        &GptqConfig::new(WeightQuant::new(4, Some(5))),
    );
    match bad_group {
        Err(QuantError::GroupSize {
            path,
            group_size: 5,
            len: 12,
            ..
        }) => assert_eq!(path, "l"),
        other => panic!("{other:?}"),
    }
    // A rank-one Hessian without dampening cannot be factored: a typed error naming the layer.
    let v = Array2::from_shape_fn((12, 1), |(i, _)| 1.0 + i as f64);
    let rank1 = v.dot(&v.t());
    let mut cfg = GptqConfig::new(WeightQuant::new(4, None));
    cfg.percdamp = 0.0;
    match gptq_quantize("enc.q", &w.view(), &rank1, &cfg) {
        Err(QuantError::SingularHessian { path, .. }) => assert_eq!(path, "enc.q"),
        other => panic!("{other:?}"),
    }
    // Dampening makes it usable; dead inputs (zero rows of H) are handled.
    cfg.percdamp = 0.01;
    assert!(gptq_quantize("enc.q", &w.view(), &rank1, &cfg).is_ok());
    let mut dead = Array2::<f64>::eye(12);
    dead[[3, 3]] = 0.0;
    let q = gptq_quantize("enc.q", &w.view(), &dead, &cfg).unwrap();
    assert!(q.dequantize().column(3).iter().all(|v| *v == 0.0));
    let nan = Array2::from_elem((4, 12), f32::NAN);
    assert!(gptq_quantize("enc.q", &nan.view(), &h, &cfg).is_err());
}

fn check_on_grid(q: &QuantizedWeight, w: &ArrayView2<'_, f32>) -> Result<(), TestCaseError> {
    let [n, k] = q.shape;
    prop_assert_eq!(q.grids.len(), n * k / q.group);
    let maxq = ((1u32 << q.quant.bits) - 1) as u8;
    let deq = q.dequantize();
    for r in 0..n {
        for c in 0..k {
            let code = q.codes[r * k + c];
            prop_assert!(code <= maxq);
            let g = q.grid(r, c);
            prop_assert!(g.scale > 0.0 && (0..=i32::from(maxq)).contains(&g.zero));
            prop_assert_eq!(deq[[r, c]], g.value(code));
        }
    }
    // The packed tensor holds exactly these values and one scale per row group.
    let t = q.to_qtensor().unwrap();
    prop_assert_eq!(t.scales().len(), n * k / q.group);
    let back: ndarray::ArrayD<f32> = t.dequantize();
    for (a, b) in back.iter().zip(deq.iter()) {
        prop_assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0));
    }
    prop_assert_eq!(w.dim(), (n, k));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn gptq_output_is_on_the_grid_of_each_group(
        seed in 0u64..1000,
        bits in 2u32..=8,
        group in prop::sample::select(vec![Some(4usize), Some(8), Some(16), None]),
        act_order in any::<bool>(),
    ) {
        let x = correlated_inputs(40, 16, seed);
        let w = weights(5, 16, seed + 1);
        let cfg = GptqConfig { act_order, block_size: 4, ..GptqConfig::new(WeightQuant::new(bits, group)) };
        let q = gptq_quantize("w", &w.view(), &hessian(&x), &cfg).unwrap();
        check_on_grid(&q, &w.view())?;
        let r = quantize_rtn("w", &w.view(), WeightQuant::new(bits, group)).unwrap();
        check_on_grid(&r, &w.view())?;
        // Round-to-nearest is within half a step of the weight.
        for ((i, &v), &c) in w.indexed_iter().zip(&r.codes) {
            let g = r.grid(i.0, i.1);
            prop_assert!((g.value(c) - v).abs() <= 0.5 * g.scale * (1.0 + 1e-5));
        }
    }
}
