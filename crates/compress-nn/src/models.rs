//! Reference models used by the experiments, tests and benchmarks.

use compress_core::Float;
use rand::Rng;

use crate::{Linear, ReLU, Sequential};

/// A ReLU MLP with the given layer widths, e.g. `[64, 128, 64, 10]`
/// (`Linear(64,128), ReLU, Linear(128,64), ReLU, Linear(64,10)`).
///
/// # Panics
///
/// If fewer than two widths are given.
#[track_caller]
pub fn mlp<F: Float, R: Rng + ?Sized>(widths: &[usize], rng: &mut R) -> Sequential<F> {
    assert!(widths.len() >= 2, "an MLP needs input and output widths");
    let mut net = Sequential::new();
    for (i, w) in widths.windows(2).enumerate() {
        if i > 0 {
            net.push(ReLU::new());
        }
        net.push(Linear::new(w[0], w[1], true, rng));
    }
    net
}
