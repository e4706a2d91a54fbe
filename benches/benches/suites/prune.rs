//! compress-prune: O(n) global magnitude threshold, CSR x dense SpMM against dense GEMM,
//! the 2:4 kernel against dense f32 on transformer shapes.

use std::hint::black_box;

use compress_benches::{random_matrix, random_weights};
use compress_core::{Layer, Mode};
use compress_nn::Linear;
use compress_nn::gemm::matmul_into;
use compress_prune::{
    Csr, IndexWidth, NmMatrix, Sparse24Linear, magnitude_mask_into, magnitude_prune_inplace,
    nm_mask,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::{Array2, Ix2};
use rand::{SeedableRng, rngs::StdRng};

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

/// `y = x W^T` for `x` `[m, k]` and a 2:4 `W` `[n, k]` (ids `m x k x n`): the 2:4 kernel
/// (`spmm_2to4`), the dense GEMM on the same (pruned, dense-stored) weight
/// (`spmm_2to4_dense_gemm`), and the layers with bias in eval mode: `Sparse24Linear`
/// (`linear_2to4`) against the dense `Linear` (`linear_2to4_dense`, its packed kernel).
fn spmm_2to4(c: &mut Criterion) {
    let mut group = c.benchmark_group("prune");
    group.sample_size(30);
    for (m, k, n) in [(64, 1536, 384), (64, 384, 1536)] {
        let id = format!("{m}x{k}x{n}");
        let mut lin = Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(5));
        let mask = nm_mask(&lin.weight.effective(), 2, 4, None, "w").expect("finite");
        *lin.weight.value_mut() *= mask.array();
        let w = lin
            .weight
            .effective()
            .into_owned()
            .into_dimensionality::<Ix2>()
            .expect("2-D");
        let sparse = NmMatrix::from_dense(&w, 2, 4, "w").expect("2:4");
        let x = random_matrix(m, k, 6);
        let mut out = Array2::<f32>::zeros((m, n));
        let mut scratch = Vec::new();
        group.throughput(Throughput::Elements((m * k * n) as u64));
        group.bench_function(BenchmarkId::new("spmm_2to4", &id), |bch| {
            bch.iter(|| {
                sparse
                    .matmul_t_bias(black_box(&x), None, &mut scratch)
                    .unwrap()
            });
        });
        group.bench_function(BenchmarkId::new("spmm_2to4_dense_gemm", &id), |bch| {
            bch.iter(|| matmul_into(1.0, &black_box(&x).view(), &w.t(), 0.0, &mut out.view_mut()));
        });
        let mut s24 = Sparse24Linear::from_linear(&lin, "w").expect("2:4");
        let xd = x.clone().into_dyn();
        group.bench_function(BenchmarkId::new("linear_2to4", &id), |bch| {
            bch.iter(|| s24.forward(black_box(&xd), Mode::Eval).unwrap());
        });
        group.bench_function(BenchmarkId::new("linear_2to4_dense", &id), |bch| {
            bch.iter(|| lin.forward(black_box(&xd), Mode::Eval).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, magnitude_global, csr_spmm, spmm_2to4);
