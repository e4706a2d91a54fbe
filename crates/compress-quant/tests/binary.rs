//! BinaryConnect, XNOR-Net scaling, 1-bit packing and the binary kernels.

use compress_core::{Param, Parametrization};
use compress_quant::binary::{
    Binarization, BinaryConnect, BinaryMatrix, BinaryScale, XnorKernel, binary_linear, xnor_gemm,
    xnor_gemm_into, xnor_linear,
};
use compress_testkit::{assert_grad_close, fd_grad, seeded_matrix};
use ndarray::{Array2, ArrayD};
use proptest::prelude::*;

#[test]
fn shadow_weights_are_clipped_and_ste_is_clipped() {
    let w = ArrayD::from_shape_vec(vec![1, 3], vec![0.5f64, -0.2, 1.5]).unwrap();
    let mut p = Param::new(w.clone());
    p.push_parametrization(Box::new(BinaryConnect::<f64>::deterministic(
        BinaryScale::None,
    )))
    .unwrap();
    assert_eq!(p.value().as_slice().unwrap(), &[0.5, -0.2, 1.0]);
    assert_eq!(p.effective().as_slice().unwrap(), &[1.0, -1.0, 1.0]);
    // The STE passes gradients where |w| <= 1 (the stored value), here everywhere after clipping;
    // the raw (unclipped) input gets none where |w| > 1.
    let bc = BinaryConnect::<f64>::deterministic(BinaryScale::None);
    let g = bc.backward(&w, ArrayD::from_elem(vec![1, 3], 2.0));
    assert_eq!(g.as_slice().unwrap(), &[2.0, 2.0, 0.0]);
    // An update that pushes past 1 is clipped back.
    p.accumulate_grad(ArrayD::from_elem(vec![1, 3], -10.0))
        .unwrap();
    p.update(|v, g| *v -= g);
    assert!(p.value().iter().all(|&v| v.abs() <= 1.0));
}

#[test]
fn xnor_scale_gradient_matches_finite_differences() {
    // Away from zero, sign(w) is locally constant, so the only true gradient is the one through
    // alpha = mean |w|: backward minus its STE term must equal finite differences.
    let w = ArrayD::from_shape_vec(vec![2, 3], vec![0.3f64, -0.6, 0.9, -0.2, 0.4, 0.7]).unwrap();
    let g = ArrayD::from_shape_vec(vec![2, 3], vec![1.0f64, -2.0, 0.5, 0.3, 0.1, -1.0]).unwrap();
    let bc = BinaryConnect::<f64>::deterministic(BinaryScale::PerChannel);
    let loss = |w: &ArrayD<f64>| (bc.forward(w) * &g).sum();
    let back = bc.backward(&w, g.clone());
    let alphas = bc.alphas(&w);
    let ste = ArrayD::from_shape_fn(w.raw_dim(), |ix| g[&ix] * alphas[ix[0]]);
    assert_grad_close(&(back - ste), &fd_grad(loss, &w, 1e-6), 1e-7, 0.0);
}

#[test]
fn stochastic_sample_is_fixed_between_steps_and_follows_hard_sigmoid() {
    let n = 20_000;
    let w = ArrayD::from_elem(vec![n], 0.5f64); // P(+1) = 0.75
    let mut bc = BinaryConnect::<f64>::stochastic(BinaryScale::None, 42);
    assert_eq!(bc.mode(), Binarization::Stochastic);
    let a = bc.forward(&w);
    assert_eq!(a, bc.forward(&w));
    let frac = a.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    assert!((frac - 0.75).abs() < 0.02, "{frac}");
    bc.after_update();
    assert_ne!(a, bc.forward(&w));
    bc.set_deterministic(true);
    assert!(bc.forward(&w).iter().all(|&v| v == 1.0));
}

#[test]
fn packing_is_one_bit_per_weight() {
    let w = seeded_matrix::<f32>(128, 64, 1);
    let b = BinaryMatrix::from_weights(w.view(), BinaryScale::PerChannel).unwrap();
    assert_eq!(b.bytes(), 128 * 64 / 8 + 128 * 4);
    let d: Array2<f32> = b.to_dense();
    for ((r, c), &v) in d.indexed_iter() {
        assert_eq!(v.signum(), if w[[r, c]] >= 0.0 { 1.0 } else { -1.0 });
        assert!((v.abs() - b.alphas()[r]).abs() < 1e-7);
    }
    let nan = Array2::from_elem((1, 2), f32::NAN);
    assert!(BinaryMatrix::from_weights(nan.view(), BinaryScale::None).is_err());
    assert!(BinaryMatrix::from_weights(w.view(), BinaryScale::Constant(-1.0)).is_err());
}

