//! Stacked parametrizations: order of application, gradients, projection and baking.

use compress_core::{CoreError, Param, Parametrization, Result, TensorExt};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// Multiplies by a fixed 0/1 mask.
#[derive(Debug, Clone)]
struct Mask(ArrayD<f64>);

impl Parametrization<f64> for Mask {
    fn name(&self) -> &'static str {
        "mask"
    }
    fn validate(&self, shape: &[usize]) -> Result<()> {
        if shape != self.0.shape() {
            return Err(CoreError::shape("mask", self.0.shape(), shape));
        }
        Ok(())
    }
    fn forward(&self, w: &ArrayD<f64>) -> ArrayD<f64> {
        w * &self.0
    }
    fn backward(&self, _: &ArrayD<f64>, g: ArrayD<f64>) -> ArrayD<f64> {
        g * &self.0
    }
    fn project(&self, stored: &mut ArrayD<f64>) {
        *stored *= &self.0;
    }
}

/// Squares its input (a non-linear map, so the backward must see the right input).
#[derive(Debug, Clone)]
struct Square;

impl Parametrization<f64> for Square {
    fn name(&self) -> &'static str {
        "square"
    }
    fn forward(&self, w: &ArrayD<f64>) -> ArrayD<f64> {
        w.mapv(|x| x * x)
    }
    fn backward(&self, input: &ArrayD<f64>, g: ArrayD<f64>) -> ArrayD<f64> {
        g * &input.mapv(|x| 2.0 * x)
    }
}

fn arr(v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
}

#[test]
fn mismatched_parametrization_is_rejected() {
    let mut p = Param::new(arr(&[1.0, 2.0]));
    let err = p
        .push_parametrization(Box::new(Mask(arr(&[1.0]))))
        .unwrap_err();
    assert!(matches!(err, CoreError::ShapeMismatch { .. }));
    assert!(p.parametrizations().is_empty());
}

#[test]
fn bake_makes_effective_permanent_and_find_downcasts() {
    let mut p = Param::new(arr(&[1.0, -2.0, 3.0]));
    p.push_parametrization(Box::new(Square)).unwrap();
    assert!(p.find_parametrization::<Square>().is_some());
    assert!(p.find_parametrization::<Mask>().is_none());
    p.bake();
    assert_eq!(p.value(), &arr(&[1.0, 4.0, 9.0]));
    assert!(p.parametrizations().is_empty());
}

#[test]
fn update_projects_after_the_step() {
    let mut p = Param::new(arr(&[1.0, 1.0]));
    p.push_parametrization(Box::new(Mask(arr(&[1.0, 0.0]))))
        .unwrap();
    assert_eq!(
        p.value(),
        &arr(&[1.0, 0.0]),
        "attaching projects immediately"
    );
    p.accumulate_grad(arr(&[1.0, 1.0])).unwrap();
    // A step that would move the masked weight (e.g. weight decay or stale momentum).
    p.update(|w, _| w.mapv_inplace(|x| x + 5.0));
    assert_eq!(p.value(), &arr(&[6.0, 0.0]));
    assert_eq!(p.effective().count_nonzero(), 1);
}

