//! Shared fixtures: small seeded networks and a parameter-gradient checker.

use compress_core::{Layer, Mode, Param, ParamPath};
use compress_dynamic::EarlyExitNet;
use compress_nn::{Linear, ReLU, Sequential};
use compress_testkit::seeded_tensor;
use ndarray::ArrayD;
use rand::{SeedableRng, rngs::StdRng};

/// A stage `Linear(i, o) + ReLU`.
pub(crate) fn block(i: usize, o: usize, rng: &mut StdRng) -> Sequential<f64> {
    Sequential::new()
        .with(Linear::new(i, o, true, rng))
        .with(ReLU::new())
}

/// A 3-exit network on `[d]` inputs with `c` classes (untrained, seeded).
pub(crate) fn three_exit_net(d: usize, c: usize, seed: u64) -> EarlyExitNet<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    EarlyExitNet::new(&[d])
        .with_stage(block(d, 6, &mut rng))
        .with_exit(Linear::new(6, c, true, &mut rng))
        .with_stage(block(6, 12, &mut rng))
        .with_stage(block(12, 12, &mut rng))
        .with_exit(Linear::new(12, c, true, &mut rng))
        .with_stage(block(12, 16, &mut rng))
        .with_exit(Linear::new(16, c, true, &mut rng))
}

/// Largest relative error between backward's parameter gradients of `sum(forward(x) * r)`
/// and central finite differences, over every parameter that received a gradient.
pub(crate) fn param_grad_error(layer: &mut dyn Layer<f64>, x: &ArrayD<f64>) -> f64 {
    let y = layer.forward(x, Mode::Train).unwrap();
    let r = seeded_tensor::<f64>(y.shape(), 5);
    layer.zero_grad();
    layer.backward(&r).unwrap();
    let mut grads: Vec<(String, ArrayD<f64>)> = Vec::new();
    layer.visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, q: &Param<f64>| {
            if let Some(g) = q.grad() {
                grads.push((p.to_string(), g.clone()));
            }
        },
    );
    assert!(!grads.is_empty(), "no parameter received a gradient");
    let base = layer.stored_dict();
    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for (path, g) in &grads {
        let pos = base.iter().position(|(k, _)| k == path).unwrap();
        for j in 0..g.len() {
            let mut f = |delta: f64| {
                let mut st = base.clone();
                st[pos].1.as_slice_mut().unwrap()[j] += delta;
                layer.load_state(&st).unwrap();
                (layer.forward(x, Mode::Train).unwrap() * &r).sum()
            };
            let numeric = (f(eps) - f(-eps)) / (2.0 * eps);
            let a = g.as_slice().unwrap()[j];
            worst = worst.max((a - numeric).abs() / numeric.abs().max(1.0));
        }
    }
    layer.load_state(&base).unwrap();
    worst
}
