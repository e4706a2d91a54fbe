//! QTensor: round-trip bounds, exact sizes, float casts and typed errors.

use compress_core::CoreError;
use compress_quant::{
    Granularity, IntScheme, QTensor, QuantError, QuantScheme, qparams_from_range, sqnr_db,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

fn scheme_strategy() -> impl Strategy<Value = IntScheme> {
    (
        prop::sample::select(vec![2u32, 3, 4, 8]),
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(bits, g, affine, f16)| {
            let mut s = IntScheme::new(bits);
            s = match g {
                0 => s,
                1 => s.per_channel(1),
                _ => s.per_group(4),
            };
            if affine {
                s = s.affine();
            }
            if f16 {
                s = s.f16_scales();
            }
            s
        })
}

/// The parameter set of flat index `i` in a `[3, 8]` tensor.
fn param_of(s: &IntScheme, i: usize) -> usize {
    match s.granularity {
        Granularity::PerTensor => 0,
        Granularity::PerChannel { .. } => i % 8,
        Granularity::PerGroup { group_size } => i / group_size,
    }
}

proptest! {
    #[test]
    fn round_trip_error_at_most_half_a_step(
        x in prop::collection::vec(-50.0f32..50.0, 24),
        s in scheme_strategy(),
    ) {
        let q = QTensor::quantize_slice(&x, &[3, 8], s).unwrap();
        let y: ArrayD<f32> = q.dequantize();
        let (qlo, qhi) = s.code_range();
        for (i, (&a, &b)) in x.iter().zip(y.iter()).enumerate() {
            let p = param_of(&s, i);
            let scale = q.scales()[p];
            let z = q.zero_points().get(p).copied().unwrap_or(0);
            let (lo, hi) = ((qlo - z) as f32 * scale, (qhi - z) as f32 * scale);
            // min-max ranges never clip
            prop_assert!(a >= lo - 1e-5 * scale.max(1.0) && a <= hi + 1e-5 * scale.max(1.0));
            prop_assert!((a - b).abs() <= scale * 0.5 * (1.0 + 1e-4) + a.abs() * 1e-6,
                "x={a} y={b} scale={scale} scheme={}", s.label());
        }
        // exact byte counts
        let n = 24usize;
        prop_assert_eq!(q.data().len(), (n * s.bits as usize).div_ceil(8));
        let zp_bytes = if s.affine { (q.scales().len() * s.bits as usize).div_ceil(8) } else { 0 };
        prop_assert_eq!(q.size_bytes(), q.data().len() + q.scales().len() * s.scale_dtype.bytes() + zp_bytes);
        // codes are in range and reproduce the dequantized values
        for (i, c) in q.codes().into_iter().enumerate() {
            prop_assert!(c >= qlo && c <= qhi);
            let p = param_of(&s, i);
            let z = q.zero_points().get(p).copied().unwrap_or(0);
            prop_assert_eq!(((c - z) as f32 * q.scales()[p]).to_bits(), y.as_slice().unwrap()[i].to_bits());
        }
    }

    #[test]
    fn clipped_ranges_clip_and_bound_inside(
        x in prop::collection::vec(-10.0f32..10.0, 1..64),
        lo in -5.0f32..-0.1,
        hi in 0.1f32..5.0,
        bits in prop::sample::select(vec![2u32, 3, 4, 8]),
    ) {
        let s = IntScheme::new(bits).affine();
        let q = QTensor::quantize_with_ranges(&x, &[x.len()], s, &[(lo, hi)]).unwrap();
        let (scale, z) = qparams_from_range(lo, hi, s).unwrap();
        let (qlo, qhi) = s.code_range();
        let (clo, chi) = ((qlo - z) as f32 * scale, (qhi - z) as f32 * scale);
        let y: ArrayD<f32> = q.dequantize();
        for (&a, &b) in x.iter().zip(y.iter()) {
            prop_assert!(b >= clo - 1e-5 && b <= chi + 1e-5);
            if a >= clo && a <= chi {
                prop_assert!((a - b).abs() <= scale * 0.5 * (1.0 + 1e-4) + 1e-6);
            }
        }
    }

    #[test]
    fn f16_and_bf16_casts_round_to_nearest(x in prop::collection::vec(-1000.0f32..1000.0, 1..50)) {
        for scheme in [QuantScheme::F16, QuantScheme::Bf16] {
            let q = QTensor::quantize_slice(&x, &[x.len()], scheme).unwrap();
            prop_assert_eq!(q.size_bytes(), 2 * x.len());
            let y: ArrayD<f32> = q.dequantize();
            let rel = if scheme == QuantScheme::F16 { 2f32.powi(-11) } else { 2f32.powi(-8) };
            for (&a, &b) in x.iter().zip(y.iter()) {
                // f16 subnormals have an absolute step of 2^-24
                prop_assert!((a - b).abs() <= a.abs() * rel + 2f32.powi(-25));
            }
        }
    }
}

#[test]
fn per_channel_any_axis() {
    // Axis 1 of a [2, 3, 2] tensor: channel c holds elements with index[1] == c.
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 2]), |ix| {
        (ix[1] as f32 + 1.0) * 10.0 * if ix[2] == 0 { 1.0 } else { -0.5 }
    });
    let q = QTensor::quantize(&x, IntScheme::new(8).per_channel(1)).unwrap();
    assert_eq!(q.scales().len(), 3);
    for c in 0..3 {
        assert!((q.scales()[c] - (c as f32 + 1.0) * 10.0 / 127.0).abs() < 1e-6);
    }
    let y: ArrayD<f32> = q.dequantize();
    assert!(sqnr_db(x.as_slice().unwrap(), y.as_slice().unwrap()) > 40.0);
}

