//! The dynamic int8 linear inside a transformer encoder.

use compress_core::surgery::{find_layer, layer_paths, replace_layer};
use compress_core::{Layer, Mode};
use compress_nn::Linear;
use compress_transformer::{BertConfig, BertModel};
use ndarray::Array2;

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
