//! Finite-difference gradient checks (f64) for every layer and loss.

use compress_core::{Layer, Mode};
use compress_nn::loss::{mse, softmax_cross_entropy};
use compress_nn::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten, GlobalAvgPool,
    HardSwish, Linear, MaxPool2d, RandomShift, ReLU, ReLU6, Sequential, Sigmoid, Tanh,
};
use compress_testkit::{GradCheck, assert_grad_close, fd_grad, randomize_params, uniform_tensor};
use ndarray::{Array2, ArrayD};
use rand::{SeedableRng, rngs::StdRng};

const EPS: f64 = 1e-6;
/// At most this many elements of each tensor are checked (chosen at random).
const SAMPLES: usize = 40;
/// Elementwise criterion: `|analytic - numeric| <= ATOL + RTOL * max(|analytic|, |numeric|)`.
const ATOL: f64 = 1e-6;
const RTOL: f64 = 1e-5;

/// Checks `d sum(out * R) / d x` and `/ d param` (stored values, every non-buffer
/// parameter) against central differences, with `fwd` producing the output.
pub(crate) fn check_with<L: Layer<f64> + ?Sized>(
    layer: &mut L,
    x: &ArrayD<f64>,
    seed: u64,
    fwd: &mut dyn FnMut(&mut L, &ArrayD<f64>) -> ArrayD<f64>,
) {
    let check = GradCheck::new().eps(EPS).seed(seed).samples(SAMPLES);
    check.layer_with(layer, x, fwd).assert_close(ATOL, RTOL);
}

/// [`check_with`] using a plain training-mode forward.
pub(crate) fn check<L: Layer<f64> + ?Sized>(layer: &mut L, x: &ArrayD<f64>, seed: u64) {
    check_with(layer, x, seed, &mut |l: &mut L, x: &ArrayD<f64>| {
        l.forward(x, Mode::Train).unwrap()
    });
}

/// Random input of `shape` in `[-2, 2]`, then the check.
fn check_shape<L: Layer<f64> + ?Sized>(layer: &mut L, shape: &[usize], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let x = uniform_tensor::<f64, _>(shape, 2.0, &mut rng);
    check(layer, &x, seed);
}

#[test]
fn linear() {
    let mut rng = StdRng::seed_from_u64(1);
    check_shape(&mut Linear::new(5, 4, true, &mut rng), &[3, 5], 1);
    check_shape(&mut Linear::new(3, 2, false, &mut rng), &[4, 3], 2);
}

fn conv(cfg: Conv2dConfig, seed: u64) -> Conv2d<f64> {
    Conv2d::new(cfg, &mut StdRng::seed_from_u64(seed)).unwrap()
}

#[test]
fn conv2d_general_paths() {
    let cases = [
        (Conv2dConfig::new(3, 4, 3).padding(1), vec![2, 3, 5, 6]),
        (
            Conv2dConfig::new(3, 4, 3).stride(2).padding(1),
            vec![2, 3, 7, 6],
        ),
        (
            Conv2dConfig::new(2, 3, 3)
                .dilation(2)
                .padding(2)
                .bias(false),
            vec![2, 2, 6, 5],
        ),
        (
            Conv2dConfig::new(4, 6, 3).groups(2).padding(1),
            vec![2, 4, 4, 5],
        ),
        (
            Conv2dConfig::new(2, 3, (2, 3))
                .stride((2, 1))
                .padding((1, 0)),
            vec![2, 2, 5, 6],
        ),
        (Conv2dConfig::new(3, 2, 1).stride(2), vec![2, 3, 5, 5]),
    ];
    for (i, (cfg, shape)) in cases.into_iter().enumerate() {
        check_shape(&mut conv(cfg, i as u64), &shape, 10 + i as u64);
    }
}

#[test]
fn conv2d_pointwise_and_depthwise() {
    let cases = [
        (Conv2dConfig::new(4, 3, 1), vec![2, 4, 3, 5]),
        (
            Conv2dConfig::new(4, 6, 1).groups(2).bias(false),
            vec![2, 4, 3, 3],
        ),
        (
            Conv2dConfig::new(3, 3, 3).groups(3).padding(1),
            vec![2, 3, 5, 6],
        ),
        (Conv2dConfig::new(3, 3, 3).groups(3), vec![2, 3, 5, 6]),
        (
            Conv2dConfig::new(2, 4, 3).groups(2).stride(2).padding(1),
            vec![2, 2, 7, 5],
        ),
        (
            Conv2dConfig::new(2, 2, 5)
                .groups(2)
                .padding(2)
                .dilation((1, 2)),
            vec![1, 2, 6, 9],
        ),
        (
            Conv2dConfig::new(2, 2, 3).groups(2).padding(2).bias(false),
            vec![2, 2, 3, 4],
        ),
    ];
    for (i, (cfg, shape)) in cases.into_iter().enumerate() {
        check_shape(&mut conv(cfg, i as u64), &shape, 20 + i as u64);
    }
}

