//! Stacked parametrizations on a Linear weight change forward and backward in push order.

use compress_core::{Layer, Mode};
use compress_nn::Linear;
use compress_testkit::{Affine, FixedMask};
use ndarray::{Array2, ArrayD, Ix2};
use proptest::prelude::*;

fn to2(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality::<Ix2>().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn mask_then_double(
        w in prop::collection::vec(-1.0f64..1.0, 12),
        m in prop::collection::vec(prop::bool::ANY, 12),
        x in prop::collection::vec(-1.0f64..1.0, 8),
        g in prop::collection::vec(-1.0f64..1.0, 6),
    ) {
        let w = ArrayD::from_shape_vec(vec![3, 4], w).unwrap();
        let mask = ArrayD::from_shape_vec(vec![3, 4], m.iter().map(|&b| f64::from(u8::from(b))).collect()).unwrap();
        let x = ArrayD::from_shape_vec(vec![2, 4], x).unwrap();
        let g = ArrayD::from_shape_vec(vec![2, 3], g).unwrap();
        let mut lin = Linear::from_arrays(w.clone(), None);
        lin.weight.push_parametrization(Box::new(FixedMask::new(mask.clone()))).unwrap();
        lin.weight.push_parametrization(Box::new(Affine::scale(2.0))).unwrap();
        // effective = double(mask(w))
        let eff = &w * &mask * 2.0;
        prop_assert_eq!(lin.weight.effective().into_owned(), eff.clone());
        let y = lin.forward(&x, Mode::Train).unwrap();
        let expect = to2(&x).dot(&to2(&eff).t());
        prop_assert!((to2(&y) - &expect).iter().all(|d| d.abs() < 1e-12));
        let dx = lin.backward(&g).unwrap();
        prop_assert!((to2(&dx) - to2(&g).dot(&to2(&eff))).iter().all(|d| d.abs() < 1e-12));
        // grad of the stored weight = mask * 2 * (g^T x)
        let raw = to2(&g).t().dot(&to2(&x)).into_dyn();
        let expect_grad = &mask * 2.0 * &raw;
        let got = lin.weight.grad().unwrap();
        prop_assert!((got - &expect_grad).iter().all(|d| d.abs() < 1e-12));
    }
}

#[test]
fn push_order_matters() {
    let w = ArrayD::from_shape_vec(vec![1, 2], vec![3.0, 5.0]).unwrap();
    let mask = ArrayD::from_shape_vec(vec![1, 2], vec![1.0, 0.0]).unwrap();
    // Adding one does not commute with the mask.
    let mut a = Linear::from_arrays(w.clone(), None);
    a.weight
        .push_parametrization(Box::new(FixedMask::new(mask.clone())))
        .unwrap();
    a.weight
        .push_parametrization(Box::new(Affine::shift(1.0)))
        .unwrap();
    assert_eq!(
        a.weight.effective().iter().copied().collect::<Vec<_>>(),
        vec![4.0, 1.0]
    );
    let mut b = Linear::from_arrays(w, None);
    b.weight
        .push_parametrization(Box::new(Affine::shift(1.0)))
        .unwrap();
    b.weight
        .push_parametrization(Box::new(FixedMask::new(mask)))
        .unwrap();
    assert_eq!(
        b.weight.effective().iter().copied().collect::<Vec<_>>(),
        vec![4.0, 0.0]
    );
    let x = ArrayD::from_shape_vec(vec![1, 2], vec![1.0, 1.0]).unwrap();
    assert_eq!(a.forward(&x, Mode::Train).unwrap()[[0, 0]], 5.0);
    assert_eq!(b.forward(&x, Mode::Train).unwrap()[[0, 0]], 4.0);
    let g = ArrayD::from_shape_vec(vec![1, 1], vec![1.0]).unwrap();
    a.backward(&g).unwrap();
    b.backward(&g).unwrap();
    // Both end with the mask's gradient (the add-one passes it through).
    assert_eq!(
        a.weight.grad().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![1.0, 0.0]
    );
    assert_eq!(
        b.weight.grad().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![1.0, 0.0]
    );
    a.weight.bake();
    assert_eq!(
        a.weight.value().iter().copied().collect::<Vec<_>>(),
        vec![4.0, 1.0]
    );
}