#[test]
fn f16_scales_round_up_and_stay_exact() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 0.123).collect();
    let q = QTensor::quantize_slice(&x, &[2, 32], IntScheme::new(4).per_group(16).f16_scales())
        .unwrap();
    for &s in q.scales() {
        assert_eq!(
            half::f16::from_f32(s).to_f32(),
            s,
            "scale must be an exact f16"
        );
    }
    assert_eq!(q.size_bytes(), 32 + 4 * 2);
}

#[test]
fn typed_errors() {
    let nan = [1.0, f32::NAN, 2.0];
    match QTensor::quantize_slice(&nan, &[3], IntScheme::new(8)) {
        Err(QuantError::Core(CoreError::NonFinite { index: 1, .. })) => {}
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let inf = [1.0, 2.0, f32::INFINITY];
    assert!(matches!(
        QTensor::quantize_slice(&inf, &[3], QuantScheme::F16),
        Err(QuantError::Core(CoreError::NonFinite { index: 2, .. }))
    ));
    assert!(matches!(
        QTensor::quantize_slice(&[1.0; 10], &[2, 5], IntScheme::new(4).per_group(4)),
        Err(QuantError::GroupSize {
            group_size: 4,
            len: 5,
            ..
        })
    ));
    for bits in [0, 1, 9, 16] {
        assert!(matches!(
            QTensor::quantize_slice(&[1.0; 4], &[4], IntScheme::new(bits)),
            Err(QuantError::UnsupportedBits { .. })
        ));
    }
    assert!(matches!(
        QTensor::quantize_slice(&[], &[0, 3], IntScheme::new(8)),
        Err(QuantError::Core(CoreError::Empty { .. }))
    ));
    assert!(matches!(
        QTensor::quantize_slice(&[1.0; 4], &[4], IntScheme::new(8).per_channel(2)),
        Err(QuantError::Core(CoreError::InvalidConfig { .. }))
    ));
    assert!(QTensor::quantize_slice(&[1e6; 4], &[4], QuantScheme::F16).is_err());
    assert!(QTensor::quantize_slice(&[1.0; 4], &[5], IntScheme::new(8)).is_err());
}

#[test]
fn zero_tensor_and_exact_zero_in_affine() {
    let q = QTensor::quantize_slice(&[0.0; 8], &[8], IntScheme::new(4).affine()).unwrap();
    assert!(q.dequantize::<f32>().iter().all(|&v| v == 0.0));
    let q =
        QTensor::quantize_slice(&[0.0, 0.3, 1.7, 2.5], &[4], IntScheme::new(3).affine()).unwrap();
    assert_eq!(q.dequantize::<f64>()[0], 0.0);
}

#[test]
fn from_parts_validates() {
    let q =
        QTensor::quantize_slice(&[1.0, -2.0, 3.0, 0.5], &[4], IntScheme::new(3).affine()).unwrap();
    let parts = |data, scales, zero_points| {
        QTensor::from_parts(vec![4], q.scheme(), data, scales, zero_points)
    };
    let (data, scales, zps) = (
        q.data().to_vec(),
        q.scales().to_vec(),
        q.zero_points().to_vec(),
    );
    assert_eq!(parts(data.clone(), scales.clone(), zps.clone()).unwrap(), q);
    // One broken part at a time: too little data, a negative scale, an out-of-range zero point.
    assert!(parts(vec![0; 1], scales.clone(), zps.clone()).is_err());
    assert!(parts(data.clone(), vec![-1.0], zps).is_err());
    assert!(parts(data, scales, vec![99]).is_err());
}
