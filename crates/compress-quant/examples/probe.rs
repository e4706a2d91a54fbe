//! Temporary timing probe (removed before hand-off).
use compress_quant::kernels::*;
use std::time::Instant;
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut b = f64::INFINITY;
    for _ in 0..reps { let t = Instant::now(); f(); b = b.min(t.elapsed().as_secs_f64() * 1e3); }
    b
}
fn main() {
    for (m, n, k) in [(1024usize, 1024usize, 1024usize), (64, 4096, 4096)] {
        let a: Vec<i8> = (0..m * k).map(|i| ((i * 7919) % 255) as i32 as i8).collect();
        let w: Vec<i8> = (0..n * k).map(|i| ((i * 104729) % 253) as i32 as i8).collect();
        let b = PackedB::from_nk(&w, n, k);
        let mut c = vec![0i32; m * n];
        let af = ndarray::Array2::<f32>::from_shape_fn((m, k), |(i, j)| ((i * 7 + j) % 13) as f32);
        let bf = ndarray::Array2::<f32>::from_shape_fn((k, n), |(i, j)| ((i * 3 + j) % 11) as f32);
        let mut cf = ndarray::Array2::<f32>::zeros((m, n));
        let tf = best(15, || ndarray::linalg::general_mat_mul(1.0, &af, &bf, 0.0, &mut cf));
        print!("{m}x{n}x{k}: f32 {tf:.2} ms;");
        for kern in [GemmKernel::Avx2, GemmKernel::AvxVnni, GemmKernel::Avx512Vnni, GemmKernel::Portable] {
            let t = best(if kern == GemmKernel::Portable { 3 } else { 15 }, || gemm_i8_with(kern, &a, m, &b, &mut c).unwrap());
            print!(" {kern:?} {t:.2} ms;");
        }
        println!();
    }
}
