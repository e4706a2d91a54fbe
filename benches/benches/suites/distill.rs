//! compress-distill: KD, DKD and KL losses (value + gradient) on a [256, 1000] batch.

use std::hint::black_box;

use compress_benches::random_matrix;
use compress_distill::{DkdConfig, KdConfig, dkd_loss, kd_loss, kl_div};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::Array2;

const N: usize = 256;
const C: usize = 1000;

fn inputs() -> (Array2<f32>, Array2<f32>, Vec<usize>) {
    let s = random_matrix(N, C, 1) * 3.0;
    let t = random_matrix(N, C, 2) * 3.0;
    let labels = (0..N).map(|i| (i * 37) % C).collect();
    (s, t, labels)
}

/// `distill/kd_loss/256x1000`: Hinton KD at T = 4, alpha = 0.9 (loss and gradient).
fn kd(c: &mut Criterion) {
    let (s, t, y) = inputs();
    let cfg = KdConfig::new(4.0, 0.9).expect("valid");
    let mut group = c.benchmark_group("distill");
    group.throughput(Throughput::Elements((N * C) as u64));
    group.bench_function(BenchmarkId::new("kd_loss", "256x1000"), |b| {
        b.iter(|| kd_loss(black_box(&s), black_box(&t), &y, &cfg).expect("kd"));
    });
    group.bench_function(BenchmarkId::new("kl_div", "256x1000"), |b| {
        b.iter(|| kl_div(black_box(&s), black_box(&t), 4.0).expect("kl"));
    });
    group.bench_function(BenchmarkId::new("dkd_loss", "256x1000"), |b| {
        let cfg = DkdConfig::default();
        b.iter(|| dkd_loss(black_box(&s), black_box(&t), &y, &cfg).expect("dkd"));
    });
    group.finish();
}

criterion_group!(benches, kd);
