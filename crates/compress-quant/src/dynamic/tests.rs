use compress_core::{CoreError, Layer, Mode};
use compress_nn::Linear;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use super::rows::row_params;
use super::{DynamicQLinear, TokenQuant};

const MAX_IN_FEATURES: usize = DynamicQLinear::MAX_IN_FEATURES;
use crate::QuantError;

fn linear(k: usize, n: usize, seed: u64) -> Linear<f32> {
    Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(seed))
}

/// `x W^T + b` in f64.
fn reference(x: &[f32], m: usize, w: &[f32], b: &[f32], k: usize, n: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                .sum();
            y[i * n + j] = dot + f64::from(b[j]);
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Each output differs from the f32 layer's by at most the rounding of weights (half a
    /// channel step times `sum |x|`) and of activations (half a row step times
    /// `sum |w_hat|`), plus float rounding.
    #[test]
    fn matches_f32_linear_within_quantization_bound(
        (m, k, n, seed, x, sym) in (1usize..9, 1usize..70, 1usize..60, 0u64..1000)
            .prop_flat_map(|(m, k, n, seed)| (
                Just(m), Just(k), Just(n), Just(seed),
                prop::collection::vec(-4.0f32..4.0, m * k),
                any::<bool>(),
            ))
    ) {
        let lin = linear(k, n, seed);
        let act = if sym { TokenQuant::Symmetric } else { TokenQuant::Asymmetric };
        let mut q = DynamicQLinear::from_linear(&lin).unwrap().with_token_quant(act);
        let w: Vec<f32> = lin.weight.effective().iter().copied().collect();
        let b: Vec<f32> = lin.bias.as_ref().unwrap().effective().iter().copied().collect();
        let want = reference(&x, m, &w, &b, k, n);
        let mut got = vec![0.0f32; m * n];
        q.forward_f32(&x, m, &mut got).unwrap();
        let wq = q.dequantized_weight();
        for i in 0..m {
            let row = &x[i * k..(i + 1) * k];
            let (lo, hi) = row.iter().fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
            let (s_row, _, _) = row_params(lo, hi, act);
            let sum_x: f64 = row.iter().map(|v| f64::from(v.abs())).sum();
            for j in 0..n {
                let sum_w: f64 = wq[j * k..(j + 1) * k].iter().map(|v| f64::from(v.abs())).sum();
                let s_col = f64::from(q.weight_scales()[j]);
                let bound = 0.5 * s_col * sum_x + 0.5 * f64::from(s_row) * sum_w
                    + 1e-5 * (1.0 + sum_x * 1.0 + want[i * n + j].abs());
                let err = (f64::from(got[i * n + j]) - want[i * n + j]).abs();
                prop_assert!(err <= bound, "({i},{j}): err {err} > bound {bound}");
            }
        }
    }

    /// With unit scales (integer inputs spanning exactly 255 or +-127 levels, unit weight
    /// scales, no bias) the layer returns the exact integer product.
    #[test]
    fn integer_accumulation_is_exact(
        (m, k, n, codes, w, sym, lo) in (1usize..7, 2usize..300, 1usize..70)
            .prop_flat_map(|(m, k, n)| (
                Just(m), Just(k), Just(n),
                prop::collection::vec(-127i32..=127, m * k),
                prop::collection::vec(any::<i8>(), n * k),
                any::<bool>(),
                0i32..=255,
            ))
    ) {
        // Each row holds its range's two ends, so its scale is exactly 1.
        let mut x: Vec<f32> = codes.iter().map(|&c| c as f32).collect();
        for row in x.chunks_exact_mut(k) {
            if sym {
                row[0] = -127.0;
                row[1] = 127.0;
            } else {
                row.iter_mut().for_each(|v| *v = v.clamp(-(lo as f32), (255 - lo) as f32));
                row[0] = -(lo as f32);
                row[1] = (255 - lo) as f32;
            }
        }
        let act = if sym { TokenQuant::Symmetric } else { TokenQuant::Asymmetric };
        let mut q = DynamicQLinear::from_parts(&w, n, k, vec![1.0; n], None)
            .unwrap()
            .with_token_quant(act);
        let mut got = vec![0.0f32; m * n];
        q.forward_f32(&x, m, &mut got).unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: i64 = (0..k)
                    .map(|t| x[i * k + t] as i64 * i64::from(w[j * k + t]))
                    .sum();
                prop_assert_eq!(got[i * n + j], want as f32, "({}, {})", i, j);
            }
        }
    }
}

