//! Shared helpers: finite-difference gradient checks of inputs and parameters.

use compress_core::{Layer, Mode, Param, ParamPath, Result};
use compress_testkit::seeded_tensor;
use ndarray::ArrayD;

fn objective<L: Layer<f64> + ?Sized>(layer: &mut L, x: &ArrayD<f64>, r: &ArrayD<f64>) -> f64 {
    (layer.forward(x, Mode::Train).expect("forward") * r).sum()
}

fn nudge<L: Layer<f64> + ?Sized>(layer: &mut L, target: usize, flat: usize, delta: f64) {
    let mut k = 0;
    layer
        .visit_mut(&mut ParamPath::root(), &mut |_: &ParamPath,
                                                 p: &mut Param<f64>|
         -> Result<()> {
            if k == target {
                p.value_mut().as_slice_mut().expect("standard layout")[flat] += delta;
            }
            k += 1;
            Ok(())
        })
        .expect("visit");
}

/// Largest relative difference between analytic and central-difference gradients of
/// `sum(forward(x) * r)`, over every input element and every parameter element
/// (parameters of kind Buffer excluded).
pub(crate) fn grad_error<L: Layer<f64> + ?Sized>(layer: &mut L, x: &ArrayD<f64>) -> f64 {
    let eps = 1e-6;
    let y = layer.forward(x, Mode::Train).expect("forward");
    let r = seeded_tensor::<f64>(y.shape(), 99);
    layer.zero_grad();
    let dx = layer.backward(&r).expect("backward");
    assert_eq!(dx.shape(), x.shape(), "input gradient shape");
    let dx: Vec<f64> = dx.iter().copied().collect();
    let mut grads: Vec<Option<Vec<f64>>> = Vec::new();
    let mut kinds = Vec::new();
    layer.visit(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &Param<f64>| {
            grads.push(p.grad().map(|g| g.iter().copied().collect()));
            kinds.push(p.kind());
        },
    );
    let mut worst: f64 = 0.0;
    let mut xp = x.clone();
    for (i, &a) in dx.iter().enumerate() {
        let orig = xp.as_slice().expect("layout")[i];
        xp.as_slice_mut().expect("layout")[i] = orig + eps;
        let fp = objective(layer, &xp, &r);
        xp.as_slice_mut().expect("layout")[i] = orig - eps;
        let fm = objective(layer, &xp, &r);
        xp.as_slice_mut().expect("layout")[i] = orig;
        let num = (fp - fm) / (2.0 * eps);
        worst = worst.max((a - num).abs() / num.abs().max(1.0));
    }
    for (t, g) in grads.iter().enumerate() {
        if kinds[t] == compress_core::ParamKind::Buffer {
            continue;
        }
        let g = g
            .as_ref()
            .expect("every trainable parameter has a gradient");
        for (i, &a) in g.iter().enumerate() {
            nudge(layer, t, i, eps);
            let fp = objective(layer, x, &r);
            nudge(layer, t, i, -2.0 * eps);
            let fm = objective(layer, x, &r);
            nudge(layer, t, i, eps);
            let num = (fp - fm) / (2.0 * eps);
            worst = worst.max((a - num).abs() / num.abs().max(1.0));
        }
    }
    worst
}
