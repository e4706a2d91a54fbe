//! Times the rank-64 factorization of a 1024x1024 matrix (low rank plus noise) and compares
//! its error with the optimal one from the full SVD.

use std::time::Instant;

use compress_arch::lowrank::{randomized_svd, svd_exact};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn main() {
    let n = 1024;
    let noise: f32 = std::env::args().nth(1).map_or(0.35, |s| s.parse().unwrap());
    let mut rng = StdRng::seed_from_u64(42);
    let x = Array2::from_shape_fn((n, 64), |_| gaussian(&mut rng) / (n as f32).sqrt());
    let y = Array2::from_shape_fn((64, n), |_| gaussian(&mut rng) / (n as f32).sqrt());
    let d = Array2::from_shape_fn((64, 64), |(i, j)| if i == j { 1.0 / (1.0 + i as f32 / 16.0) } else { 0.0 });
    let e = Array2::from_shape_fn((n, n), |_| gaussian(&mut rng) * noise / n as f32);
    let mut a = x.dot(&d).dot(&y) * 10.0 + e;
    if std::env::args().nth(2).is_some() {
        // Power-law spectrum s_i = 1 / (i + 1) with random orthogonal factors.
        let g1 = Array2::from_shape_fn((n, n), |_| gaussian(&mut rng));
        let g2 = Array2::from_shape_fn((n, n), |_| gaussian(&mut rng));
        let u = svd_exact(g1.view(), "g1").unwrap().u;
        let v = svd_exact(g2.view(), "g2").unwrap().u;
        let s = ndarray::Array1::from_shape_fn(n, |i| 1.0 / (i as f32 + 1.0));
        a = (&u * &s.view().insert_axis(ndarray::Axis(0))).dot(&v.t());
    }
    {
        let om = Array2::from_shape_fn((n, 94), |_| gaussian(&mut rng));
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(a.dot(&om)); }
        println!("ndarray A*Om: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(a.t().dot(&om)); }
        println!("ndarray At*Om: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let fa = faer::Mat::<f32>::from_fn(n, n, |i, j| a[[i, j]]);
        let fo = faer::Mat::<f32>::from_fn(n, 94, |i, j| om[[i, j]]);
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(&fa * &fo); }
        println!("faer A*Om: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(fa.transpose() * &fo); }
        println!("faer At*Om: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let y = a.dot(&om).mapv(f64::from);
        let fy = faer::Mat::<f64>::from_fn(n, 94, |i, j| y[[i, j]]);
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(fy.qr().compute_thin_Q()); }
        println!("faer qr f64: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let fy32 = faer::Mat::<f32>::from_fn(n, 94, |i, j| y[[i, j]] as f32);
        let t = Instant::now();
        for _ in 0..10 { std::hint::black_box(fy32.qr().compute_thin_Q()); }
        println!("faer qr f32: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
    }
    for (os, q) in [(10, 2), (10, 4), (20, 3), (32, 2), (64, 1), (20, 4), (10, 6), (30, 3)] {
        let t = Instant::now();
        let mut err = 0.0;
        for _ in 0..5 {
            err = randomized_svd(a.view(), 64, os, q, 0, "a").unwrap().relative_error();
        }
        println!("oversample {os} power {q}: {:.1} ms, rel err {err:.5}", t.elapsed().as_secs_f64() * 200.0);
    }
    let t = Instant::now();
    let full = svd_exact(a.view(), "a").unwrap();
    println!("full svd {:.0} ms, optimal rel err {:.5}", t.elapsed().as_secs_f64() * 1e3, full.truncate(64).relative_error());
}

#[allow(dead_code)]
fn gemm_probe() {}
