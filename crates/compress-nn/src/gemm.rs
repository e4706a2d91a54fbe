//! Dense matrix products: the GEMM under every [`crate::Linear`] and [`crate::Conv2d`].
//!
//! `C = alpha A B + beta C` for `f32` and `f64` views of any (non-negative) strides. On
//! x86-64 with AVX2 + FMA the product runs on the packed, cache-blocked kernels of the
//! `private-gemm-x86` crate (the x86 backend of faer, already built for the SVD in
//! compress-arch), with 512-bit kernels where AVX-512 is available and allowed by
//! [`Isa::current`] (`NETCOMPRESS_ISA=avx2` forces the 256-bit ones). Elsewhere, and for
//! other element types or layouts, it runs ndarray's `general_mat_mul` (matrixmultiply),
//! the portable twin the tests compare it with.
//!
//! Large products are split across the current rayon pool (the global one's size is set
//! by `RAYON_NUM_THREADS`; inside `ThreadPool::install`, that pool's) into row or column
//! blocks of `C`, each a sequential product run with `rayon::join`. Nested in another
//! parallel loop (attention heads, samples), the blocks are stolen by idle workers of the
//! same pool, never by extra threads; products below about 2M multiply-adds (one
//! attention head's) are not split at all.
#![allow(unsafe_code)]

use std::any::TypeId;

use compress_core::{Float, Isa};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

/// Products of at least this many multiply-adds are split across threads (about 20 us of
/// work on one core: below it the fork-join costs more than it saves).
const PAR_MIN_MACS: usize = 1 << 21;

/// Row or column blocks are cut at multiples of this (the kernels' register tiles).
const SPLIT_ALIGN: usize = 32;

/// The implementation a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ndarray's `general_mat_mul` (matrixmultiply): portable, any `Float`.
    Portable,
    /// The packed AVX2 + FMA kernels (x86-64).
    Avx2,
    /// The packed AVX-512 kernels (x86-64).
    Avx512,
}

impl Backend {
    /// The backend products of element type `F` run on, on this CPU and under
    /// `NETCOMPRESS_ISA` (see [`Isa::current`]).
    pub fn for_type<F: Float>() -> Self {
        if !cfg!(target_arch = "x86_64") || dtype::<F>().is_none() {
            return Self::Portable;
        }
        match Isa::current() {
            Isa::Avx512 => Self::Avx512,
            Isa::Avx2 => Self::Avx2,
            Isa::Portable => Self::Portable,
        }
    }

    /// Whether this CPU can run the backend (ignoring `NETCOMPRESS_ISA`).
    pub fn available(self) -> bool {
        let cpu = Isa::detected();
        match self {
            Self::Portable => true,
            Self::Avx2 => cfg!(target_arch = "x86_64") && cpu >= Isa::Avx2,
            Self::Avx512 => cfg!(target_arch = "x86_64") && cpu >= Isa::Avx512,
        }
    }
}

/// The element type tag of the SIMD backend, `None` for types it does not handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F64,
}

fn dtype<F: Float>() -> Option<DType> {
    if F::IS_F32 {
        Some(DType::F32)
    } else if TypeId::of::<F>() == TypeId::of::<f64>() {
        Some(DType::F64)
    } else {
        None
    }
}

/// `A B` into a new `[m, n]` array.
///
/// # Panics
///
/// If `a` is `[m, k]` and `b` is not `[k, n]`.
#[track_caller]
pub fn matmul<F: Float>(a: &ArrayView2<'_, F>, b: &ArrayView2<'_, F>) -> Array2<F> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    matmul_into(F::one(), a, b, F::zero(), &mut c.view_mut());
    c
}

/// `C = alpha A B + beta C` on the fastest backend (see [`Backend::for_type`]), split
/// across the rayon pool when large. With `beta == 0`, `C` is overwritten (NaN in it does
/// not propagate), as in ndarray's `general_mat_mul`.
///
/// # Panics
///
/// If the shapes are not `[m, k] x [k, n] -> [m, n]`.
#[track_caller]
pub fn matmul_into<F: Float>(
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) {
    matmul_with(Backend::for_type::<F>(), alpha, a, b, beta, c);
}

/// [`matmul_into`] on a chosen backend (a backend that cannot run `F` on this CPU falls
/// back to [`Backend::Portable`]).
///
/// # Panics
///
/// If the shapes are not `[m, k] x [k, n] -> [m, n]`.
#[track_caller]
pub fn matmul_with<F: Float>(
    backend: Backend,
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "matmul shapes: [{m}, {k}] x {:?} -> {:?}",
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    let backend = if backend.available() && dtype::<F>().is_some() {
        backend
    } else {
        Backend::Portable
    };
    // One `beta` for every block: scale first, then accumulate.
    let accumulate = if beta == F::zero() {
        false
    } else {
        if beta != F::one() {
            c.map_inplace(|v| *v *= beta);
        }
        true
    };
    if k == 0 {
        if !accumulate {
            c.fill(F::zero());
        }
        return;
    }
    let threads = rayon::current_num_threads();
    split(backend, threads, alpha, a, b, accumulate, c.view_mut());
}

