//! compress-quant clustering and binary weights: 1-D k-means, Huffman coding, XNOR-popcount GEMM.

use std::hint::black_box;

use compress_benches::{random_matrix, random_weights};
use compress_quant::binary::{BinaryMatrix, XnorKernel, xnor_gemm_into};
use compress_quant::huffman::{HuffmanCode, frequencies};
use compress_quant::{ClusterInit, KMeansConfig, kmeans_1d};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// `n` draws of N(0, std^2) (Box-Muller), the kind of data PEERS.md's scikit-learn inertias
/// (80.19 at k = 16, 0.351 at k = 256) are consistent with for std = 0.087.
fn gaussian(n: usize, std: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            (std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn report_inertia(label: &str, x: &[f32], k: usize) {
    for (name, init) in [
        ("k-means++", ClusterInit::KMeansPlusPlus),
        ("linear", ClusterInit::Linear),
    ] {
        for iters in [50, 100_000] {
            let cfg = KMeansConfig::new(k).init(init).max_iter(iters);
            let r = kmeans_1d(x, &cfg).expect("finite weights");
            eprintln!(
                "kmeans_1d {label} n={} k={k} init={name} max_iter={iters}: inertia {:.6}, {} iterations, converged {}",
                x.len(),
                r.inertia(),
                r.iterations(),
                r.converged()
            );
        }
    }
}

fn kmeans(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let n = 1usize << 20;
    let x = random_weights(n, 42);
    let g = gaussian(n, 0.087, 42);
    group.throughput(Throughput::Elements(n as u64));
    for k in [16usize, 256] {
        // scikit-learn's setting in PEERS.md: k-means++ init, at most 50 Lloyd iterations.
        let cfg = KMeansConfig::new(k)
            .init(ClusterInit::KMeansPlusPlus)
            .max_iter(50);
        report_inertia("random_weights", &x, k);
        report_inertia("gaussian(0.087)", &g, k);
        group.bench_with_input(
            BenchmarkId::new("kmeans_1d", format!("{n}/{k}")),
            &cfg,
            |b, cfg| b.iter(|| kmeans_1d(black_box(&x), cfg).expect("finite weights")),
        );
    }
    group.finish();
}

fn huffman(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    let n = 1usize << 20;
    // 4-bit symbols with a peaked distribution, as cluster indices of normal weights are.
    let w = random_weights(n, 7);
    let symbols: Vec<u32> = w
        .iter()
        .map(|&v| ((v / 0.05 * 2.0 + 8.0).round().clamp(0.0, 15.0)) as u32)
        .collect();
    let code = HuffmanCode::from_frequencies(&frequencies(&symbols, 16).expect("4-bit"))
        .expect("small alphabet");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("huffman_encode", n), |b| {
        b.iter(|| {
            code.encode(black_box(&symbols))
                .expect("every symbol has a code")
        });
    });
    group.finish();
}

fn xnor(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let (m, k, n) = (1024usize, 1024usize, 1024usize);
    let a = BinaryMatrix::from_signs(random_matrix(m, k, 1).view(), vec![1.0; m]);
    let b = BinaryMatrix::from_signs(random_matrix(n, k, 2).view(), vec![1.0; n]);
    let mut out = vec![0i32; m * n];
    group.throughput(Throughput::Elements((m * n * k) as u64));
    group.bench_function(
        BenchmarkId::new("xnor_gemm", format!("{m}x{k}x{n}")),
        |bch| {
            bch.iter(|| {
                xnor_gemm_into(black_box(&a), &b, &mut out, XnorKernel::Auto).expect("shapes")
            });
        },
    );
    for (name, kernel) in [
        ("xnor_gemm_popcnt", XnorKernel::Popcnt),
        ("xnor_gemm_portable", XnorKernel::Portable),
    ] {
        group.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |bch| {
            bch.iter(|| xnor_gemm_into(black_box(&a), &b, &mut out, kernel).expect("shapes"));
        });
    }
    group.finish();
}

criterion_group!(benches, kmeans, huffman, xnor);