proptest! {
    /// Mask then square: effective = (m w)^2 and d/dw = g * 2 (m w) * m. Pushing in the
    /// other order gives m w^2 with gradient g * m * 2 w.
    #[test]
    fn stacked_order_defines_forward_and_backward(
        w in proptest::collection::vec(-3.0f64..3.0, 1..16),
        seed in any::<u64>(),
        g in -2.0f64..2.0,
    ) {
        let n = w.len();
        let m: Vec<f64> = (0..n).map(|i| ((seed >> (i % 64)) & 1) as f64).collect();
        let (w, m) = (arr(&w), arr(&m));

        let mut a = Param::new(w.clone());
        a.push_parametrization(Box::new(Mask(m.clone()))).unwrap();
        a.push_parametrization(Box::new(Square)).unwrap();
        let mw = &w * &m;
        prop_assert_eq!(a.effective().into_owned(), mw.mapv(|x| x * x));
        a.accumulate_grad(ArrayD::from_elem(IxDyn(&[n]), g)).unwrap();
        let expect = mw.mapv(|x| 2.0 * x * g) * &m;
        prop_assert_eq!(a.grad().unwrap(), &expect);

        let mut b = Param::new(w.clone());
        b.push_parametrization(Box::new(Square)).unwrap();
        b.push_parametrization(Box::new(Mask(m.clone()))).unwrap();
        // Square sees the raw stored value; mask projection zeroed masked entries on attach.
        let stored = b.value().clone();
        prop_assert_eq!(b.effective().into_owned(), stored.mapv(|x| x * x) * &m);
        b.accumulate_grad(ArrayD::from_elem(IxDyn(&[n]), g)).unwrap();
        let expect_b = stored.mapv(|x| 2.0 * x * g) * &m;
        prop_assert_eq!(b.grad().unwrap(), &expect_b);

        // Gradients accumulate across calls.
        b.accumulate_grad(ArrayD::from_elem(IxDyn(&[n]), g)).unwrap();
        prop_assert_eq!(b.grad().unwrap(), &(&expect_b * 2.0));
        b.zero_grad();
        prop_assert_eq!(b.grad().unwrap().count_nonzero(), 0);
    }

    #[test]
    fn wrong_grad_shape_is_an_error(n in 1usize..8) {
        let mut p = Param::new(ArrayD::<f64>::zeros(IxDyn(&[n])));
        let err = p.accumulate_grad(ArrayD::zeros(IxDyn(&[n + 1]))).unwrap_err();
        let is_shape = matches!(err, CoreError::ShapeMismatch { .. });
        prop_assert!(is_shape);
    }

    #[test]
    fn tensor_stats_agree(v in proptest::collection::vec(-5.0f64..5.0, 0..64)) {
        let a = arr(&v);
        let nz = v.iter().filter(|&&x| x != 0.0).count();
        prop_assert_eq!(a.count_nonzero(), nz);
        let expected = if v.is_empty() { 0.0 } else { 1.0 - nz as f64 / v.len() as f64 };
        prop_assert!((a.sparsity() - expected).abs() < 1e-12);
        prop_assert!((a.l1_norm() - v.iter().map(|x| x.abs()).sum::<f64>()).abs() < 1e-9);
        prop_assert!(a.check_finite("t").is_ok());
    }
}

#[test]
fn check_finite_names_path_and_index() {
    let a = arr(&[0.0, f64::NAN]);
    let err = a.check_finite("enc.weight").unwrap_err();
    assert!(matches!(err, CoreError::NonFinite { ref path, index: 1, .. } if path == "enc.weight"));
}

#[test]
fn version_changes_on_every_mutation_and_only_then() {
    let mut p = Param::new(ArrayD::<f64>::zeros(IxDyn(&[2, 2])));
    let mut seen = vec![p.version()];
    let mut check = |p: &Param<f64>, what: &str| {
        assert!(!seen.contains(&p.version()), "{what} kept an old version");
        seen.push(p.version());
    };
    p.value_mut()[[0, 0]] = 1.0;
    check(&p, "value_mut");
    p.set_value(ArrayD::ones(IxDyn(&[2, 2]))).unwrap();
    check(&p, "set_value");
    let mask = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0, 0.0, 1.0, 1.0]).unwrap();
    p.push_parametrization(Box::new(Mask(mask))).unwrap();
    check(&p, "push_parametrization");
    p.accumulate_grad(ArrayD::ones(IxDyn(&[2, 2]))).unwrap();
    check(&p, "accumulate_grad");
    p.update(|w, g| *w -= &(g * 0.1));
    check(&p, "update");
    let _ = p.parametrizations_mut();
    check(&p, "parametrizations_mut");
    let _ = p.find_parametrization_mut::<Mask>();
    check(&p, "find_parametrization_mut");
    p.bake();
    check(&p, "bake");
    p.remove_parametrizations::<Mask>();
    check(&p, "remove_parametrizations");
    p.reset(ArrayD::zeros(IxDyn(&[3])));
    check(&p, "reset");
    // Reading and clearing the gradient leave it alone; a clone shares it (same value), and
    // a fresh parameter never reuses one.
    let v = p.version();
    let _ = (p.value(), p.effective(), p.grad());
    p.zero_grad();
    assert_eq!(p.version(), v);
    let mut c = p.clone();
    assert_eq!(c.version(), v);
    c.value_mut().fill(2.0);
    assert_ne!(c.version(), v);
    assert_eq!(p.version(), v);
    check(&Param::new(ArrayD::<f64>::zeros(IxDyn(&[1]))), "new");
}