#[test]
fn leading_dimensions_are_flattened_and_cost_counts_rows() {
    let lin = linear(24, 10, 3);
    let mut q = DynamicQLinear::from_linear(&lin).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 24]), |ix| {
        ((ix[0] * 72 + ix[1] * 24 + ix[2]) as f32 * 0.37).cos()
    });
    let y = Layer::<f32>::forward(&mut q, &x, Mode::Eval).unwrap();
    assert_eq!(y.shape(), &[2, 3, 10]);
    let flat = x.to_shape(IxDyn(&[6, 24])).unwrap().to_owned();
    let y2 = Layer::<f32>::forward(&mut q, &flat, Mode::Eval).unwrap();
    assert_eq!(y.as_slice().unwrap(), y2.as_slice().unwrap());
    let c = Layer::<f32>::cost(&q, &[3, 24]).unwrap();
    assert_eq!(c.output_shape, vec![3, 10]);
    assert_eq!(c.macs, 3 * 24 * 10);
    assert_eq!(c.params, 24 * 10 + 10);
    // f64 models run through the same kernel.
    let x64 = x.mapv(f64::from);
    let y64 = Layer::<f64>::forward(&mut q, &x64, Mode::Eval).unwrap();
    for (a, b) in y64.iter().zip(&y) {
        assert_eq!(*a as f32, *b);
    }
}

#[test]
fn sizes_and_accessors_round_trip() {
    let lin = linear(40, 7, 9);
    let q = DynamicQLinear::from_linear(&lin).unwrap();
    assert_eq!(q.size_bytes(), 40 * 7 + 4 * 7 + 4 * 7);
    assert!(q.memory_bytes() >= q.size_bytes());
    let r = DynamicQLinear::from_parts(
        &q.weight_codes(),
        7,
        40,
        q.weight_scales().to_vec(),
        q.bias().map(<[f32]>::to_vec),
    )
    .unwrap();
    assert_eq!(r.weight_codes(), q.weight_codes());
    assert_eq!(r.bias(), q.bias());
    let nb = DynamicQLinear::from_parts(&[1, 2], 1, 2, vec![1.0], None).unwrap();
    assert_eq!(nb.bias(), None);
    assert_eq!(nb.size_bytes(), 2 + 4);
}

fn config_name(e: QuantError) -> String {
    match e {
        QuantError::Core(CoreError::InvalidConfig { name, .. }) => name,
        QuantError::Core(CoreError::ShapeMismatch { path, .. }) => path,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let build = |codes: &[i8], n, k, s: Vec<f32>, b| DynamicQLinear::from_parts(codes, n, k, s, b);
    assert_eq!(
        config_name(build(&[1], 1, 2, vec![1.0], None).unwrap_err()),
        "weight codes"
    );
    assert_eq!(
        config_name(build(&[1, 1], 1, 2, vec![], None).unwrap_err()),
        "weight scales"
    );
    assert_eq!(
        config_name(build(&[1, 1], 1, 2, vec![0.0], None).unwrap_err()),
        "weight scales"
    );
    assert_eq!(
        config_name(build(&[1, 1], 1, 2, vec![f32::NAN], None).unwrap_err()),
        "weight scales"
    );
    assert_eq!(
        config_name(build(&[1, 1], 1, 2, vec![1.0], Some(vec![])).unwrap_err()),
        "bias"
    );
    assert_eq!(
        config_name(build(&[], 0, 2, vec![], None).unwrap_err()),
        "features"
    );
    let big = vec![0i8; MAX_IN_FEATURES + 1];
    assert_eq!(
        config_name(build(&big, 1, MAX_IN_FEATURES + 1, vec![1.0], None).unwrap_err()),
        "in_features"
    );

    let mut q = DynamicQLinear::from_linear(&linear(8, 3, 1)).unwrap();
    let wrong = ArrayD::<f32>::zeros(IxDyn(&[4, 9]));
    match Layer::<f32>::forward(&mut q, &wrong, Mode::Eval) {
        Err(CoreError::ShapeMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (vec![4, 8], vec![4, 9]));
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let scalar = ArrayD::<f32>::zeros(IxDyn(&[]));
    assert!(Layer::<f32>::forward(&mut q, &scalar, Mode::Eval).is_err());
    let mut x = ArrayD::<f32>::zeros(IxDyn(&[2, 8]));
    x[[1, 5]] = f32::NAN;
    match Layer::<f32>::forward(&mut q, &x, Mode::Eval) {
        Err(CoreError::NonFinite { index, .. }) => assert_eq!(index, 13),
        other => panic!("expected a non-finite error, got {other:?}"),
    }
    let y = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
    assert!(matches!(
        Layer::<f32>::backward(&mut q, &y),
        Err(CoreError::InvalidState { .. })
    ));
    let mut out = vec![0.0f32; 5];
    assert!(q.forward_f32(&[0.0; 16], 2, &mut out).is_err());
}

#[test]
fn zero_rows_and_tiny_rows_quantize_to_zero_output_plus_bias() {
    let lin = linear(16, 5, 2);
    let mut q = DynamicQLinear::from_linear(&lin).unwrap();
    let mut x = vec![0.0f32; 32];
    x[16] = 1e-44; // subnormal: no invertible scale
    let mut y = vec![0.0f32; 10];
    q.forward_f32(&x, 2, &mut y).unwrap();
    let b = q.bias().unwrap().to_vec();
    assert_eq!(&y[..5], &b[..]);
    assert_eq!(&y[5..], &b[..]);
}
