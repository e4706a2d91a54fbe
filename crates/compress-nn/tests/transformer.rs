//! Transformer layers: gradient checks, masking invariants, reference values.

use compress_core::{Layer, Mode, Module};
use compress_nn::layers::transformer::{cls_pool, erf, l2_normalize, mean_pool};
use compress_nn::{
    Embedding, Gelu, GeluKind, LayerNorm, Linear, MultiHeadAttention, PaddingMask, Pooling,
    PoolingKind, TransformerConfig, TransformerEncoder, TransformerEncoderLayer,
};
use compress_testkit::{GradCheck, randomize_params, uniform_tensor};
use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn, s};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

fn input(shape: &[usize], seed: u64) -> ArrayD<f64> {
    uniform_tensor::<f64, _>(shape, 1.5, &mut StdRng::seed_from_u64(seed))
}

fn check<L: Layer<f64>>(layer: &mut L, x: &ArrayD<f64>, seed: u64) {
    GradCheck::new()
        .seed(seed)
        .samples(30)
        .layer(layer, x)
        .assert_close(ATOL, RTOL);
}

/// Lengths 4, 2 and 0 (a fully padded sequence) in a batch padded to 4.
fn mask() -> PaddingMask {
    PaddingMask::from_lengths(&[4, 2, 0], 4).unwrap()
}

fn config(norm_first: bool) -> TransformerConfig {
    TransformerConfig {
        hidden: 8,
        heads: 2,
        intermediate: 11,
        layers: 2,
        layer_norm_eps: 1e-12,
        activation: GeluKind::Exact,
        norm_first,
        init_std: 0.5,
    }
}

#[test]
fn layer_norm_gradients() {
    let mut ln = LayerNorm::<f64>::new(6, 1e-5);
    randomize_params(&mut ln, 1, 0.7);
    check(&mut ln, &input(&[2, 3, 6], 2), 3);
}

#[test]
fn layer_norm_rows_have_zero_mean_unit_variance() {
    let mut ln = LayerNorm::<f64>::new(5, 0.0);
    let y = ln.forward(&input(&[4, 5], 7), Mode::Eval).unwrap();
    for row in y.rows() {
        let m = row.mean().unwrap();
        let v = row.mapv(|x| (x - m) * (x - m)).mean().unwrap();
        assert!(
            m.abs() < 1e-12 && (v - 1.0).abs() < 1e-12,
            "mean {m} var {v}"
        );
    }
}

#[test]
fn layer_norm_rejects_wrong_width() {
    let mut ln = LayerNorm::<f32>::new(5, 1e-5);
    let err = ln
        .forward(&ArrayD::zeros(IxDyn(&[2, 4])), Mode::Eval)
        .unwrap_err();
    assert!(err.to_string().contains("LayerNorm input"), "{err}");
}

#[test]
fn gelu_gradients_both_kinds() {
    for kind in [GeluKind::Exact, GeluKind::Tanh] {
        check(&mut Gelu::<f64>::new(kind), &input(&[3, 7], 4), 5);
    }
}

#[test]
fn gelu_known_values() {
    // x * Phi(x) with Phi from the standard normal table (15 digits).
    let cases: [(f64, f64); 5] = [
        (1.0, 0.841_344_746_068_542_9),
        (-1.0, -0.158_655_253_931_457_05),
        (2.0, 1.954_499_736_103_642),
        (-3.0, -0.004_049_694_094_890_3),
        (0.0, 0.0),
    ];
    for (x, want) in cases {
        let got = GeluKind::Exact.apply(x);
        assert!((got - want).abs() < 1e-15, "gelu({x}) = {got}, want {want}");
        let got32 = GeluKind::Exact.apply(x as f32);
        assert!(
            (f64::from(got32) - want).abs() < 2e-7,
            "f32 gelu({x}) = {got32}"
        );
    }
    // The tanh form is within 1e-3 of the exact one.
    for i in -40..=40 {
        let x = f64::from(i) / 10.0;
        assert!((GeluKind::Tanh.apply(x) - GeluKind::Exact.apply(x)).abs() < 1e-3);
    }
}

