//! The gradient checker on a layer with known, optionally wrong, gradients.

use compress_core::{
    Cost, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use compress_testkit::{GradCheck, Wrt, assert_grad_close, fd_grad, seeded_tensor};
use ndarray::{Array2, ArrayD, ArrayRef, Axis, IxDyn};
use proptest::prelude::*;

/// Which gradient the test layer gets wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    None,
    InputTimesTwo,
    WeightTimesTwo,
    NoShiftGrad,
}

/// `y[b, j] = w[j] * x[b, j]^2 + s[j]` on `[batch, d]` inputs, with a buffer that counts
/// training-mode forwards (it must never be perturbed or checked).
#[derive(Debug)]
struct Quad {
    w: Param<f64>,
    s: Param<f64>,
    calls: Param<f64>,
    x: Option<ArrayD<f64>>,
    bug: Bug,
}

impl Quad {
    fn new(d: usize, bug: Bug) -> Self {
        Self {
            w: Param::new(seeded_tensor(&[d], 1)),
            s: Param::with_kind(seeded_tensor(&[d], 2), ParamKind::Bias),
            calls: Param::with_kind(ArrayD::zeros(IxDyn(&[1])), ParamKind::Buffer),
            x: None,
            bug,
        }
    }
}

impl Module<f64> for Quad {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f64>) {
        path.scoped("w", |p| v.visit(p, &self.w));
        path.scoped("s", |p| v.visit(p, &self.s));
        path.scoped("calls", |p| v.visit(p, &self.calls));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f64>) -> Result<()> {
        path.scoped("w", |p| v.visit_mut(p, &mut self.w))?;
        path.scoped("s", |p| v.visit_mut(p, &mut self.s))?;
        path.scoped("calls", |p| v.visit_mut(p, &mut self.calls))
    }
}

impl Layer<f64> for Quad {
    fn name(&self) -> &'static str {
        "Quad"
    }
    fn forward(&mut self, x: &ArrayRef<f64, IxDyn>, mode: Mode) -> Result<ArrayD<f64>> {
        if mode == Mode::Train {
            self.x = Some(x.to_owned());
            self.calls.value_mut()[0] += 1.0;
        }
        Ok(x.mapv(|v| v * v) * &*self.w.effective() + &*self.s.effective())
    }
    fn backward(&mut self, g: &ArrayRef<f64, IxDyn>) -> Result<ArrayD<f64>> {
        let x = self.x.as_ref().expect("forward first");
        let g = g.to_owned();
        let k = |b: Bug| if self.bug == b { 2.0 } else { 1.0 };
        let dw = (&g * &x.mapv(|v| v * v)).sum_axis(Axis(0)) * k(Bug::WeightTimesTwo);
        self.w.accumulate_grad(dw)?;
        if self.bug != Bug::NoShiftGrad {
            self.s.accumulate_grad(g.sum_axis(Axis(0)))?;
        }
        Ok(&g * &x.mapv(|v| 2.0 * v) * &*self.w.effective() * k(Bug::InputTimesTwo))
    }
    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}

fn x() -> ArrayD<f64> {
    seeded_tensor(&[4, 5], 3)
}

#[test]
fn correct_gradients_pass_and_every_element_is_checked() {
    let mut q = Quad::new(5, Bug::None);
    let report = GradCheck::new().layer(&mut q, &x());
    assert_eq!(report.layer, "Quad");
    assert_eq!(report.params, ["w", "s"]);
    assert!(report.skipped.is_empty());
    assert_eq!(report.samples.len(), 20 + 5 + 5);
    assert!(report.max_error() < 1e-8, "{report:?}");
    report.assert_close(1e-8, 1e-7);
    // Stored values are restored exactly; the buffer is never perturbed.
    assert_eq!(q.w.value(), &seeded_tensor::<f64>(&[5], 1));
    assert_eq!(q.s.value(), &seeded_tensor::<f64>(&[5], 2));
}

#[test]
fn a_wrong_input_gradient_is_caught_and_attributed() {
    let report = GradCheck::new().layer(&mut Quad::new(5, Bug::InputTimesTwo), &x());
    assert!(report.input_error() > 0.1);
    assert!(report.param_error() < 1e-8);
}