/// Splits `C` into `threads` blocks along its longer side and runs them with
/// `rayon::join` (recursively), or runs the product on this thread.
fn split<F: Float>(
    backend: Backend,
    threads: usize,
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    accumulate: bool,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let long = m.max(n);
    if threads < 2 || m * n * k < PAR_MIN_MACS || long < 2 * SPLIT_ALIGN {
        run(backend, alpha, a, b, accumulate, &mut c);
        return;
    }
    let left = threads / 2;
    let cut = (long * left / threads)
        .next_multiple_of(SPLIT_ALIGN)
        .min(long);
    if cut == 0 || cut == long {
        run(backend, alpha, a, b, accumulate, &mut c);
        return;
    }
    if m >= n {
        let (a0, a1) = a.view().split_at(Axis(0), cut);
        let (c0, c1) = c.split_at(Axis(0), cut);
        rayon::join(
            || split(backend, left, alpha, &a0, b, accumulate, c0),
            || split(backend, threads - left, alpha, &a1, b, accumulate, c1),
        );
    } else {
        let (b0, b1) = b.view().split_at(Axis(1), cut);
        let (c0, c1) = c.split_at(Axis(1), cut);
        rayon::join(
            || split(backend, left, alpha, a, &b0, accumulate, c0),
            || split(backend, threads - left, alpha, a, &b1, accumulate, c1),
        );
    }
}

/// One sequential product on `backend` (already checked to run `F` on this CPU).
fn run<F: Float>(
    backend: Backend,
    alpha: F,
    a: &ArrayView2<'_, F>,
    b: &ArrayView2<'_, F>,
    accumulate: bool,
    c: &mut ArrayViewMut2<'_, F>,
) {
    let strides_ok = [a.strides(), b.strides(), c.strides()]
        .iter()
        .all(|s| s.iter().all(|&v| v >= 0));
    #[cfg(target_arch = "x86_64")]
    if backend != Backend::Portable && strides_ok {
        let instr = if backend == Backend::Avx512 {
            private_gemm_x86::InstrSet::Avx512
        } else {
            private_gemm_x86::InstrSet::Avx256
        };
        let dtype = match dtype::<F>() {
            Some(DType::F32) => private_gemm_x86::DType::F32,
            Some(DType::F64) => private_gemm_x86::DType::F64,
            None => unreachable!("the SIMD backend is only chosen for f32 and f64"),
        };
        let (m, k) = a.dim();
        let n = b.ncols();
        let (cs, as_, bs) = (c.strides(), a.strides(), b.strides());
        let (c_rs, c_cs) = (cs[0], cs[1]);
        let alpha_ptr: *const F = &alpha;
        // SAFETY: `F` is `f32` or `f64` (`dtype` above), matching `DType`; every pointer
        // comes from a live view of the shape passed with it, and each stride (in
        // elements, non-negative: checked above) is that view's, so the kernels read `a`
        // and `b` and write `c` only inside the views. `c` is a unique mutable view, so
        // it does not alias `a` or `b`. The CPU supports the instruction set
        // (`Backend::available`, checked by the caller). With `Accum::Replace` and
        // `k > 0` (checked by the caller) every element of `c` is written. No row or
        // column index lists, no diagonal, no conjugation; `alpha` is a live `F`.
        // One thread: the kernels' own threading is not compiled in (we split above).
        unsafe {
            private_gemm_x86::gemm(
                dtype,
                private_gemm_x86::IType::U64,
                instr,
                m,
                n,
                k,
                c.as_mut_ptr().cast(),
                c_rs,
                c_cs,
                std::ptr::null(),
                std::ptr::null(),
                private_gemm_x86::DstKind::Full,
                if accumulate {
                    private_gemm_x86::Accum::Add
                } else {
                    private_gemm_x86::Accum::Replace
                },
                a.as_ptr().cast(),
                as_[0],
                as_[1],
                false,
                std::ptr::null(),
                0,
                b.as_ptr().cast(),
                bs[0],
                bs[1],
                false,
                alpha_ptr.cast(),
                1,
            );
            // The kernels return with the upper halves of the vector registers dirty; the
            // SSE-encoded code after them (im2col's copies, in a baseline x86-64 build) then
            // ran up to 10x slower (a 16 -> 32 channel 3x3 convolution of 256 8x8 images:
            // 33 ms, 3.9 ms with the portable GEMM). Clear them, as compilers do after AVX.
            // SAFETY: the CPU has AVX (`Backend::available` holds for Avx2 and Avx512).
            std::arch::x86_64::_mm256_zeroupper();
        }
        return;
    }
    let _ = (backend, strides_ok);
    let beta = if accumulate { F::one() } else { F::zero() };
    general_mat_mul(alpha, a, b, beta, c);
}