proptest! {
    #[test]
    fn erf_f32_is_within_two_ulp_of_f64(x in -6.0f32..6.0) {
        let e32 = erf(x);
        let e64 = erf(f64::from(x));
        let ulp = f64::from(f32::EPSILON) * e64.abs().max(f64::from(f32::MIN_POSITIVE));
        prop_assert!((f64::from(e32) - e64).abs() <= 2.0 * ulp.max(1e-45), "{x}: {e32} vs {e64}");
    }

    #[test]
    fn erf_is_odd_and_bounded(x in -30.0f64..30.0) {
        let e = erf(x);
        prop_assert!(e.abs() <= 1.0);
        prop_assert_eq!(e, -erf(-x));
    }
}

#[test]
fn embedding_gradient_is_scatter_add() {
    let mut emb = Embedding::<f64>::new(5, 3, 1.0, &mut StdRng::seed_from_u64(1));
    let ids = [1usize, 3, 1, 4];
    let r = input(&[4, 3], 9)
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    emb.zero_grad();
    emb.forward_ids(&ids, Mode::Train).unwrap();
    emb.backward_ids(&r).unwrap();
    let report = GradCheck::new().params(&mut emb, &mut |e: &mut Embedding<f64>| {
        (e.lookup(&ids).unwrap() * &r).sum()
    });
    report.assert_close(ATOL, RTOL);
    // Row 1 got two gradient rows, rows 0 and 2 none.
    let g = emb.weight.grad().unwrap();
    assert_eq!(g.slice(s![0, ..]).sum(), 0.0);
    let want = &r.row(0) + &r.row(2);
    assert!(
        (&g.slice(s![1, ..]) - &want)
            .iter()
            .all(|d| d.abs() < 1e-15)
    );
}

#[test]
fn embedding_as_layer_and_bad_ids() {
    let mut emb = Embedding::<f32>::new(4, 2, 1.0, &mut StdRng::seed_from_u64(1));
    let ids = ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![3.0f32, 0.0]).unwrap();
    let y = emb.forward(&ids, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[1, 2, 2]);
    assert_eq!(y.slice(s![0, 0, ..]), emb.weight.value().slice(s![3, ..]));
    let err = emb.lookup(&[0, 4]).unwrap_err().to_string();
    assert!(
        err.contains("token id") && err.contains("id 4") && err.contains("4 rows"),
        "{err}"
    );
    let bad = ArrayD::from_shape_vec(IxDyn(&[1]), vec![1.5f32]).unwrap();
    assert!(emb.forward(&bad, Mode::Eval).is_err());
}

#[test]
fn attention_gradients_with_padding() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut att = MultiHeadAttention::<f64>::new(6, 3, &mut rng).unwrap();
    randomize_params(&mut att, 4, 0.7);
    att.set_padding_mask(Some(mask()));
    check(&mut att, &input(&[3, 4, 6], 5), 6);
    att.set_padding_mask(None);
    check(&mut att, &input(&[2, 3, 6], 7), 8);
}

/// Attention written out element by element, for one sequence without padding.
fn naive_attention(att: &MultiHeadAttention<f64>, x: &Array2<f64>, valid: &[bool]) -> Array2<f64> {
    let lin = |l: &compress_nn::Linear<f64>, x: &Array2<f64>| {
        let w = l
            .weight
            .value()
            .clone()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
        let b = l
            .bias
            .as_ref()
            .unwrap()
            .value()
            .clone()
            .into_dimensionality::<ndarray::Ix1>()
            .unwrap();
        x.dot(&w.t()) + &b
    };
    let dense = |l: &dyn Layer<f64>| l.downcast_ref::<Linear<f64>>().unwrap().clone();
    let (q, k, v) = (
        lin(&dense(att.query.as_ref()), x),
        lin(&dense(att.key.as_ref()), x),
        lin(&dense(att.value.as_ref()), x),
    );
    let (n, dh) = (x.nrows(), att.head_dim());
    let mut ctx = Array2::zeros((n, att.hidden()));
    for h in 0..att.heads() {
        for i in 0..n {
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    let d: f64 = (0..dh)
                        .map(|c| q[[i, h * dh + c]] * k[[j, h * dh + c]])
                        .sum();
                    d / (dh as f64).sqrt() + if valid[j] { 0.0 } else { -1e30 }
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..dh {
                ctx[[i, h * dh + c]] = (0..n).map(|j| e[j] / z * v[[j, h * dh + c]]).sum();
            }
        }
    }
    lin(&dense(att.output.as_ref()), &ctx)
}

