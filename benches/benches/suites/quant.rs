//! compress-quant: quantize/dequantize kernels, int8 GEMM, integer and int4 linear layers.
//!
//! Single-threaded. The `*_into` kernels write into buffers allocated once outside the timed
//! loop (as the peers reuse theirs). GEMM throughput is counted in multiply-accumulates.

use std::hint::black_box;

use compress_benches::{random_matrix, random_weights};
use compress_core::{Layer, Mode};
use compress_nn::models::small_cnn;
use compress_nn::{BatchNorm2d, Conv2d, Linear, Sequential};
use compress_quant::kernels::{
    PackedB, dequantize_i8_into, gemm_i8, quantize_i8_into, quantize_rows_i8_into,
};
use compress_quant::{ActQuant, DynamicQLinear, Int4Linear, QConv2d, QLinear};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::{Array2, ArrayD};
use rand::{SeedableRng, rngs::StdRng};

const N16M: usize = 16_777_216;

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(20);
    let x = random_weights(N16M, 1);
    let scale = 0.35 / 127.0;
    let mut q = vec![0i8; N16M];
    let mut y = vec![0.0f32; N16M];
    group.throughput(Throughput::Elements(N16M as u64));
    group.bench_function(BenchmarkId::new("quantize_int8_per_tensor", N16M), |b| {
        b.iter(|| quantize_i8_into(black_box(&x), scale, 0, &mut q).expect("valid scale"));
    });
    quantize_i8_into(&x, scale, 0, &mut q).expect("valid scale");
    group.bench_function(BenchmarkId::new("dequantize_int8_per_tensor", N16M), |b| {
        b.iter(|| dequantize_i8_into(black_box(&q), scale, 0, &mut y));
    });
    let mut scales = vec![0.0f32; 4096];
    group.bench_function(
        BenchmarkId::new("quantize_int8_per_channel", "4096x4096"),
        |b| {
            b.iter(|| {
                quantize_rows_i8_into(black_box(&x), 4096, &mut q, &mut scales).expect("finite")
            });
        },
    );
    group.finish();
}

fn i8_matrix(rows: usize, cols: usize, seed: u64) -> Vec<i8> {
    random_matrix(rows, cols, seed)
        .iter()
        .map(|v| (v * 60.0).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let n = 1024usize;
    group.throughput(Throughput::Elements((n * n * n) as u64));
    let a = i8_matrix(n, n, 2);
    let packed = PackedB::from_kn(&i8_matrix(n, n, 3), n, n);
    let mut acc = vec![0i32; n * n];
    group.bench_function(BenchmarkId::new("gemm_i8", "1024x1024x1024"), |b| {
        b.iter(|| gemm_i8(black_box(&a), n, &packed, &mut acc));
    });
    let af = random_matrix(n, n, 2);
    let bf = random_matrix(n, n, 3);
    let mut cf = Array2::<f32>::zeros((n, n));
    group.bench_function(BenchmarkId::new("gemm_f32", "1024x1024x1024"), |b| {
        b.iter(|| {
            compress_nn::gemm::matmul_into(
                1.0,
                &black_box(&af).view(),
                &bf.view(),
                0.0,
                &mut cf.view_mut(),
            );
        });
    });
    group.finish();
}

fn linear(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let (m, k, n) = (64usize, 4096usize, 4096usize);
    group.throughput(Throughput::Elements((m * n * k) as u64));
    let mut lin = Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(4));
    let x: ArrayD<f32> = random_matrix(m, k, 5).into_dyn();
    let mut q = QLinear::from_linear(&lin, ActQuant::DynamicPerRow).expect("finite weights");
    group.bench_function(BenchmarkId::new("qlinear_i8", "64x4096x4096"), |b| {
        b.iter(|| q.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
    });
    let mut dq = DynamicQLinear::from_linear(&lin).expect("finite weights");
    group.bench_function(
        BenchmarkId::new("dynamic_qlinear_i8", "64x4096x4096"),
        |b| {
            b.iter(|| dq.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
        },
    );
    group.bench_function(BenchmarkId::new("linear_f32", "64x4096x4096"), |b| {
        b.iter(|| lin.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
    });
    let mut q4 = Int4Linear::from_linear(&lin, 32, false).expect("group divides 4096");
    group.bench_function(BenchmarkId::new("linear_int4_g32", "64x4096x4096"), |b| {
        b.iter(|| q4.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
    });
    // One row (decoding a token, serving one request): the weights dominate the traffic.
    let x1: ArrayD<f32> = random_matrix(1, k, 6).into_dyn();
    group.throughput(Throughput::Elements((n * k) as u64));
    group.bench_function(BenchmarkId::new("linear_f32", "1x4096x4096"), |b| {
        b.iter(|| lin.forward(black_box(&x1), Mode::Eval).expect("shapes fit"));
    });
    group.bench_function(BenchmarkId::new("linear_int4_g32", "1x4096x4096"), |b| {
        b.iter(|| q4.forward(black_box(&x1), Mode::Eval).expect("shapes fit"));
    });
    group.finish();
}

/// The 28x28 MNIST CNN of `quant-int8-inference` (`small_cnn`: two 3x3 convolutions with
/// batch norm, pooling, two linear layers) in f32 and with every convolution a [`QConv2d`]
/// and every linear layer a [`QLinear`], on a batch of 256 images.
fn cnn(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let n = 256;
    let mut rng = StdRng::seed_from_u64(8);
    let mut net = small_cnn::<f32, _>(1, 28, 10, &mut rng);
    randomize_bn(&mut net);
    let mut q = small_cnn::<f32, _>(1, 28, 10, &mut StdRng::seed_from_u64(8));
    randomize_bn(&mut q);
    for i in 0..q.len() {
        if let Some(conv) = q.get::<Conv2d<f32>>(i) {
            q.layers_mut()[i] = Box::new(QConv2d::from_conv(conv).expect("finite weights"));
        } else if let Some(l) = q.get::<Linear<f32>>(i) {
            let ql = QLinear::from_linear(l, ActQuant::DynamicPerRow).expect("finite weights");
            q.layers_mut()[i] = Box::new(ql);
        }
    }
    let x = random_matrix(n, 784, 9)
        .into_shape_with_order((n, 1, 28, 28))
        .expect("784 = 28 x 28")
        .into_dyn();
    let macs = net.cost(&[1, 28, 28]).expect("fits").macs * n as u64;
    group.throughput(Throughput::Elements(macs));
    group.bench_function(BenchmarkId::new("cnn_f32", "256x1x28x28"), |b| {
        b.iter(|| net.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
    });
    group.bench_function(BenchmarkId::new("cnn_int8", "256x1x28x28"), |b| {
        b.iter(|| q.forward(black_box(&x), Mode::Eval).expect("shapes fit"));
    });
    group.finish();
}

/// Gives the batch norms of `net` non-trivial running statistics (as after training).
fn randomize_bn(net: &mut Sequential<f32>) {
    for i in 0..net.len() {
        if let Some(bn) = net.get_mut::<BatchNorm2d<f32>>(i) {
            bn.running_mean_mut()
                .value_mut()
                .indexed_iter_mut()
                .for_each(|(ix, v)| *v = 0.1 * (ix[0] as f32).sin());
            bn.running_var_mut()
                .value_mut()
                .indexed_iter_mut()
                .for_each(|(ix, v)| *v = 1.0 + 0.5 * (ix[0] as f32).cos());
        }
    }
}

criterion_group!(benches, elementwise, gemm, linear, cnn);
