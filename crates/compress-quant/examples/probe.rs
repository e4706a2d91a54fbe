//! Temporary timing probe (removed before hand-off).
use compress_quant::kernels::*;
use std::time::Instant;
fn main() {
    let (m, n, k) = (1024usize, 1024usize, 1024usize);
    let a: Vec<i8> = (0..m * k).map(|i| ((i * 7919) % 255) as i32 as i8).collect();
    let w: Vec<i8> = (0..n * k).map(|i| ((i * 104729) % 253) as i32 as i8).collect();
    let b = PackedB::from_nk(&w, n, k);
    let mut c = vec![0i32; m * n];
    for _ in 0..3 { gemm_i8(&a, m, &b, &mut c); }
    let t = Instant::now();
    let reps = 10;
    for _ in 0..reps { gemm_i8(&a, m, &b, &mut c); }
    println!("gemm_i8 1024^3: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    let (m, n, k) = (64usize, 4096usize, 4096usize);
    let a: Vec<i8> = (0..m * k).map(|i| ((i * 7919) % 255) as i32 as i8).collect();
    let w: Vec<i8> = (0..n * k).map(|i| ((i * 104729) % 253) as i32 as i8).collect();
    let b = PackedB::from_nk(&w, n, k);
    let mut c = vec![0i32; m * n];
    for _ in 0..3 { gemm_i8(&a, m, &b, &mut c); }
    let t = Instant::now();
    for _ in 0..reps { gemm_i8(&a, m, &b, &mut c); }
    println!("gemm_i8 64x4096x4096: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    let x: Vec<f32> = (0..1 << 24).map(|i| ((i % 1000) as f32 - 500.0) * 0.01).collect();
    let mut q = vec![0i8; x.len()];
    let mut y = vec![0f32; x.len()];
    for _ in 0..2 { quantize_i8_into(&x, 0.05, 0, &mut q).unwrap(); dequantize_i8_into(&q, 0.05, 0, &mut y); }
    let t = Instant::now();
    for _ in 0..reps { quantize_i8_into(&x, 0.05, 0, &mut q).unwrap(); }
    println!("quantize 16M: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    let t = Instant::now();
    for _ in 0..reps { dequantize_i8_into(&q, 0.05, 0, &mut y); }
    println!("dequantize 16M: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    let mut s = vec![0f32; 4096];
    let t = Instant::now();
    for _ in 0..reps { quantize_rows_i8_into(&x, 4096, &mut q, &mut s).unwrap(); }
    println!("per-channel 4096x4096: {:.2} ms", t.elapsed().as_secs_f64() * 1e3 / reps as f64);
}