#[test]
fn binary_linear_matches_dense_and_checks_shapes() {
    let w = seeded_matrix::<f32>(33, 130, 2);
    let x = seeded_matrix::<f32>(7, 130, 3);
    let b = BinaryMatrix::from_weights(w.view(), BinaryScale::PerChannel).unwrap();
    let bias: Vec<f32> = (0..33).map(|i| i as f32 * 0.1).collect();
    let y = binary_linear(x.view(), &b, Some(&bias)).unwrap();
    let dense: Array2<f32> = b.to_dense();
    let expect = x.dot(&dense.t()) + &ndarray::Array1::from(bias.clone());
    for (a, e) in y.iter().zip(expect.iter()) {
        assert!((a - e).abs() < 1e-4, "{a} vs {e}");
    }
    assert!(binary_linear(seeded_matrix::<f32>(2, 5, 1).view(), &b, None).is_err());
    assert!(binary_linear(x.view(), &b, Some(&bias[..3])).is_err());
}

#[test]
fn xnor_linear_is_scaled_sign_product() {
    let x = seeded_matrix::<f32>(5, 70, 4);
    let w = seeded_matrix::<f32>(6, 70, 5);
    let bx = BinaryMatrix::binarize_activations(x.view()).unwrap();
    let bw = BinaryMatrix::from_weights(w.view(), BinaryScale::PerChannel).unwrap();
    let y = xnor_linear(&bx, &bw).unwrap();
    let expect = bx.to_dense::<f32>().dot(&bw.to_dense::<f32>().t());
    for (a, e) in y.iter().zip(expect.iter()) {
        assert!((a - e).abs() < 1e-4, "{a} vs {e}");
    }
    let other = BinaryMatrix::from_signs(seeded_matrix::<f32>(2, 9, 1).view(), vec![1.0; 2]);
    assert!(xnor_gemm(&bx, &other).is_err());
    let mut small = vec![0; 3];
    assert!(xnor_gemm_into(&bx, &bw, &mut small, XnorKernel::Auto).is_err());
}

proptest! {
    #[test]
    fn every_xnor_kernel_equals_the_sign_product(
        m in 1usize..9, n in 1usize..11, k in 1usize..400, seed in 0u64..1000,
    ) {
        let a = BinaryMatrix::from_signs(seeded_matrix::<f32>(m, k, seed).view(), vec![1.0; m]);
        let b = BinaryMatrix::from_signs(seeded_matrix::<f32>(n, k, seed + 1).view(), vec![1.0; n]);
        let mut reference = Array2::<i32>::zeros((m, n));
        for i in 0..m {
            for j in 0..n {
                reference[[i, j]] = (0..k).map(|c| a.sign(i, c) * b.sign(j, c)).sum();
            }
        }
        let mut portable = vec![0; m * n];
        xnor_gemm_into(&a, &b, &mut portable, XnorKernel::Portable).unwrap();
        prop_assert_eq!(portable.as_slice(), reference.as_slice().unwrap());
        for kernel in [XnorKernel::Popcnt, XnorKernel::Avx2, XnorKernel::Auto] {
            let mut out = vec![0; m * n];
            xnor_gemm_into(&a, &b, &mut out, kernel).unwrap();
            prop_assert_eq!(&out, &portable, "{:?} (available: {})", kernel, kernel.is_available());
        }
    }
}

#[test]
fn long_rows_flush_byte_counters() {
    // 10_000 bits = 39 full AVX2 vectors: exercises the flush every 31 vectors and the tail.
    let a = BinaryMatrix::from_signs(seeded_matrix::<f32>(3, 10_000, 8).view(), vec![1.0; 3]);
    let b = BinaryMatrix::from_signs(Array2::from_elem((6, 10_000), -1.0f32).view(), vec![1.0; 6]);
    let mut p = vec![0; 18];
    xnor_gemm_into(&a, &b, &mut p, XnorKernel::Portable).unwrap();
    let mut v = vec![0; 18];
    xnor_gemm_into(&a, &b, &mut v, XnorKernel::Avx2).unwrap();
    assert_eq!(p, v);
    let negatives = (0..10_000).filter(|&c| a.sign(0, c) < 0).count() as i32;
    assert_eq!(p[0], 2 * negatives - 10_000);
}
