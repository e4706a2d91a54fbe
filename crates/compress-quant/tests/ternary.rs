//! Ternary weights (TWN): threshold, scale, 2-bit packing, parametrization.

use compress_core::{Param, TensorExt};
use compress_quant::ternary::{TernaryTensor, TernaryWeights, twn_params};
use ndarray::ArrayD;
use proptest::prelude::*;

#[test]
fn twn_threshold_and_scale() {
    let w = ArrayD::from_shape_vec(vec![5], vec![1.0f64, -2.0, 0.1, 0.0, 3.0]).unwrap();
    let (delta, alpha) = twn_params(&w, 0.7);
    assert!((delta - 0.7 * 6.1 / 5.0).abs() < 1e-12);
    assert!((alpha - 2.0).abs() < 1e-12);
    let t = TernaryTensor::ternarize(&w).unwrap();
    assert_eq!(
        t.decode().unwrap().as_slice().unwrap(),
        &[2.0, -2.0, 0.0, 0.0, 2.0]
    );
    assert_eq!(t.bytes(), 2 + 8);
    assert!((t.sparsity() - 0.4).abs() < 1e-12);
}

#[test]
fn bad_inputs() {
    let w = ArrayD::from_shape_vec(vec![2], vec![1.0f32, f32::INFINITY]).unwrap();
    assert!(TernaryTensor::ternarize(&w).is_err());
    let w = ArrayD::from_shape_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
    assert!(TernaryTensor::ternarize_with(&w, -1.0).is_err());
    let mut p = Param::new(w);
    assert!(
        p.push_parametrization(Box::new(TernaryWeights::with_factor(f64::NAN)))
            .is_err()
    );
}

#[test]
fn parametrization_is_straight_through() {
    let w = ArrayD::from_shape_vec(vec![4], vec![0.5f64, -0.5, 0.01, 2.0]).unwrap();
    let mut p = Param::new(w);
    p.push_parametrization(Box::new(TernaryWeights::new()))
        .unwrap();
    p.accumulate_grad(ArrayD::from_elem(vec![4], 0.5)).unwrap();
    assert_eq!(p.grad().unwrap().as_slice().unwrap(), &[0.5; 4]);
}

proptest! {
    #[test]
    fn ternary_values_and_packing(x in prop::collection::vec(-5.0f32..5.0, 1..300)) {
        let w = ArrayD::from_shape_vec(vec![x.len()], x.clone()).unwrap();
        let t = TernaryTensor::ternarize(&w).unwrap();
        prop_assert_eq!(t.bytes(), x.len().div_ceil(4) + 4);
        let d = t.decode().unwrap();
        let a = t.alpha();
        prop_assert!(d.iter().all(|&v| v == 0.0 || v == a || v == -a));
        // Signs agree wherever the value is kept.
        prop_assert!(d.iter().zip(&x).all(|(&q, &v)| q == 0.0 || q.signum() == v.signum()));
        prop_assert!(d.check_finite("d").is_ok());
    }
}