#[cfg(test)]
mod tests {
    use super::{Backend, matmul, matmul_with};
    use ndarray::{Array2, ArrayView2, s};
    use proptest::prelude::*;

    /// The product by definition, accumulated in f64.
    fn reference(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|p| a[[i, p]] * b[[p, j]]).sum()
        })
    }

    fn backends() -> Vec<Backend> {
        [Backend::Portable, Backend::Avx2, Backend::Avx512]
            .into_iter()
            .filter(|b| b.available())
            .collect()
    }

    fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = Array2<f64>> {
        prop::collection::vec(-2.0f64..2.0, rows * cols)
            .prop_map(move |v| Array2::from_shape_vec((rows, cols), v).expect("rows * cols"))
    }

    /// `(a, b, c, transpose a, transpose b)` for a random `[m, k] x [k, n]`.
    fn problem() -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Array2<f64>, bool, bool)> {
        (
            1usize..70,
            0usize..50,
            1usize..70,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_flat_map(|(m, k, n, ta, tb)| {
                let a = if ta { matrix(k, m) } else { matrix(m, k) };
                let b = if tb { matrix(n, k) } else { matrix(k, n) };
                (a, b, matrix(m, n), Just(ta), Just(tb))
            })
    }

    proptest! {
        #[test]
        fn every_backend_matches_the_definition_in_f32_and_f64(
            (a, b, c0, ta, tb) in problem(),
            alpha in prop::sample::select(vec![1.0f64, -0.5, 2.0]),
            beta in prop::sample::select(vec![0.0f64, 1.0, 0.25]),
        ) {
            let av = if ta { a.t() } else { a.view() };
            let bv = if tb { b.t() } else { b.view() };
            let want = reference(&av, &bv) * alpha + &c0 * beta;
            let k = av.ncols() as f64;
            for backend in backends() {
                let mut c = c0.clone();
                matmul_with(backend, alpha, &av, &bv, beta, &mut c.view_mut());
                let err = (&c - &want).iter().fold(0.0f64, |e, v| e.max(v.abs()));
                prop_assert!(err <= 1e-12 * (k + 1.0) * 4.0, "{backend:?} f64: {err}");

                let (a32, b32) = (av.mapv(|v| v as f32), bv.mapv(|v| v as f32));
                let mut c32 = c0.mapv(|v| v as f32);
                matmul_with(backend, alpha as f32, &a32.view(), &b32.view(), beta as f32,
                    &mut c32.view_mut());
                let err = c32.iter().zip(&want).fold(0.0f64, |e, (&g, &w)| e.max((g as f64 - w).abs()));
                prop_assert!(err <= 4e-6 * (k + 1.0) * 4.0, "{backend:?} f32: {err}");
            }
        }

        #[test]
        fn strided_and_sliced_views_are_read_in_place(
            (a, b) in (1usize..40, 1usize..40, 1usize..40)
                .prop_flat_map(|(m, k, n)| (matrix(2 * m, k), matrix(k, n + 1)))
        ) {
            // Every other row of `a` and a column window of `b` (non-unit strides).
            let av = a.slice(s![..;2, ..]);
            let bv = b.slice(s![.., 1..]);
            let want = reference(&av, &bv);
            for backend in backends() {
                let mut c = Array2::from_elem((av.nrows(), bv.ncols()), f64::NAN);
                matmul_with(backend, 1.0, &av, &bv, 0.0, &mut c.view_mut());
                let err = (&c - &want).iter().fold(0.0f64, |e, v| e.max(v.abs()));
                prop_assert!(err <= 1e-11, "{backend:?}: {err}");
            }
        }
    }

    #[test]
    fn a_product_over_nothing_is_zero_or_beta_c() {
        let a = Array2::<f32>::zeros((3, 0));
        let b = Array2::<f32>::zeros((0, 4));
        assert_eq!(matmul(&a.view(), &b.view()), Array2::<f32>::zeros((3, 4)));
        let mut c = Array2::from_elem((3, 4), 2.0f32);
        super::matmul_into(1.0, &a.view(), &b.view(), 0.5, &mut c.view_mut());
        assert_eq!(c, Array2::from_elem((3, 4), 1.0));
    }

    #[test]
    fn large_products_split_across_threads_agree_with_one_thread() {
        let (m, k, n) = (300, 200, 260);
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 13) as f32 - 6.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 17) as f32 - 8.0);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| matmul(&a.view(), &b.view()))
        };
        let seq = on(1);
        // Small integers: every backend and every split is exact.
        assert_eq!(on(3), seq);
        let want = reference(&a.mapv(f64::from).view(), &b.mapv(f64::from).view());
        assert_eq!(seq, want.mapv(|v| v as f32));
    }
}