#[test]
fn a_wrong_parameter_gradient_is_caught_and_attributed() {
    let report = GradCheck::new().layer(&mut Quad::new(5, Bug::WeightTimesTwo), &x());
    assert!(report.input_error() < 1e-8);
    let worst = report
        .samples
        .iter()
        .max_by(|a, b| a.error().total_cmp(&b.error()))
        .unwrap();
    assert_eq!(worst.wrt, Wrt::Param("w".into()));
    assert!(worst.error() > 0.1);
}

#[test]
#[should_panic(expected = "Quad: d/d `w`")]
fn assert_close_names_the_tensor() {
    GradCheck::new()
        .layer(&mut Quad::new(5, Bug::WeightTimesTwo), &x())
        .assert_close(1e-6, 1e-5);
}

#[test]
#[should_panic(expected = "no gradient for [\"s\"]")]
fn a_missing_gradient_panics_by_default() {
    GradCheck::new().layer(&mut Quad::new(5, Bug::NoShiftGrad), &x());
}

#[test]
fn missing_gradients_can_be_skipped() {
    let report = GradCheck::new()
        .allow_missing_grads()
        .layer(&mut Quad::new(5, Bug::NoShiftGrad), &x());
    assert_eq!(report.params, ["w"]);
    assert_eq!(report.skipped, ["s"]);
    assert!(report.max_error() < 1e-8);
}

#[test]
fn sampling_checks_distinct_elements_and_small_tensors_in_full() {
    let mut q = Quad::new(5, Bug::None);
    let report = GradCheck::new().samples(7).seed(4).layer(&mut q, &x());
    let inputs: Vec<usize> = report
        .samples
        .iter()
        .filter(|s| s.wrt == Wrt::Input)
        .map(|s| s.index)
        .collect();
    assert_eq!(inputs.len(), 7);
    assert!(inputs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(report.samples.len(), 7 + 5 + 5);
    let again = GradCheck::new().samples(7).seed(4).layer(&mut q, &x());
    assert_eq!(again, report);
}

#[test]
fn non_standard_layout_inputs_are_checked_in_logical_order() {
    let xt = seeded_tensor::<f64>(&[5, 4], 3).reversed_axes();
    assert!(xt.as_slice().is_none());
    let report = GradCheck::new().layer(&mut Quad::new(5, Bug::None), &xt);
    assert!(report.max_error() < 1e-8);
}

#[test]
fn params_checks_any_objective() {
    let mut q = Quad::new(3, Bug::None);
    let x = seeded_tensor::<f64>(&[2, 3], 5);
    // Objective: mean of the outputs; its gradient is backward of 1 / len.
    let y = q.forward(&x, Mode::Train).unwrap();
    q.zero_grad();
    q.backward(&ArrayD::from_elem(y.raw_dim(), 1.0 / y.len() as f64))
        .unwrap();
    let report = GradCheck::new().params(&mut q, &mut |q: &mut Quad| {
        q.forward(&x, Mode::Eval).unwrap().mean().unwrap()
    });
    assert_eq!(report.params, ["w", "s"]);
    assert!(report.max_error() < 1e-9);
}

#[test]
#[should_panic(expected = "element (1, 0)")]
fn assert_grad_close_names_the_element() {
    let a = Array2::from_shape_vec((2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut b = a.clone();
    b[[1, 0]] += 1e-3;
    assert_grad_close(&a, &b, 1e-6, 1e-6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The central difference of a quadratic form is exact up to rounding, whatever the
    /// layout of the point.
    #[test]
    fn fd_grad_of_a_quadratic_form(
        a in proptest::collection::vec(-2.0f64..2.0, 9),
        x in proptest::collection::vec(-3.0f64..3.0, 6),
        transpose: bool,
    ) {
        let a = Array2::from_shape_vec((3, 3), a).unwrap();
        let mut x = Array2::from_shape_vec((3, 2), x).unwrap();
        if transpose {
            x = x.reversed_axes().as_standard_layout().into_owned().reversed_axes();
        }
        // f(X) = sum(X^T A X); df/dX = (A + A^T) X.
        let f = |x: &Array2<f64>| (x.t().dot(&a.dot(x))).sum();
        let analytic = (&a + &a.t()).dot(&x).dot(&Array2::<f64>::ones((2, 2)));
        let numeric = fd_grad(f, &x, 1e-5);
        prop_assert_eq!(numeric.shape(), x.shape());
        assert_grad_close(&analytic, &numeric, 1e-7, 1e-7);
    }
}