#[test]
fn attention_matches_naive_formula() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut att = MultiHeadAttention::<f64>::new(8, 4, &mut rng).unwrap();
    randomize_params(&mut att, 12, 0.7);
    let x = input(&[2, 5, 8], 13);
    let m = PaddingMask::from_lengths(&[5, 3], 5).unwrap();
    att.set_padding_mask(Some(m.clone()));
    let y = att.forward(&x, Mode::Eval).unwrap();
    for b in 0..2 {
        let xb = x.slice(s![b, .., ..]).to_owned();
        let want = naive_attention(&att, &xb, m.row(b));
        let got = y.slice(s![b, .., ..]);
        assert!(
            (&got - &want).iter().all(|d| d.abs() < 1e-12),
            "sequence {b}"
        );
    }
}

#[test]
fn fully_masked_sequence_is_finite_and_uniform() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut att = MultiHeadAttention::<f32>::new(4, 2, &mut rng).unwrap();
    att.set_padding_mask(Some(PaddingMask::from_lengths(&[0], 3).unwrap()));
    let x = uniform_tensor::<f32, _>(&[1, 3, 4], 1e3, &mut rng);
    let y = att.forward(&x, Mode::Eval).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    // Uniform attention: every query position gets the same context, so the same output.
    for t in 1..3 {
        let d = &y.slice(s![0, t, ..]) - &y.slice(s![0, 0, ..]);
        assert!(d.iter().all(|v| v.abs() < 1e-3));
    }
}

#[test]
fn padded_sequence_matches_unpadded_run() {
    for norm_first in [false, true] {
        let mut rng = StdRng::seed_from_u64(21);
        let mut enc = TransformerEncoder::<f64>::new(&config(norm_first), &mut rng).unwrap();
        randomize_params(&mut enc, 22, 0.7);
        let x = input(&[2, 6, 8], 23);
        enc.set_padding_mask(Some(PaddingMask::from_lengths(&[6, 4], 6).unwrap()));
        let y = enc.forward(&x, Mode::Eval).unwrap();
        enc.set_padding_mask(None);
        let alone = enc
            .forward(
                &x.slice(s![1..2, 0..4, ..]).to_owned().into_dyn(),
                Mode::Eval,
            )
            .unwrap();
        let d = &y.slice(s![1..2, 0..4, ..]) - &alone;
        assert!(
            d.iter().all(|v| v.abs() < 1e-12),
            "norm_first = {norm_first}"
        );
    }
}

#[test]
fn encoder_layer_gradients_post_and_pre_ln() {
    for (i, norm_first) in [false, true].into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(30 + i as u64);
        let mut layer = TransformerEncoderLayer::<f64>::new(&config(norm_first), &mut rng).unwrap();
        randomize_params(&mut layer, 40 + i as u64, 0.7);
        layer.set_padding_mask(Some(mask()));
        check(&mut layer, &input(&[3, 4, 8], 50), 60);
    }
}

#[test]
fn encoder_stack_gradients() {
    let mut rng = StdRng::seed_from_u64(70);
    let mut enc = TransformerEncoder::<f64>::new(&config(false), &mut rng).unwrap();
    randomize_params(&mut enc, 71, 0.7);
    enc.set_padding_mask(Some(PaddingMask::from_lengths(&[3, 1], 3).unwrap()));
    check(&mut enc, &input(&[2, 3, 8], 72), 73);
}

#[test]
fn encoder_uses_checkpoint_parameter_names() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut cfg = config(false);
    cfg.layers = 1;
    let enc = TransformerEncoder::<f32>::new(&cfg, &mut rng).unwrap();
    let names: Vec<String> = enc.named_params().into_iter().map(|p| p.path).collect();
    let want = [
        "attention.self.query.weight",
        "attention.self.query.bias",
        "attention.self.key.weight",
        "attention.self.key.bias",
        "attention.self.value.weight",
        "attention.self.value.bias",
        "attention.output.dense.weight",
        "attention.output.dense.bias",
        "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias",
        "intermediate.dense.weight",
        "intermediate.dense.bias",
        "output.dense.weight",
        "output.dense.bias",
        "output.LayerNorm.weight",
        "output.LayerNorm.bias",
    ]
    .map(|n| format!("layer.0.{n}"));
    assert_eq!(names, want);
    let w1 = enc.layers[0].intermediate.downcast_ref::<Linear<f32>>();
    assert_eq!(w1.unwrap().weight.shape(), &[11, 8]);
}

