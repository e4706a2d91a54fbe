//! compress-arch: standard vs depthwise vs depthwise separable convolution, and the rank-64
//! factorization of a 1024x1024 matrix.

use std::hint::black_box;

use compress_arch::blocks::{DepthwiseSeparableConv, SeparableConfig};
use compress_arch::lowrank::{RankRule, SvdMethod, svd_exact, truncated_svd};
use compress_core::{Layer, Mode};
use compress_nn::{Conv2d, Conv2dConfig, Sequential};
use criterion::{BenchmarkId, Criterion, criterion_group};
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SHAPE: &str = "32x64x32x32";

fn input() -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(1);
    ArrayD::from_shape_simple_fn(IxDyn(&[32, 64, 32, 32]), || rng.random::<f32>() - 0.5)
}

fn convs(c: &mut Criterion) {
    let mut group = c.benchmark_group("arch");
    group.sample_size(20);
    let x = input();
    let mut rng = StdRng::seed_from_u64(0);
    let mut standard =
        Conv2d::<f32>::new(Conv2dConfig::new(64, 64, 3).padding(1), &mut rng).unwrap();
    group.bench_function(BenchmarkId::new("conv2d_standard", SHAPE), |b| {
        b.iter(|| standard.forward(black_box(&x), Mode::Eval).unwrap());
    });
    let dw_cfg = Conv2dConfig::new(64, 64, 3).padding(1).groups(64);
    let mut depthwise = Conv2d::<f32>::new(dw_cfg, &mut rng).unwrap();
    group.bench_function(BenchmarkId::new("depthwise3x3", SHAPE), |b| {
        b.iter(|| depthwise.forward(black_box(&x), Mode::Eval).unwrap());
    });
    // As the PyTorch peer: depthwise 3x3 then pointwise 1x1, both with bias.
    let mut separable = Sequential::<f32>::new()
        .with(Conv2d::<f32>::new(dw_cfg, &mut rng).unwrap())
        .with(Conv2d::<f32>::new(Conv2dConfig::new(64, 64, 1), &mut rng).unwrap());
    group.bench_function(BenchmarkId::new("depthwise_separable", SHAPE), |b| {
        b.iter(|| separable.forward(black_box(&x), Mode::Eval).unwrap());
    });
    // The full block: dw + BN + ReLU + pw + BN + ReLU.
    let mut block =
        DepthwiseSeparableConv::<f32>::new(SeparableConfig::new(64, 64, 3), &mut rng).unwrap();
    group.bench_function(BenchmarkId::new("depthwise_separable_block", SHAPE), |b| {
        b.iter(|| block.forward(black_box(&x), Mode::Eval).unwrap());
    });
    group.finish();
}

/// A 1024x1024 matrix with the slowly decaying spectrum `s_i = 1 / (i + 1)` and random
/// orthogonal singular vectors (optimal rank-64 relative error 0.0940).
fn power_law_matrix(n: usize) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut gaussian = || {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let g1 = Array2::from_shape_simple_fn((n, n), &mut gaussian);
    let g2 = Array2::from_shape_simple_fn((n, n), &mut gaussian);
    let u = svd_exact(g1.view(), "g1").unwrap().u;
    let v = svd_exact(g2.view(), "g2").unwrap().u;
    let s = Array1::from_shape_fn(n, |i| 1.0 / (i as f64 + 1.0));
    (&u * &s.view().insert_axis(Axis(0)))
        .dot(&v.t())
        .mapv(|x| x as f32)
}

fn svd(c: &mut Criterion) {
    let mut group = c.benchmark_group("arch");
    group.sample_size(10);
    let a = power_law_matrix(1024);
    let t = truncated_svd(a.view(), RankRule::Fixed(64), SvdMethod::Auto, "a").unwrap();
    let opt = svd_exact(a.view(), "a")
        .unwrap()
        .truncate(64)
        .relative_error();
    eprintln!(
        "arch/svd_rank64: relative error {:.5} (optimal {opt:.5})",
        t.relative_error()
    );
    group.bench_function(BenchmarkId::new("svd_rank64", "1024x1024"), |b| {
        b.iter(|| {
            truncated_svd(
                black_box(a.view()),
                RankRule::Fixed(64),
                SvdMethod::Auto,
                "a",
            )
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, convs, svd);
