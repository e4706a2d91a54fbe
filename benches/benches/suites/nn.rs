//! compress-nn: training epoch and convolution.

use std::hint::black_box;

use compress_benches::random_dataset;
use compress_core::Float;
use compress_core::{Layer, Mode};
use compress_nn::gemm::matmul_into;
use compress_nn::models::mlp;
use compress_nn::{
    AvgPool2d, BatchNorm2d, Conv2d, Conv2dConfig, Linear, MaxPool2d, ReLU, Sgd, TrainConfig,
    Trainer,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::{ArrayD, Ix1, Ix2};
use rand::{SeedableRng, rngs::StdRng};

fn mlp_epoch(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let data = random_dataset::<f32>(10_000, 784, 10, 7);
    group.throughput(Throughput::Elements(data.len() as u64));
    group.bench_function(BenchmarkId::new("mlp_epoch", "784-300-100-10"), |b| {
        let mut rng = StdRng::seed_from_u64(0);
        let mut net = mlp::<f32, _>(&[784, 300, 100, 10], &mut rng);
        let mut opt = Sgd::new(f32::lit(0.01));
        let trainer = Trainer::new(TrainConfig {
            epochs: 1,
            batch_size: 64,
            ..TrainConfig::default()
        });
        b.iter(|| {
            trainer
                .fit(black_box(&mut net), &mut opt, &data, None)
                .unwrap()
        });
    });
    group.finish();
}

/// Forward (eval) of a 3x3, padding-1 convolution on a batch of 32 64x32x32 images, with
/// `groups` groups (1: standard, 64: depthwise); throughput in MACs.
fn conv_bench(c: &mut Criterion, name: &str, groups: usize) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let (n, ch, side) = (32usize, 64usize, 32usize);
    let mut rng = StdRng::seed_from_u64(0);
    let cfg = Conv2dConfig::new(ch, ch, 3).padding(1).groups(groups);
    let mut conv = Conv2d::<f32>::new(cfg, &mut rng).expect("valid");
    let x = ArrayD::from_shape_fn(vec![n, ch, side, side], |d| {
        ((d[0] * 7 + d[1] * 13 + d[2] * 3 + d[3]) % 17) as f32 / 17.0 - 0.5
    });
    let macs = conv.cost(&[ch, side, side]).expect("fits").macs * n as u64;
    group.throughput(Throughput::Elements(macs));
    group.bench_function(BenchmarkId::new(name, "32x64x32x32"), |b| {
        b.iter(|| conv.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    group.finish();
}

/// `nn/conv2d/32x64x32x32`: the standard convolution (im2col + GEMM).
fn conv2d(c: &mut Criterion) {
    conv_bench(c, "conv2d", 1);
}

/// `nn/conv2d_depthwise/32x64x32x32`: the direct depthwise kernel.
fn conv2d_depthwise(c: &mut Criterion) {
    conv_bench(c, "conv2d_depthwise", 64);
}

/// `nn/conv2d_small/256x16x8x8`: a 16 -> 32 channel 3x3 convolution of 256 8x8 images (the
/// digits CNN's second layer: one small GEMM per image, im2col between them; it ran 10x
/// slower before the GEMM cleared the vector registers' upper halves).
fn conv2d_small(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let mut rng = StdRng::seed_from_u64(2);
    let mut conv =
        Conv2d::<f32>::new(Conv2dConfig::new(16, 32, 3).padding(1), &mut rng).expect("valid");
    let x = ArrayD::from_shape_fn(vec![256, 16, 8, 8], |d| {
        ((d[0] * 7 + d[1] * 13 + d[2] * 3 + d[3]) % 17) as f32 / 17.0 - 0.5
    });
    let macs = conv.cost(&[16, 8, 8]).expect("fits").macs * 256;
    group.throughput(Throughput::Elements(macs));
    group.bench_function(BenchmarkId::new("conv2d_small", "256x16x8x8"), |b| {
        b.iter(|| conv.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    group.finish();
}

/// `nn/conv2d_pointwise/32x64x32x32`: the 1x1, 64 -> 64 convolution (one GEMM per image).
fn conv2d_pointwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let mut rng = StdRng::seed_from_u64(0);
    let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(64, 64, 1), &mut rng).expect("valid");
    let x = ArrayD::from_shape_fn(vec![32, 64, 32, 32], |d| {
        ((d[0] * 7 + d[1] * 13 + d[2] * 3 + d[3]) % 17) as f32 / 17.0 - 0.5
    });
    let macs = conv.cost(&[64, 32, 32]).expect("fits").macs * 32;
    group.throughput(Throughput::Elements(macs));
    group.bench_function(BenchmarkId::new("conv2d_pointwise", "32x64x32x32"), |b| {
        b.iter(|| conv.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    group.finish();
}

/// `nn/batchnorm2d_eval/32x64x32x32` and `nn/relu_eval/32x64x32x32`: the element-wise
/// layers of a separable block, eval mode (one pass each).
fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(20);
    let x = ArrayD::from_shape_fn(vec![32, 64, 32, 32], |d| {
        ((d[0] * 7 + d[1] * 13 + d[2] * 3 + d[3]) % 17) as f32 / 17.0 - 0.5
    });
    group.throughput(Throughput::Elements(x.len() as u64));
    let mut bn = BatchNorm2d::<f32>::new(64);
    group.bench_function(BenchmarkId::new("batchnorm2d_eval", "32x64x32x32"), |b| {
        b.iter(|| bn.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    let mut relu = ReLU::<f32>::new();
    group.bench_function(BenchmarkId::new("relu_eval", "32x64x32x32"), |b| {
        b.iter(|| relu.forward(black_box(&x), Mode::Eval).expect("forward"));
    });
    group.finish();
}

/// `nn/maxpool2d_train/32x64x32x32` and `nn/avgpool2d_train/32x64x32x32`: a 2x2, stride-2
/// pool's training step (forward in `Mode::Train`, then backward), the pools of the CNNs.
fn pools(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(20);
    let x = ArrayD::from_shape_fn(vec![32, 64, 32, 32], |d| {
        ((d[0] * 7 + d[1] * 13 + d[2] * 3 + d[3]) % 17) as f32 / 17.0 - 0.5
    });
    group.throughput(Throughput::Elements(x.len() as u64));
    let g = ArrayD::from_elem(vec![32, 64, 16, 16], 0.25f32);
    let mut max = MaxPool2d::new(2);
    group.bench_function(BenchmarkId::new("maxpool2d_train", "32x64x32x32"), |b| {
        b.iter(|| {
            Layer::<f32>::forward(&mut max, black_box(&x), Mode::Train).expect("forward");
            Layer::<f32>::backward(&mut max, black_box(&g)).expect("backward")
        });
    });
    let mut avg = AvgPool2d::new(2);
    group.bench_function(BenchmarkId::new("avgpool2d_train", "32x64x32x32"), |b| {
        b.iter(|| {
            Layer::<f32>::forward(&mut avg, black_box(&x), Mode::Train).expect("forward");
            Layer::<f32>::backward(&mut avg, black_box(&g)).expect("backward")
        });
    });
    group.finish();
}

/// `nn/linear_eval/MxKxN`: `Linear`'s eval forward (packed weight) on `M` rows, next to
/// `nn/linear_gemm/MxKxN`, the general GEMM it replaces (`x W^T + b` through
/// `compress_nn::gemm`, which packs the weight on every call).
fn linear_eval(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    let mut rng = StdRng::seed_from_u64(0);
    for (m, k, n) in [
        (1, 128, 128),
        (4, 128, 128),
        (359, 64, 128),
        (64, 784, 300),
        (64, 512, 512),
        (256, 1024, 1024),
        (128, 384, 384),
        (4096, 384, 384),
        (128, 384, 1536),
        (128, 1536, 384),
    ] {
        let id = format!("{m}x{k}x{n}");
        let mut l = Linear::<f32>::new(k, n, true, &mut rng);
        let x = ArrayD::from_shape_fn(vec![m, k], |d| ((d[0] * 7 + d[1] * 3) % 11) as f32 / 11.0);
        group.throughput(Throughput::Elements((m * k * n) as u64));
        group.bench_function(BenchmarkId::new("linear_eval", &id), |b| {
            b.iter(|| l.forward(black_box(&x), Mode::Eval).expect("forward"));
        });
        let w = l
            .weight
            .value()
            .view()
            .into_dimensionality::<Ix2>()
            .expect("2-D");
        let bias = l.bias.as_ref().expect("bias").value();
        let bias = bias.view().into_dimensionality::<Ix1>().expect("1-D");
        let x2 = x.view().into_dimensionality::<Ix2>().expect("2-D");
        group.bench_function(BenchmarkId::new("linear_gemm", &id), |b| {
            b.iter(|| {
                let mut y = bias.broadcast((m, n)).expect("[n] to [m, n]").to_owned();
                matmul_into(1.0, black_box(&x2), &w.t(), 1.0, &mut y.view_mut());
                y
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    linear_eval,
    mlp_epoch,
    conv2d,
    conv2d_depthwise,
    conv2d_pointwise,
    conv2d_small,
    elementwise,
    pools
);
