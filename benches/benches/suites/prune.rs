//! compress-prune: O(n) global magnitude threshold, CSR x dense SpMM against dense GEMM.

use std::hint::black_box;

use compress_benches::{random_matrix, random_weights};
use compress_nn::gemm::matmul_into;
use compress_prune::{Csr, IndexWidth, magnitude_mask_into, magnitude_prune_inplace};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::Array2;

fn magnitude_global(c: &mut Criterion) {
    let mut group = c.benchmark_group("prune");
    group.sample_size(20);
    let n = 16_777_216usize;
    let w = random_weights(n, 1);
    let mut mask = vec![0.0f32; n];
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("magnitude_global", n), |b| {
        b.iter(|| magnitude_mask_into(black_box(&w), 0.9, &mut mask).unwrap());
    });
    group.finish();
}

/// A 4096 x 4096 weight magnitude-pruned to `sparsity`.
fn pruned_weight(sparsity: f64) -> Array2<f32> {
    let mut w = random_matrix(4096, 4096, 3);
    magnitude_prune_inplace(w.as_slice_mut().expect("standard layout"), sparsity)
        .expect("finite weights");
    w
}

fn csr_spmm(c: &mut Criterion) {
    let mut group = c.benchmark_group("prune");
    group.sample_size(20);
    let b = random_matrix(4096, 64, 4);
    let mut out = Array2::<f32>::zeros((4096, 64));
    for sparsity in [0.5, 0.7, 0.8, 0.9, 0.99] {
        let csr = Csr::from_dense(&pruned_weight(sparsity), IndexWidth::U16).expect("fits u16");
        group.throughput(Throughput::Elements(csr.nnz() as u64 * 64));
        group.bench_function(BenchmarkId::new("csr_spmm", sparsity), |bch| {
            bch.iter(|| csr.spmm_into(black_box(&b), &mut out.view_mut()).unwrap());
        });
    }
    let w = random_matrix(4096, 4096, 3);
    group.throughput(Throughput::Elements(4096 * 4096 * 64));
    group.bench_function(BenchmarkId::new("dense_gemm", "4096x4096x64"), |bch| {
        bch.iter(|| {
            matmul_into(
                1.0,
                &black_box(&w).view(),
                &b.view(),
                0.0,
                &mut out.view_mut(),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, magnitude_global, csr_spmm);
