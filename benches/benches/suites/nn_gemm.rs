//! compress-nn: the f32 GEMM under `Linear` and `Conv2d` (`nn/gemm_f32/MxKxN`), on the
//! shapes of a MiniLM-sized transformer and the square 1024^3 the peers are compared on;
//! `nn/gemm_f32_portable/...` runs the portable twin (matrixmultiply) on the same data and
//! `nn/gemm_f32_2threads/...` splits the product across a pool of two threads.
//! Throughput is in multiply-accumulates.

use std::hint::black_box;

use compress_benches::random_matrix;
use compress_nn::gemm::{Backend, matmul_with};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::Array2;

/// `[m, k] x [k, n]`: attention projections and feed-forward layers of MiniLM (hidden 384,
/// intermediate 1536) on one sequence of 128 tokens and on a batch of 32 of them, one
/// attention head's scores (`[128, 32] x [32, 128]`) and the square product.
pub(crate) const SHAPES: [(usize, usize, usize); 8] = [
    (1024, 1024, 1024),
    (128, 384, 384),
    (128, 384, 1536),
    (128, 1536, 384),
    (4096, 384, 384),
    (4096, 384, 1536),
    (4096, 1536, 384),
    (128, 32, 128),
];

fn gemm_f32(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of two threads");
    for (m, k, n) in SHAPES {
        let id = format!("{m}x{k}x{n}");
        let a = random_matrix(m, k, 2);
        let b = random_matrix(k, n, 3);
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((m * k * n) as u64));
        // One thread (the default pool of the bench binary), the portable twin, two threads.
        let runs: [(&str, Backend, Option<&rayon::ThreadPool>); 3] = [
            ("gemm_f32", Backend::for_type::<f32>(), None),
            ("gemm_f32_portable", Backend::Portable, None),
            ("gemm_f32_2threads", Backend::for_type::<f32>(), Some(&two)),
        ];
        for (name, backend, pool) in runs {
            let mut product = || {
                matmul_with(
                    backend,
                    1.0,
                    &black_box(&a).view(),
                    &b.view(),
                    0.0,
                    &mut out.view_mut(),
                );
            };
            group.bench_function(BenchmarkId::new(name, &id), |bch| match pool {
                Some(pool) => bch.iter(|| pool.install(&mut product)),
                None => bch.iter(&mut product),
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gemm_f32);