#[test]
fn activations() {
    let shape = [3, 7];
    check_shape(&mut ReLU::new(), &shape, 30);
    check_shape(&mut ReLU6::new(), &[3, 4], 31);
    let mut rng = StdRng::seed_from_u64(32);
    // Spread over the kinks of ReLU6 and HardSwish.
    let x = uniform_tensor::<f64, _>(&[4, 8], 8.0, &mut rng);
    check(&mut ReLU6::new(), &x, 33);
    check(&mut HardSwish::new(), &x, 34);
    check(&mut Tanh::new(), &x, 35);
    check(&mut Sigmoid::new(), &x, 36);
}

#[test]
fn pools() {
    check_shape(&mut MaxPool2d::new(2), &[2, 3, 4, 6], 40);
    check_shape(
        &mut MaxPool2d::new(3).stride(2).padding(1),
        &[2, 2, 5, 5],
        41,
    );
    check_shape(&mut AvgPool2d::new(2), &[2, 3, 4, 6], 42);
    check_shape(
        &mut AvgPool2d::new((3, 2)).stride(2).padding(1),
        &[2, 2, 5, 5],
        43,
    );
    check_shape(&mut GlobalAvgPool::new(), &[2, 3, 4, 5], 44);
}

#[test]
fn batch_norm_train_mode() {
    let mut bn1 = BatchNorm1d::new(4);
    randomize_params(&mut bn1, 50, 1.0);
    check_shape(&mut bn1, &[6, 4], 51);
    let mut bn1l = BatchNorm1d::new(3);
    randomize_params(&mut bn1l, 52, 1.0);
    check_shape(&mut bn1l, &[4, 3, 5], 53);
    let mut bn2 = BatchNorm2d::new(2);
    randomize_params(&mut bn2, 54, 1.0);
    check_shape(&mut bn2, &[3, 2, 4, 3], 55);
}

#[test]
fn dropout_with_fixed_mask() {
    let mut d = Dropout::new(0.3, 9).unwrap();
    let mut rng = StdRng::seed_from_u64(60);
    let x = uniform_tensor::<f64, _>(&[5, 8], 2.0, &mut rng);
    check_with(
        &mut d,
        &x,
        61,
        &mut |l: &mut Dropout<f64>, x: &ArrayD<f64>| {
            l.reseed(123);
            l.forward(x, Mode::Train).unwrap()
        },
    );
}

#[test]
fn random_shift_with_fixed_shifts() {
    let mut jitter = RandomShift::new(2, 5, 4, 2, 9).unwrap();
    let mut rng = StdRng::seed_from_u64(62);
    for shape in [&[3, 2, 5, 4][..], &[3, 40]] {
        let x = uniform_tensor::<f64, _>(shape, 2.0, &mut rng);
        check_with(
            &mut jitter,
            &x,
            63,
            &mut |l: &mut RandomShift<f64>, x: &ArrayD<f64>| {
                l.reseed(321);
                l.forward(x, Mode::Train).unwrap()
            },
        );
    }
}

#[test]
fn flatten_and_sequential() {
    check_shape(&mut Flatten::new(), &[2, 3, 2, 2], 70);
    let mut rng = StdRng::seed_from_u64(71);
    let mut net = Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 3, 3).padding(1), &mut rng).unwrap())
        .with(BatchNorm2d::new(3))
        .with(Tanh::new())
        .with(AvgPool2d::new(2))
        .with(Flatten::new())
        .with(Linear::new(3 * 2 * 2, 4, true, &mut rng))
        .with(Sigmoid::new())
        .with(Linear::new(4, 3, true, &mut rng));
    randomize_params(&mut net, 72, 1.0);
    check_shape(&mut net, &[3, 2, 4, 4], 73);
}

/// A loss: value and gradient with respect to its input.
type LossFn<'a> = &'a dyn Fn(&Array2<f64>) -> (f64, Array2<f64>);

fn loss_check(f: LossFn<'_>, x: &Array2<f64>) {
    let numeric = fd_grad(|x| f(x).0, x, EPS);
    assert_grad_close(&f(x).1, &numeric, ATOL, RTOL);
}

#[test]
fn losses() {
    let mut rng = StdRng::seed_from_u64(80);
    let logits = uniform_tensor::<f64, _>(&[5, 4], 3.0, &mut rng)
        .into_dimensionality()
        .unwrap();
    let labels = [0, 3, 1, 1, 2];
    loss_check(&|x| softmax_cross_entropy(x, &labels).unwrap(), &logits);
    // Large logits stay finite and differentiable.
    let big = logits.mapv(|v| v * 300.0);
    let (l, g) = softmax_cross_entropy(&big, &labels).unwrap();
    assert!(l.is_finite() && g.iter().all(|v| v.is_finite()));
    let target: Array2<f64> = uniform_tensor::<f64, _>(&[5, 4], 1.0, &mut rng)
        .into_dimensionality()
        .unwrap();
    loss_check(&|x| mse(x, &target).unwrap(), &logits);
}