#[test]
fn encoder_cost_counts_params_and_macs() {
    let mut rng = StdRng::seed_from_u64(1);
    let enc = TransformerEncoder::<f32>::new(&config(false), &mut rng).unwrap();
    let c = enc.cost(&[5, 8]).unwrap();
    assert_eq!(c.params, enc.num_params());
    assert_eq!(c.output_shape, vec![5, 8]);
    // Per layer: 4 projections + 2 FFN linears per token, scores + context, 2 LayerNorms.
    let per_layer = 5 * (4 * 64 + 2 * 88) + 2 * 5 * 5 * 8 + 2 * 5 * 8;
    assert_eq!(c.macs, 2 * per_layer as u64);
}

#[test]
fn bad_heads_and_masks_are_errors() {
    let mut rng = StdRng::seed_from_u64(1);
    let err = MultiHeadAttention::<f32>::new(6, 4, &mut rng).unwrap_err();
    assert!(err.to_string().contains("num_attention_heads"), "{err}");
    let mut att = MultiHeadAttention::<f32>::new(4, 2, &mut rng).unwrap();
    att.set_padding_mask(Some(PaddingMask::from_lengths(&[1, 1], 2).unwrap()));
    let err = att
        .forward(&ArrayD::zeros(IxDyn(&[3, 2, 4])), Mode::Eval)
        .unwrap_err();
    assert!(err.to_string().contains("padding mask"), "{err}");
    assert!(PaddingMask::from_lengths(&[3], 2).is_err());
    assert!(
        att.forward(&ArrayD::zeros(IxDyn(&[2, 4])), Mode::Eval)
            .is_err()
    );
}

#[test]
fn pooling_gradients() {
    for (i, kind) in [PoolingKind::Mean, PoolingKind::Cls]
        .into_iter()
        .enumerate()
    {
        for normalize in [false, true] {
            let mut p = Pooling::<f64>::new(kind, normalize);
            p.set_padding_mask(Some(PaddingMask::from_lengths(&[3, 1, 2], 3).unwrap()));
            check(&mut p, &input(&[3, 3, 5], 80 + i as u64), 81);
        }
    }
}

#[test]
fn mean_pool_ignores_padding_and_normalize_gives_unit_rows() {
    let h = input(&[2, 4, 3], 90)
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap();
    let m = PaddingMask::from_lengths(&[4, 2], 4).unwrap();
    let pooled = mean_pool(&h.view(), Some(&m)).unwrap();
    let want = h.slice(s![1, 0..2, ..]).mean_axis(Axis(0)).unwrap();
    assert!((&pooled.row(1) - &want).iter().all(|d| d.abs() < 1e-15));
    let mut changed = h.clone();
    changed.slice_mut(s![1, 2.., ..]).fill(1e6);
    assert_eq!(mean_pool(&changed.view(), Some(&m)).unwrap(), pooled);
    let mut n = pooled.clone();
    l2_normalize(&mut n);
    for r in n.rows() {
        assert!((r.dot(&r) - 1.0).abs() < 1e-12);
    }
    assert_eq!(cls_pool(&h.view()).unwrap().row(1), h.slice(s![1, 0, ..]));
    // A zero row stays zero (norm clamped), no NaN.
    let mut z = Array2::<f64>::zeros((1, 3));
    l2_normalize(&mut z);
    assert!(z.iter().all(|&v| v == 0.0));
    let empty = PaddingMask::from_lengths(&[0, 0], 4).unwrap();
    let p0 = mean_pool(&h.view(), Some(&empty)).unwrap();
    assert!(p0.iter().all(|&v| v == 0.0));
    let _ = Array3::<f64>::zeros((1, 1, 1));
}
