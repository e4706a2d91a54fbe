//! Model-level PTQ, reports and the saved format.

use compress_core::{CoreError, Layer, Mode, Module, Param, ParamDict, ParamFilter};
use compress_quant::{IntScheme, PtqConfig, QuantError, fake_quantize_model, quantize_model};
use compress_testkit::max_abs_diff;
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

fn cnn() -> compress_nn::Sequential<f32> {
    compress_nn::models::small_cnn(1, 8, 10, &mut StdRng::seed_from_u64(7))
}

#[test]
fn reports_bytes_and_sqnr() {
    let net = compress_nn::models::mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
    let (_, r8) = quantize_model(&net, &PtqConfig::new(IntScheme::int8_per_channel())).unwrap();
    let (_, r4) = quantize_model(&net, &PtqConfig::new(IntScheme::new(4).per_group(32))).unwrap();
    assert_eq!(r8.params[0].path, "0.weight");
    assert_eq!(r8.params[0].bytes, 64 * 32 + 32 * 4);
    assert_eq!(r4.params[0].bytes, 64 * 32 / 2 + 64 * 4);
    assert_eq!(r8.float_bytes, 4 * (32 + 10));
    assert!(r8.mean_sqnr_db() > r4.mean_sqnr_db() + 15.0);
    assert!(r8.f32_total_bytes() > 3 * r8.total_bytes());
}

#[test]
fn conv_weights_group_over_flattened_inputs_or_fall_back() {
    let net = cnn();
    // conv2 weight [32, 16, 3, 3]: 144 inputs per output, divisible by 16; conv1 [16,1,3,3]: 9, not.
    let (q, r) = quantize_model(&net, &PtqConfig::new(IntScheme::new(4).per_group(16))).unwrap();
    let labels: Vec<&str> = r.params.iter().map(|p| p.scheme.as_str()).collect();
    assert_eq!(labels[0], "int4-sym-per-channel(0)");
    assert_eq!(labels[1], "int4-sym-group(16)");
    assert_eq!(q.quantized[1].tensor.shape(), &[32, 144]);
    assert_eq!(q.quantized[1].shape, vec![32, 16, 3, 3]);
    let mut strict = PtqConfig::new(IntScheme::new(4).per_group(16));
    strict.group_fallback = false;
    match quantize_model(&net, &strict) {
        Err(QuantError::GroupSize { path, .. }) => assert_eq!(path, "0.weight"),
        other => panic!("expected a GroupSize error, got {other:?}"),
    }
}

#[test]
fn apply_changes_outputs_a_little() {
    let mut net = cnn();
    let x = ArrayD::from_shape_fn(vec![4, 1, 8, 8], |ix| {
        ((ix[0] * 64 + ix[2] * 8 + ix[3]) as f32 * 0.1).sin()
    });
    let y0 = net.forward(&x, Mode::Eval).unwrap();
    let report = fake_quantize_model(&mut net, &PtqConfig::default()).unwrap();
    assert_eq!(report.params.len(), 4);
    let y1 = net.forward(&x, Mode::Eval).unwrap();
    let err = max_abs_diff(&y0, &y1);
    assert!(err > 0.0 && err < 0.05, "{err}");
}

#[test]
fn filters_and_non_finite_weights() {
    let mut d = ParamDict::<f64>::new();
    d.insert(
        "a.weight",
        Param::new(ArrayD::from_elem(IxDyn(&[2, 4]), 0.5)),
    );
    d.insert(
        "head.weight",
        Param::new(ArrayD::from_elem(IxDyn(&[2, 4]), 0.25)),
    );
    let cfg = PtqConfig::default().filter(ParamFilter::new().exclude("head.*"));
    let (q, r) = quantize_model(&d, &cfg).unwrap();
    assert_eq!(r.params.len(), 1);
    assert_eq!(q.float.len(), 1);
    d.get_mut("a.weight").unwrap().value_mut()[[1, 2]] = f64::NAN;
    match quantize_model(&d, &cfg) {
        Err(QuantError::Core(CoreError::NonFinite { path, index, .. })) => {
            assert_eq!((path.as_str(), index), ("a.weight", 6));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let _ = d.num_params();
}
