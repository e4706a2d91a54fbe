//! Reference models used by the experiments, tests and benchmarks.

mod residual;

pub use residual::{ResidualBlock, ResidualMlp};

use compress_core::Float;
use rand::Rng;

use crate::{BatchNorm2d, Conv2d, Conv2dConfig, Flatten, Linear, MaxPool2d, ReLU, Sequential};

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

/// LeNet-300-100 (LeCun et al. 1998; the model of Han et al.'s pruning results):
/// `mlp(&[784, 300, 100, 10])` for flat 28x28 MNIST images.
pub fn lenet_300_100<F: Float, R: Rng + ?Sized>(rng: &mut R) -> Sequential<F> {
    mlp(&[784, 300, 100, 10], rng)
}

/// A small CNN for `in_channels x side x side` images:
/// `Conv(in, 16, 3, pad 1), BN, ReLU, [MaxPool 2 if side >= 16],
/// Conv(16, 32, 3, pad 1), BN, ReLU, MaxPool 2, Flatten, Linear(.., 64), ReLU, Linear(64, classes)`.
///
/// On the embedded 1x8x8 digits it reaches about 98% test accuracy in a few seconds; for
/// 28x28 MNIST the extra pooling keeps the classifier small (`32 * 7 * 7` inputs).
///
/// # Panics
///
/// If `in_channels` or `classes` is 0 or `side < 2`.
///
/// ```
/// use compress_core::Layer;
/// use rand::{SeedableRng, rngs::StdRng};
/// let net = compress_nn::models::small_cnn::<f32, _>(1, 8, 10, &mut StdRng::seed_from_u64(0));
/// assert_eq!(net.cost(&[1, 8, 8]).unwrap().output_shape, vec![10]);
/// ```
#[track_caller]
pub fn small_cnn<F: Float, R: Rng + ?Sized>(
    in_channels: usize,
    side: usize,
    classes: usize,
    rng: &mut R,
) -> Sequential<F> {
    assert!(
        in_channels > 0 && classes > 0 && side >= 2,
        "small_cnn needs in_channels > 0, classes > 0 and side >= 2, got {in_channels}, {classes}, {side}"
    );
    let conv = |i: usize, o: usize, rng: &mut R| {
        Conv2d::new(Conv2dConfig::new(i, o, 3).padding(1), rng)
            .unwrap_or_else(|e| unreachable!("a valid 3x3 config: {e}"))
    };
    let mut net = Sequential::new()
        .with(conv(in_channels, 16, rng))
        .with(BatchNorm2d::new(16))
        .with(ReLU::new());
    let mut s = side;
    if side >= 16 {
        net.push(MaxPool2d::new(2));
        s /= 2;
    }
    net.push(conv(16, 32, rng));
    net.push(BatchNorm2d::new(32));
    net.push(ReLU::new());
    net.push(MaxPool2d::new(2));
    s /= 2;
    net.push(Flatten::new());
    net.push(Linear::new(32 * s * s, 64, true, rng));
    net.push(ReLU::new());
    net.push(Linear::new(64, classes, true, rng));
    net
}
