//! AWQ and SmoothQuant: folding keeps the float model, and each beats round-to-nearest on a
//! problem with salient / outlier input channels.

use compress_core::{Layer, Mode, Module, ParamPath};
use compress_nn::{LayerNorm, Linear, Sequential};
use compress_quant::calibrated::{
    CaptureSpec, InputStats, ScaleSource, WeightQuant, awq_search, capture_inputs, fold_scales,
    quantize_rtn, smoothquant_scales,
};
use compress_testkit::seeded_tensor;
use ndarray::{Array2, ArrayD, Ix2};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn net(seed: u64) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ln = LayerNorm::<f32>::new(8, 1e-5);
    for (i, v) in ln.weight.value_mut().iter_mut().enumerate() {
        *v = 0.5 + i as f32 * 0.3;
    }
    for (i, v) in ln.bias.value_mut().iter_mut().enumerate() {
        *v = i as f32 * 0.1 - 0.3;
    }
    Sequential::new()
        .with(Linear::<f32>::new(6, 8, true, &mut rng))
        .with(ln)
        .with(Linear::<f32>::new(8, 8, true, &mut rng))
        .with(Linear::<f32>::new(8, 5, true, &mut rng))
}

fn param(m: &Sequential<f32>, path: &str) -> ArrayD<f32> {
    let mut out = None;
    m.visit(&mut ParamPath::root(), &mut |p: &ParamPath,
                                          v: &compress_core::Param<
        f32,
    >| {
        if p.to_string() == path {
            out = Some(v.value().clone());
        }
    });
    out.unwrap()
}

fn all_params(m: &Sequential<f32>) -> Vec<ArrayD<f32>> {
    let mut out = Vec::new();
    m.visit(&mut ParamPath::root(), &mut |_: &ParamPath,
                                          v: &compress_core::Param<
        f32,
    >| {
        out.push(v.value().clone())
    });
    out
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn folded_scales_leave_the_float_model_unchanged() {
    let mut m = net(1);
    let x = seeded_tensor::<f32>(&[9, 6], 3);
    let before = m.forward(&x, Mode::Eval).unwrap();
    let s: Vec<f32> = (0..8).map(|i| 0.25 + 0.4 * i as f32).collect();
    // Into a LayerNorm (gamma and beta), then into the output rows of a previous linear.
    let folds = [
        (ScaleSource::Norm("1".into()), "2"),
        (ScaleSource::Linear("2".into()), "3"),
    ];
    for (source, target) in &folds {
        fold_scales(&mut m, source, &[(*target).into()], &s).unwrap();
        let after = m.forward(&x, Mode::Eval).unwrap();
        let diff = max_diff(&before, &after);
        assert!(diff < 1e-5, "after folding into {target}: {diff}");
    }
    assert_ne!(param(&m, "3.weight"), param(&net(1), "3.weight"));
}

#[test]
fn fold_rejects_bad_scales_and_wrong_widths_without_changing_anything() {
    let mut m = net(1);
    let before = all_params(&m);
    let bad = vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    assert!(fold_scales(&mut m, &ScaleSource::Norm("1".into()), &["2".into()], &bad).is_err());
    let short = vec![1.0; 5];
    assert!(
        fold_scales(
            &mut m,
            &ScaleSource::Norm("1".into()),
            &["2".into()],
            &short
        )
        .is_err()
    );
    assert!(
        fold_scales(
            &mut m,
            &ScaleSource::Norm("1".into()),
            &["nope".into()],
            &[1.0; 8]
        )
        .is_err()
    );
    assert_eq!(all_params(&m), before);
}

/// Inputs with a few salient channels, as in LLM and BERT activations: uniform in `-1..1`
/// times `salient` on every 16th channel (from 3), else times `base + (j % cycle) * 0.2`.
pub(super) fn salient_inputs(
    (tokens, k): (usize, usize),
    seed: u64,
    salient: f32,
    base: f32,
    cycle: usize,
) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((tokens, k), |(_, j)| {
        let scale = if j % 16 == 3 {
            salient
        } else {
            base + (j % cycle) as f32 * 0.2
        };
        rng.random_range(-1.0f32..1.0) * scale
    })
}

/// Inputs whose channels differ in scale by two orders of magnitude (a few salient ones).
fn outlier_inputs(tokens: usize, k: usize, seed: u64) -> Array2<f32> {
    salient_inputs((tokens, k), seed, 50.0, 0.5, 5)
}

fn stats_of(x: &Array2<f32>) -> InputStats {
    let mut s = InputStats::new(x.ncols(), true);
    s.observe(&x.view(), "x").unwrap();
    s
}

#[test]
fn awq_beats_round_to_nearest_on_salient_channels() {
    let (n, k) = (24, 64);
    let x = outlier_inputs(200, k, 1);
    let mut rng = StdRng::seed_from_u64(2);
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0));
    let stats = stats_of(&x);
    for bits in [3, 4] {
        let quant = WeightQuant::new(bits, Some(32));
        let a = awq_search("fc", &stats, &[w.view()], quant, 20).unwrap();
        assert!(a.alpha.is_some(), "scaling must win here");
        // Measure directly on the activations: X W^T against (X / s) Q(W s)^T.
        let scaled = Array2::from_shape_fn(w.dim(), |(r, c)| w[[r, c]] * a.scales[c]);
        let q = quantize_rtn("fc", &scaled.view(), quant)
            .unwrap()
            .dequantize();
        let xs = Array2::from_shape_fn(x.dim(), |(t, c)| x[[t, c]] / a.scales[c]);
        let awq = (x.dot(&w.t()) - xs.dot(&q.t())).mapv(|v| v * v).sum();
        let rq = quantize_rtn("fc", &w.view(), quant).unwrap().dequantize();
        let rtn = (x.dot(&w.t()) - x.dot(&rq.t())).mapv(|v| v * v).sum();
        assert!(awq < 0.9 * rtn, "int{bits}: awq {awq} vs rtn {rtn}");
        assert!((f64::from(awq) - a.error).abs() < 1e-2 * a.error);
    }
    // Statistics without the Hessian cannot drive the search: a typed error.
    let mut no_h = InputStats::new(k, false);
    no_h.observe(&x.view(), "x").unwrap();
    assert!(awq_search("fc", &no_h, &[w.view()], WeightQuant::new(4, Some(32)), 20).is_err());
}

