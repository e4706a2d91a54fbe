//! The dynamic int8 linear inside a transformer encoder.

use compress_core::surgery::{find_layer, layer_paths, replace_layer};
use compress_core::{Layer, Mode};
use compress_nn::Linear;
use compress_transformer::{BertConfig, BertModel};
use ndarray::Array2;
use rand::{SeedableRng, rngs::StdRng};

use super::{DynamicQLinear, quantize_dynamic};

fn small_model() -> (BertModel<f32>, Array2<usize>) {
    let cfg = BertConfig::new(100, 48, 2, 4, 96);
    let model = BertModel::<f32>::random(&cfg, 7).unwrap();
    let ids = Array2::from_shape_fn((2, 11), |(b, t)| (b * 31 + t * 7 + 1) % 100);
    (model, ids)
}

/// Per-token cosine similarity of two `[batch, seq, hidden]` outputs: (mean, worst).
fn cosines(a: &ndarray::Array3<f32>, b: &ndarray::Array3<f32>) -> (f64, f64) {
    let h = a.shape()[2];
    let (a, b) = (a.as_slice().unwrap(), b.as_slice().unwrap());
    let cos: Vec<f64> = a
        .chunks_exact(h)
        .zip(b.chunks_exact(h))
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny)
        })
        .collect();
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    (mean, cos.iter().copied().fold(1.0, f64::min))
}

#[test]
fn every_encoder_linear_swapped_keeps_the_output_close() {
    let (mut model, ids) = small_model();
    let want = model.forward(&ids, None, Mode::Eval).unwrap();
    let replaced = quantize_dynamic(&mut model, |_| true).unwrap();
    assert_eq!(
        replaced.len(),
        2 * 6,
        "six projections per layer: {replaced:?}"
    );
    let linears_left = layer_paths::<f32>(&model)
        .into_iter()
        .filter(|(p, name)| *name == "Linear" && p.starts_with("encoder"))
        .count();
    assert_eq!(linears_left, 0);
    let got = model.forward(&ids, None, Mode::Eval).unwrap();
    let (mean, worst) = cosines(&want, &got);
    assert!(
        mean > 0.999 && worst > 0.995,
        "cosine mean {mean}, worst {worst}"
    );
}

#[test]
fn replace_layer_takes_a_dynamic_linear_in_one_projection() {
    let (mut model, ids) = small_model();
    let want = model.forward(&ids, None, Mode::Eval).unwrap();
    let path = "encoder.layer.1.intermediate.dense";
    let lin = find_layer::<f32>(&model, path)
        .and_then(|l| l.as_any().downcast_ref::<Linear<f32>>())
        .expect("the intermediate projection is a Linear")
        .clone();
    let q = DynamicQLinear::from_linear(&lin).unwrap();
    let old = replace_layer::<f32>(&mut model, path, Box::new(q)).unwrap();
    assert_eq!(old.name(), "Linear");
    let got = model.forward(&ids, None, Mode::Eval).unwrap();
    let (mean, _) = cosines(&want, &got);
    assert!(mean > 0.9995, "cosine mean {mean}");
    assert_ne!(want, got, "the int8 projection must actually run");
}

/// `quantize_dynamic` links each block's query, key and value: one quantization per block
/// and forward (key and value reuse the query's codes), with exactly the outputs of
/// unlinked layers.
#[test]
fn attention_projections_quantize_their_input_once() {
    let (mut model, ids) = small_model();
    quantize_dynamic(&mut model, |_| true).unwrap();
    let shared = model.forward(&ids, None, Mode::Eval).unwrap();
    let q = "encoder.layer.1.attention.self.query";
    let layer = find_layer::<f32>(&model, q)
        .and_then(|l| l.as_any().downcast_ref::<DynamicQLinear>())
        .unwrap();
    let share = layer.share.clone().expect("linked");
    assert_eq!(share.hits(), 2, "key and value reuse the query's codes");
    let mut unlinked = 0;
    compress_core::surgery::walk_layers_mut::<f32>(&mut model, &mut |_, slot| {
        if let Some(d) = slot.downcast_mut::<DynamicQLinear>() {
            unlinked += usize::from(d.share.is_some());
            d.set_input_share(None);
        }
        Ok(compress_core::surgery::Walk::Descend)
    })
    .unwrap();
    assert_eq!(unlinked, 2 * 3);
    let alone = model.forward(&ids, None, Mode::Eval).unwrap();
    assert_eq!(
        shared.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// Linked layers fed different inputs (and the same input again after another one) give
/// exactly what unlinked layers give: the share reuses codes only for an identical input.
#[test]
fn a_share_never_reuses_codes_of_another_input() {
    use super::InputShare;
    let lin = |seed| Linear::<f32>::new(24, 8, true, &mut StdRng::seed_from_u64(seed));
    let (l1, l2) = (lin(1), lin(2));
    let share = InputShare::new();
    let mut a = DynamicQLinear::from_linear(&l1).unwrap();
    let mut b = DynamicQLinear::from_linear(&l2).unwrap();
    let (mut a0, mut b0) = (a.clone(), b.clone());
    a.set_input_share(Some(share.clone()));
    b.set_input_share(Some(share.clone()));
    let x1: Vec<f32> = (0..72).map(|i| (i as f32 * 0.3).sin()).collect();
    let mut x2 = x1.clone();
    x2[50] = -0.0; // differs from x1 only in the bits of one value
    x2[51] += 1e-6;
    let mut x3 = x1.clone();
    x3[5] = -x3[5];
    let cases: [(&[f32], &[f32], usize); 5] = [
        (&x1, &x1, 3),
        (&x1, &x2, 3),
        (&x2, &x2, 3),
        (&x3, &x1, 3),
        (&x1[..48], &x1[..48], 2),
    ];
    for (xa, xb, m) in cases {
        let (mut ya, mut yb) = (vec![0.0; m * 8], vec![0.0; m * 8]);
        let (mut wa, mut wb) = (ya.clone(), yb.clone());
        a.forward_f32(xa, m, &mut ya).unwrap();
        b.forward_f32(xb, m, &mut yb).unwrap();
        a0.forward_f32(xa, m, &mut wa).unwrap();
        b0.forward_f32(xb, m, &mut wb).unwrap();
        assert_eq!((ya, yb), (wa, wb));
    }
    // Hits: b in the first case, a in the second (x1 again), both in the third, b in the
    // last (a new row count for a).
    assert_eq!(share.hits(), 5);
    let mut bad = x1.clone();
    bad[3] = f32::NAN;
    assert!(a.forward_f32(&bad[..72], 3, &mut [0.0; 24]).is_err());
    assert!(
        b.forward_f32(&bad[..72], 3, &mut [0.0; 24]).is_err(),
        "a failed input is not kept"
    );
}
