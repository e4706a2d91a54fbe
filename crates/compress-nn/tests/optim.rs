//! Optimizers on a quadratic, and learning-rate schedules.

use compress_core::{Module, Param, ParamDict, ParamKind, ParamPath};
use compress_nn::{Adam, LrSchedule, Optimizer, Sgd};
use ndarray::ArrayD;

/// `f(w) = 0.5 * sum(a_i (w_i - t_i)^2)`; sets the gradient and returns `f`.
fn quadratic(m: &mut ParamDict<f64>) -> f64 {
    let a = [1.0, 4.0, 0.5, 2.0];
    let t = [1.0, -2.0, 3.0, 0.5];
    let mut f = 0.0;
    m.zero_grad();
    m.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f64>| {
            if p.kind() == ParamKind::Buffer {
                return Ok(());
            }
            let w = p.value().clone();
            let g = ArrayD::from_shape_fn(w.raw_dim(), |i| a[i[0]] * (w[[i[0]]] - t[i[0]]));
            f += w
                .iter()
                .enumerate()
                .map(|(i, v)| 0.5 * a[i] * (v - t[i]).powi(2))
                .sum::<f64>();
            p.accumulate_grad(g)
        },
    )
    .unwrap();
    f
}

fn model() -> ParamDict<f64> {
    let mut m = ParamDict::new();
    m.insert("w", Param::new(ArrayD::zeros(vec![4])));
    m.insert(
        "b",
        Param::with_kind(ArrayD::zeros(vec![4]), ParamKind::Bias),
    );
    m.insert(
        "stat",
        Param::with_kind(ArrayD::from_elem(vec![4], 7.0), ParamKind::Buffer),
    );
    m
}

fn run(opt: &mut dyn Optimizer<f64>, steps: usize) -> (f64, f64) {
    let mut m = model();
    let f0 = quadratic(&mut m);
    let mut f = f0;
    for _ in 0..steps {
        opt.step(&mut m).unwrap();
        f = quadratic(&mut m);
    }
    assert!(
        m.get("stat").unwrap().value().iter().all(|&v| v == 7.0),
        "buffers untouched"
    );
    (f0, f)
}

#[test]
fn sgd_variants_decrease_the_quadratic() {
    let (f0, f) = run(&mut Sgd::new(0.1), 100);
    assert!(f < 1e-3 * f0, "{f0} -> {f}");
    let (f0, f) = run(&mut Sgd::new(0.05).momentum(0.9).weight_decay(1e-3), 200);
    assert!(f < 1e-2 * f0, "{f0} -> {f}");
    let (f0, f) = run(&mut Sgd::new(0.05).momentum(0.9).nesterov(true), 200);
    assert!(f < 1e-3 * f0, "{f0} -> {f}");
}

#[test]
fn adam_and_adamw_decrease_the_quadratic() {
    let (f0, f) = run(&mut Adam::new(0.1), 300);
    assert!(f < 1e-3 * f0, "{f0} -> {f}");
    let (f0, f) = run(&mut Adam::new(0.1).weight_decay(1e-3).decoupled(true), 300);
    assert!(f < 1e-2 * f0, "{f0} -> {f}");
}

#[test]
fn weight_decay_pulls_weights_not_biases() {
    let mut m = model();
    m.get_mut("w").unwrap().value_mut().fill(1.0);
    m.get_mut("b").unwrap().value_mut().fill(1.0);
    m.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f64>| p.accumulate_grad(p.zeros_like()),
    )
    .unwrap();
    Sgd::new(0.1).weight_decay(0.5).step(&mut m).unwrap();
    assert!((m.get("w").unwrap().value()[0] - 0.95).abs() < 1e-12);
    assert_eq!(m.get("b").unwrap().value()[0], 1.0);
}

#[test]
fn schedules() {
    let s = LrSchedule::Step {
        step_size: 2,
        gamma: 0.5,
    };
    assert_eq!(s.lr_at(1.0, 3, 10), 0.5);
    assert_eq!(s.lr_at(1.0, 4, 10), 0.25);
    let c = LrSchedule::Cosine { min_lr: 0.1 };
    assert!((c.lr_at(1.0, 0, 10) - 1.0).abs() < 1e-12);
    assert!(c.lr_at(1.0, 9, 10) < 0.15);
    assert_eq!(LrSchedule::Constant.lr_at(0.3, 7, 10), 0.3);
}
