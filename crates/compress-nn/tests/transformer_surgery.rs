//! The encoder's projections are replaceable slots: any layer with the right widths runs
//! in their place, a layer with other widths is a typed error.

use compress_core::derive::Module;
use compress_core::surgery::{find_layer, replace_layer, walk_layers};
use compress_core::{CoreError, Layer, Mode};
use compress_nn::{GeluKind, Linear, PaddingMask, TransformerConfig, TransformerEncoder};
use compress_testkit::{randomize_params, uniform_tensor};
use rand::{SeedableRng, rngs::StdRng};

fn encoder(seed: u64) -> TransformerEncoder<f64> {
    let cfg = TransformerConfig {
        hidden: 8,
        heads: 2,
        intermediate: 12,
        layers: 2,
        layer_norm_eps: 1e-12,
        activation: GeluKind::Exact,
        norm_first: false,
        init_std: 0.5,
    };
    let mut enc = TransformerEncoder::new(&cfg, &mut StdRng::seed_from_u64(seed)).unwrap();
    randomize_params(&mut enc, seed + 1, 0.5);
    enc.set_padding_mask(Some(PaddingMask::from_lengths(&[4, 2], 4).unwrap()));
    enc
}

/// A layer that is not a `Linear` but computes the same map (wraps one), as a quantized
/// kernel would.
#[derive(Debug, Module)]
struct Wrapped {
    inner: Linear<f64>,
}

impl Layer<f64> for Wrapped {
    fn name(&self) -> &'static str {
        "Wrapped"
    }
    fn forward(
        &mut self,
        x: &ndarray::ArrayRef<f64, ndarray::IxDyn>,
        mode: Mode,
    ) -> compress_core::Result<ndarray::ArrayD<f64>> {
        self.inner.forward(x, mode)
    }
    fn backward(
        &mut self,
        g: &ndarray::ArrayRef<f64, ndarray::IxDyn>,
    ) -> compress_core::Result<ndarray::ArrayD<f64>> {
        self.inner.backward(g)
    }
    fn cost(&self, s: &[usize]) -> compress_core::Result<compress_core::Cost> {
        self.inner.cost(s)
    }
}

#[test]
fn every_projection_is_replaceable_and_runs() {
    let mut enc = encoder(3);
    let x = uniform_tensor(&[2, 4, 8], 1.0, &mut StdRng::seed_from_u64(4));
    let before = enc.forward(&x, Mode::Eval).unwrap();
    let mut paths = Vec::new();
    walk_layers(&enc, &mut |path, l| {
        if l.is::<Linear<f64>>() {
            paths.push(path.to_string());
        }
    });
    assert_eq!(paths.len(), 12, "{paths:?}");
    for p in &paths {
        let lin = find_layer(&enc, p)
            .unwrap()
            .downcast_ref::<Linear<f64>>()
            .unwrap()
            .clone();
        let old = replace_layer(&mut enc, p, Box::new(Wrapped { inner: lin })).unwrap();
        assert!(old.is::<Linear<f64>>());
    }
    assert!(
        find_layer(&enc, "layer.1.output.dense")
            .unwrap()
            .is::<Wrapped>()
    );
    let after = enc.forward(&x, Mode::Eval).unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_replacement_with_other_widths_is_a_typed_error() {
    for (path, inp, out) in [
        ("layer.0.attention.self.key", 8, 6),
        ("layer.0.attention.output.dense", 8, 7),
        ("layer.1.intermediate.dense", 8, 10),
        ("layer.1.output.dense", 12, 9),
    ] {
        let mut enc = encoder(5);
        let bad = Linear::<f64>::new(inp, out, true, &mut StdRng::seed_from_u64(6));
        replace_layer(&mut enc, path, Box::new(bad)).unwrap();
        let x = uniform_tensor(&[2, 4, 8], 1.0, &mut StdRng::seed_from_u64(7));
        let err = enc.forward(&x, Mode::Eval).unwrap_err();
        assert!(
            matches!(&err, CoreError::ShapeMismatch { .. }) && err.to_string().contains("output"),
            "{path}: {err}"
        );
    }
}
