//! The test parametrizations stack, train and bake as a real technique would.

use compress_core::{Param, Parametrization};
use compress_testkit::{Affine, FixedMask};
use ndarray::{ArrayD, array};

#[test]
fn mask_survives_an_update_and_composes_with_affine() {
    let mut p = Param::new(array![[1.0f32, -2.0], [3.0, 4.0]].into_dyn());
    let mask = FixedMask::<f32>::from_bools(&[2, 2], &[true, false, false, true]);
    assert_eq!(mask.mask(), &array![[1.0, 0.0], [0.0, 1.0]].into_dyn());
    p.push_parametrization(Box::new(mask)).unwrap();
    p.push_parametrization(Box::new(Affine::new(2.0, 1.0)))
        .unwrap();
    // 2 (w * m) + 1
    assert_eq!(
        p.effective().into_owned(),
        array![[3.0, 1.0], [1.0, 9.0]].into_dyn()
    );
    p.accumulate_grad(ArrayD::ones(vec![2, 2])).unwrap();
    assert_eq!(
        p.grad().unwrap(),
        &array![[2.0, 0.0], [0.0, 2.0]].into_dyn()
    );
    // The update writes the masked entries; project re-zeroes them.
    p.update(|v, _| *v += 1.0);
    assert_eq!(p.value(), &array![[2.0, 0.0], [0.0, 5.0]].into_dyn());
    p.bake();
    assert_eq!(p.value(), &array![[5.0, 1.0], [1.0, 11.0]].into_dyn());
    assert!(p.parametrizations().is_empty());
}

#[test]
fn names_and_downcasts() {
    let m: Box<dyn Parametrization<f64>> = Box::new(FixedMask::new(ArrayD::ones(vec![3])));
    assert_eq!(m.name(), "mask");
    assert!(m.as_any().downcast_ref::<FixedMask<f64>>().is_some());
    let a: Box<dyn Parametrization<f64>> = Box::new(Affine::scale(0.0));
    assert_eq!(a.name(), "affine");
    assert_eq!(
        a.clone_box().forward(&array![1.5].into_dyn()),
        array![0.0].into_dyn()
    );
}