/// Symmetric int8 fake quantization of each row (per token) or each row of a weight.
fn int8_rows(a: &Array2<f32>) -> Array2<f32> {
    let mut out = a.clone();
    for mut row in out.rows_mut() {
        let m = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if m == 0.0 { 1.0 } else { m / 127.0 };
        row.mapv_inplace(|v| (v / s).round().clamp(-127.0, 127.0) * s);
    }
    out
}

#[test]
fn smoothquant_beats_plain_w8a8_with_outlier_channels() {
    let (n, k) = (16, 64);
    let x = outlier_inputs(128, k, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-0.2f32..0.2));
    let exact = x.dot(&w.t());
    let plain = int8_rows(&x).dot(&int8_rows(&w).t());
    let s = smoothquant_scales(&stats_of(&x), &[w.view()], 0.5).unwrap();
    let xs = Array2::from_shape_fn(x.dim(), |(t, c)| x[[t, c]] / s[c]);
    let ws = Array2::from_shape_fn(w.dim(), |(r, c)| w[[r, c]] * s[c]);
    let smooth = int8_rows(&xs).dot(&int8_rows(&ws).t());
    let e_plain = (&exact - &plain).mapv(|v| v * v).sum();
    let e_smooth = (&exact - &smooth).mapv(|v| v * v).sum();
    assert!(
        e_smooth < 0.5 * e_plain,
        "smooth {e_smooth} vs plain {e_plain}"
    );
    assert!(smoothquant_scales(&stats_of(&x), &[w.view()], 1.5).is_err());
}

#[test]
fn scales_from_captured_statistics_of_a_model_fold_back_exactly() {
    let mut m = net(5);
    let x = seeded_tensor::<f32>(&[12, 6], 6);
    let before = m.forward(&x, Mode::Eval).unwrap();
    let stats = capture_inputs(&mut m, &CaptureSpec::new(["2"]), |m| {
        m.forward(&x, Mode::Eval).map(|_| ())
    })
    .unwrap();
    let w2 = param(&m, "2.weight").into_dimensionality::<Ix2>().unwrap();
    let a = awq_search(
        "2",
        &stats["2"],
        &[w2.view()],
        WeightQuant::new(3, Some(4)),
        10,
    )
    .unwrap();
    assert!(a.error <= a.rtn_error);
    fold_scales(
        &mut m,
        &ScaleSource::Norm("1".into()),
        &["2".into()],
        &a.scales,
    )
    .unwrap();
    let after = m.forward(&x, Mode::Eval).unwrap();
    assert!(max_diff(&before, &after) < 1e-5);
}

mod mixed {
    use compress_quant::calibrated::{LayerChoices, LayerOption, choose_bits};
    use proptest::prelude::*;

    fn opt(bits: u32, bytes: usize, loss: f64) -> LayerOption {
        LayerOption { bits, bytes, loss }
    }

    #[test]
    fn chooser_spends_the_budget_on_the_most_sensitive_layers() {
        let layers = vec![
            LayerChoices {
                path: "a".into(),
                options: vec![opt(3, 30, 0.10), opt(4, 40, 0.02), opt(8, 80, 0.0)],
            },
            LayerChoices {
                path: "b".into(),
                options: vec![opt(3, 30, 0.001), opt(4, 40, 0.0005), opt(8, 80, 0.0)],
            },
        ];
        // Uniform int4 costs 80 bytes: the sensitive layer gets 4 bits first.
        assert_eq!(choose_bits(&layers, 80).unwrap(), [1, 1]);
        assert_eq!(choose_bits(&layers, 70).unwrap(), [1, 0]);
        assert_eq!(choose_bits(&layers, 1000).unwrap(), [2, 2]);
        assert!(
            choose_bits(&layers, 59)
                .unwrap_err()
                .to_string()
                .contains("budget")
        );
    }

    proptest! {
        #[test]
        fn chooser_respects_the_budget_and_never_loses_to_the_smallest(
            raw in prop::collection::vec(prop::collection::vec((2u32..=8, 1usize..500, 0.0f64..1.0), 1..4), 1..8),
            slack in 0usize..2000,
        ) {
            let layers: Vec<LayerChoices> = raw.iter().enumerate().map(|(i, os)| LayerChoices {
                path: format!("l{i}"),
                options: os.iter().map(|&(b, by, lo)| opt(b, by, lo)).collect(),
            }).collect();
            let min: usize = layers.iter().map(|l| l.options.iter().map(|o| o.bytes).min().unwrap()).sum();
            let budget = min + slack;
            let pick = choose_bits(&layers, budget).unwrap();
            let total: usize = layers.iter().zip(&pick).map(|(l, &j)| l.options[j].bytes).sum();
            prop_assert!(total <= budget);
            prop_assert!(choose_bits(&layers, min.saturating_sub(1)).is_err() || min == 0);
        }
    }
}
