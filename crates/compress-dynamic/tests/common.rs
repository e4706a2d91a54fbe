//! Shared fixtures: small seeded networks.

use compress_core::Float;
use compress_dynamic::EarlyExitNet;
use compress_nn::{Linear, ReLU, Sequential};
use rand::{SeedableRng, rngs::StdRng};

/// A stage `Linear(i, o) + ReLU`.
pub(crate) fn block<F: Float>(i: usize, o: usize, rng: &mut StdRng) -> Sequential<F> {
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
