//! Array-level helpers a user had to write by hand before.

use netcompress::core::CoreError;
use netcompress::ndarray::{Array2, ArrayD, Ix2, IxDyn, array, s};
use netcompress::prelude::*;
use netcompress::prune::{magnitude_mask, magnitude_mask_array, magnitude_prune_array};
use netcompress::quant::{IntScheme, QTensor, QuantError, matmul_i8, matmul_i8_t};
use netcompress::rand::{Rng, SeedableRng, rngs::StdRng};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-2.0f32..2.0))
}

#[test]
fn int8_matmul_of_f32_arrays_is_close_to_the_float_product() {
    let (a, b) = (random(5, 64, 1), random(64, 7, 2));
    let exact = a.dot(&b);
    let approx = matmul_i8(&a, &b).unwrap();
    // Each of the 64 products carries at most half a scale of error per operand.
    let bound = 64.0 * (2.0 * 2.0 / 127.0) * 1.01;
    for (p, e) in approx.iter().zip(&exact) {
        assert!((p - e).abs() <= bound, "{p} vs {e}");
    }
    let rel = (&approx - &exact).mapv(f32::abs).sum() / exact.mapv(f32::abs).sum();
    assert!(rel < 0.01, "relative error {rel}");
    let w = b.t().to_owned();
    assert_eq!(matmul_i8_t(&a, &w).unwrap(), approx);
}

#[test]
fn int8_matmul_names_the_operand_of_a_bad_input() {
    let (a, mut b) = (random(2, 3, 3), random(3, 2, 4));
    assert!(matches!(
        matmul_i8(&a, &random(4, 2, 5)),
        Err(QuantError::Core(CoreError::ShapeMismatch { .. }))
    ));
    b[[2, 1]] = f32::NAN;
    match matmul_i8(&a, &b) {
        Err(QuantError::Core(CoreError::NonFinite { path, index, .. })) => {
            assert_eq!((path.as_str(), index), ("b", 5));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(
        matmul_i8(&random(0, 3, 6), &b.slice(s![.., ..1]))
            .unwrap()
            .dim(),
        (0, 1)
    );
}

#[test]
fn qtensor_gives_i8_codes_scales_and_a_round_trip_bound_per_element() {
    let w = random(6, 32, 7).into_dyn();
    for scheme in [
        IntScheme::int8_per_channel(),
        IntScheme::new(4).per_group(8),
        IntScheme::new(6).affine(),
        IntScheme::new(3).per_channel(0).affine(),
    ] {
        let q = QTensor::quantize(&w, scheme).unwrap();
        let codes = q.codes_i8().unwrap();
        assert_eq!(codes.shape(), w.shape());
        let wide = q.codes();
        assert!(codes.iter().zip(&wide).all(|(&c, &d)| i32::from(c) == d));
        let back: ArrayD<f32> = q.dequantize();
        for (i, ((&x, &y), &c)) in w.iter().zip(&back).zip(&codes).enumerate() {
            let scale = q.scale_of(i).unwrap();
            let zp = q.zero_point_of(i).unwrap();
            assert_eq!(y, (i32::from(c) - zp) as f32 * scale, "{scheme:?} at {i}");
            let bound = q.round_trip_bound(i).unwrap();
            assert!((x - y).abs() <= bound * (1.0 + 1e-5), "{scheme:?} at {i}");
        }
        assert_eq!(q.scale_of(w.len()), None);
    }
    let affine8 = QTensor::quantize(&w, IntScheme::new(8).affine()).unwrap();
    assert!(matches!(
        affine8.codes_i8(),
        Err(QuantError::UnsupportedBits { bits: 8, .. })
    ));
}

#[test]
fn magnitude_mask_as_a_plain_array_of_the_same_dimension() {
    let w = random(4, 5, 8);
    let m: Array2<f32> = magnitude_mask_array(&w, 0.6).unwrap();
    assert_eq!(m.iter().filter(|&&x| x == 0.0).count(), 12);
    assert!(m.iter().all(|&x| x == 0.0 || x == 1.0));
    let mask = magnitude_mask(&w, 0.6).unwrap();
    assert_eq!(mask.array().view().into_dimensionality::<Ix2>().unwrap(), m);
}

#[test]
fn pruning_a_strided_view_in_place_needs_no_slice() {
    let mut w = random(4, 6, 9);
    let before = w.clone();
    let pruned = magnitude_prune_array(&mut w.slice_mut(s![.., 1..4]), 0.5).unwrap();
    assert_eq!(pruned, 6);
    assert_eq!(w.slice(s![.., ..1]), before.slice(s![.., ..1]));
    assert_eq!(w.slice(s![.., 4..]), before.slice(s![.., 4..]));
    assert_eq!(
        w.slice(s![.., 1..4]).iter().filter(|&&x| x == 0.0).count(),
        6
    );
    // A transposed (non-contiguous) view prunes the same entries as the contiguous array.
    let mut t = before.t().to_owned();
    magnitude_prune_array(&mut t.view_mut().reversed_axes(), 0.5).unwrap();
    let mut flat = before.clone();
    magnitude_prune_array(&mut flat, 0.5).unwrap();
    assert_eq!(t.t(), flat);
    assert_eq!(flat.iter().filter(|&&x| x == 0.0).count(), 12);
}

#[test]
fn params_give_fixed_rank_views_of_their_effective_value() {
    let p = Param::new(ArrayD::<f32>::ones(IxDyn(&[3, 4])));
    let w = p.effective2().unwrap();
    assert_eq!(w.dim(), (3, 4));
    assert!(p.effective1().is_err());
    let v = Param::new(array![1.0f32, 2.0].into_dyn());
    assert_eq!(v.effective1().unwrap().to_vec(), [1.0, 2.0]);
}
