use compress_core::{Layer, Mode};
use compress_nn::Linear;
use ndarray::ArrayD;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

use super::W4A8Linear;
use crate::dynamic::TokenQuant;
use crate::dynamic::rows::row_params;
use crate::{Int4Linear, IntScheme, QTensor, QuantError};

fn linear(k: usize, n: usize, seed: u64) -> Linear<f32> {
    Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(seed))
}

/// `x_hat W_hat^T + b` in f64, `x_hat` each row of `x` rounded as the layer rounds it.
fn reference(x: &[f32], m: usize, w: &QTensor, b: &[f32]) -> Vec<f64> {
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let wd: Vec<f32> = w.dequantize::<f32>().iter().copied().collect();
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        let (lo, hi) = row
            .iter()
            .fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
        let (s, z, _) = row_params(lo, hi, TokenQuant::Asymmetric);
        let xq: Vec<f64> = row
            .iter()
            .map(|&v| {
                let c = (v * (1.0 / s) + z as f32)
                    .round_ties_even()
                    .clamp(0.0, 255.0);
                f64::from(c as i32 - z) * f64::from(s)
            })
            .collect();
        for j in 0..n {
            let dot: f64 = (0..k).map(|t| xq[t] * f64::from(wd[j * k + t])).sum();
            y[i * n + j] = dot + f64::from(b[j]);
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The layer computes the product of the rounded activations and the 4-bit weight
    /// (symmetric or affine) up to float rounding, on ragged shapes.
    #[test]
    fn equals_rounded_activations_times_int4_weight(
        (m, k, n, seed, x, affine, group) in
            (1usize..11, 1usize..4, 1usize..70, 0u64..1000, prop::sample::select(vec![8usize, 32]))
            .prop_flat_map(|(m, gpr, n, seed, group)| (
                Just(m), Just(gpr * group), Just(n), Just(seed),
                prop::collection::vec(-4.0f32..4.0, m * gpr * group),
                any::<bool>(), Just(group),
            ))
    ) {
        let lin = linear(k, n, seed);
        let mut q = W4A8Linear::from_linear(&lin, group, affine).unwrap();
        let w = q.weight().unwrap();
        let b: Vec<f32> = lin.bias.as_ref().unwrap().effective().iter().copied().collect();
        let want = reference(&x, m, &w, &b);
        let mut got = vec![0.0f32; m * n];
        q.forward_f32(&x, m, &mut got).unwrap();
        for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
            let tol = 1e-4 * (1.0 + r.abs()) + 1e-5 * k as f64;
            prop_assert!((f64::from(g) - r).abs() <= tol, "{i}: {g} vs {r}");
        }
    }
}

/// Stored weight round trip, and the same weight as the weight-only layer's.
#[test]
fn weight_round_trips() {
    for affine in [false, true] {
        let lin = linear(64, 20, 3);
        let q = W4A8Linear::from_linear(&lin, 16, affine).unwrap();
        let w4 = Int4Linear::from_linear(&lin, 16, affine).unwrap();
        assert_eq!(&q.weight().unwrap(), w4.weight(), "affine {affine}");
    }
}

/// int4-sized storage: half a byte per weight plus the group parameters.
#[test]
fn storage_is_four_bits_per_weight() {
    let lin = linear(256, 96, 1);
    let q = W4A8Linear::from_linear(&lin, 128, true).unwrap();
    let groups = 96 * 2;
    assert_eq!(q.size_bytes(), 96 * 256 / 2 + groups + 4 * groups + 4 * 96);
    let sym = W4A8Linear::from_linear(&lin, 128, false).unwrap();
    assert_eq!(sym.size_bytes(), 96 * 256 / 2 + 4 * groups + 4 * 96);
}

/// Within the W4A8 error of the weight-only int4 layer on a MiniLM-sized projection.
#[test]
fn close_to_weight_only_int4() {
    let lin = linear(384, 96, 7);
    let mut q = W4A8Linear::from_linear(&lin, 128, true).unwrap();
    let mut w4 = Int4Linear::from_linear(&lin, 128, true).unwrap();
    let x = ArrayD::from_shape_fn(vec![2, 5, 384], |ix| {
        ((ix[1] * 384 + ix[2]) as f32 * 0.37).sin()
    });
    let (y, y4) = (
        q.forward(&x, Mode::Eval).unwrap(),
        w4.forward(&x, Mode::Eval).unwrap(),
    );
    assert_eq!(y.shape(), &[2, 5, 96]);
    let scale = y4.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = y
        .iter()
        .zip(&y4)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 0.02 * scale, "{err} vs {scale}");
    assert!(q.backward(&y).is_err());
}

#[test]
fn bad_input_is_a_typed_error() {
    let lin = linear(32, 4, 0);
    let odd =
        QTensor::quantize_slice(&[0.5; 128], &[4, 32], IntScheme::new(4).per_group(4)).unwrap();
    assert!(matches!(
        W4A8Linear::from_qtensor(odd, None),
        Err(QuantError::GroupSize { group_size: 4, .. })
    ));
    let int3 =
        QTensor::quantize_slice(&[0.5; 128], &[4, 32], IntScheme::new(3).per_group(8)).unwrap();
    assert!(W4A8Linear::from_qtensor(int3, None).is_err());
    let w = QTensor::quantize_slice(&[0.5; 128], &[4, 32], IntScheme::new(4).per_group(8)).unwrap();
    assert!(W4A8Linear::from_qtensor(w.clone(), Some(vec![0.0; 3])).is_err());
    let mut q = W4A8Linear::from_linear(&lin, 8, true).unwrap();
    let mut x = vec![0.5f32; 64];
    x[40] = f32::NAN;
    let err = q.forward_f32(&x, 2, &mut [0.0; 8]).unwrap_err().to_string();
    assert!(err.contains("W4A8Linear input"), "{err}");
    assert!(q.forward_f32(&x[..63], 2, &mut [0.0; 8]).is_err());
}
