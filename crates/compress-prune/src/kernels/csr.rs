//! CSR x dense SpMM. The x86-64 AVX path keeps a 64-column tile of the output row
//! in eight registers while it streams the row's non-zeros, each one an axpy of a contiguous
//! row of the dense matrix. It performs the same multiplies and adds in the same order as the
//! portable [`spmm_scalar`], so the two agree bit for bit (tested).

use compress_core::Float;

/// Column indices of a CSR matrix: `u16` (up to 65,536 columns) or `u32`.
pub(crate) trait ColIndex: Copy + Send + Sync + 'static {
    fn idx(self) -> usize;
}

impl ColIndex for u16 {
    #[inline(always)]
    fn idx(self) -> usize {
        usize::from(self)
    }
}

impl ColIndex for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

/// `out[rows x n] = A[rows x cols] * b[cols x n]` with `A` in CSR (`row_ptr` has `rows + 1`
/// entries), all row-major. The portable reference.
///
/// Preconditions (checked by the callers, which own validated CSR matrices): every column
/// index `< cols`, `b.len() == cols * n`, `out.len() == rows * n`, `row_ptr` non-decreasing
/// and ending at `col.len() == val.len()`.
pub(crate) fn spmm_scalar<F: Float, I: ColIndex>(
    row_ptr: &[u32],
    col: &[I],
    val: &[F],
    b: &[F],
    n: usize,
    out: &mut [F],
) {
    if n == 0 {
        return;
    }
    for (r, o) in out.chunks_exact_mut(n).enumerate() {
        o.fill(F::zero());
        let (s, e) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
        for (&c, &v) in col[s..e].iter().zip(&val[s..e]) {
            let brow = &b[c.idx() * n..c.idx() * n + n];
            for (o, &x) in o.iter_mut().zip(brow) {
                *o += v * x;
            }
        }
    }
}

/// The same product, on the fastest path this CPU supports.
pub(crate) fn spmm<F: Float, I: ColIndex>(
    row_ptr: &[u32],
    col: &[I],
    val: &[F],
    b: &[F],
    n: usize,
    out: &mut [F],
) {
    #[cfg(target_arch = "x86_64")]
    if compress_core::Isa::Avx2.enabled()
        && let (Some(val), Some(b)) = (F::as_f32_slice(val), F::as_f32_slice(b))
        && let Some(out) = F::as_f32_slice_mut(out)
    {
        // SAFETY: AVX (part of the AVX2 level `Isa` detected at run time) is available, which `spmm_avx` requires; its
        // index preconditions are this function's.
        unsafe { spmm_avx(row_ptr, col, val, b, n, out) };
        return;
    }
    spmm_scalar(row_ptr, col, val, b, n, out);
}

/// One output tile of `8 * T` columns starting at `j` for the non-zeros `s..e`.
///
/// # Safety
///
/// AVX must be available; `j + 8 * T <= n`; every `col[p] < b.len() / n` for `p in s..e`;
/// `orow` points to `n` writable floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const T: usize, I: ColIndex>(
    col: &[I],
    val: &[f32],
    s: usize,
    e: usize,
    b: *const f32,
    n: usize,
    j: usize,
    orow: *mut f32,
) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    // SAFETY (whole body): the caller guarantees AVX, and that every pointer offset below
    // (`col[p] * n + j + 8 t` with `t < T`, `j + 8 T <= n`) stays inside `b` and `orow`;
    // `p` ranges over `s..e`, inside `col` and `val`.
    unsafe {
        let mut acc: [__m256; T] = [_mm256_setzero_ps(); T];
        for p in s..e {
            let v = _mm256_set1_ps(*val.get_unchecked(p));
            let bp = b.add(col.get_unchecked(p).idx() * n + j);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(v, _mm256_loadu_ps(bp.add(8 * t))));
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(orow.add(j + 8 * t), *a);
        }
    }
}

/// AVX SpMM for `f32`: register-tiled over 64/32/16/8 output columns, scalar for the rest.
///
/// # Safety
///
/// AVX must be available, and the preconditions of [`spmm_scalar`] must hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn spmm_avx<I: ColIndex>(
    row_ptr: &[u32],
    col: &[I],
    val: &[f32],
    b: &[f32],
    n: usize,
    out: &mut [f32],
) {
    if n == 0 {
        return;
    }
    let rows = out.len() / n;
    let bp = b.as_ptr();
    for r in 0..rows {
        let (s, e) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
        // SAFETY: `r < rows` so the row `r * n .. r * n + n` is inside `out`; the tiles
        // satisfy `tile`'s bounds by construction of `j`, and the column indices are
        // `< cols` by the caller's precondition; AVX is enabled on this function.
        unsafe {
            let orow = out.as_mut_ptr().add(r * n);
            let mut j = 0;
            while j + 64 <= n {
                tile::<8, I>(col, val, s, e, bp, n, j, orow);
                j += 64;
            }
            if j + 32 <= n {
                tile::<4, I>(col, val, s, e, bp, n, j, orow);
                j += 32;
            }
            if j + 16 <= n {
                tile::<2, I>(col, val, s, e, bp, n, j, orow);
                j += 16;
            }
            if j + 8 <= n {
                tile::<1, I>(col, val, s, e, bp, n, j, orow);
                j += 8;
            }
            for jj in j..n {
                let mut a = 0.0f32;
                for p in s..e {
                    a += *val.get_unchecked(p) * *bp.add(col.get_unchecked(p).idx() * n + jj);
                }
                *orow.add(jj) = a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn random_csr(
        rows: usize,
        cols: usize,
        density: f64,
        seed: u64,
    ) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut rp, mut ci, mut v) = (vec![0u32], Vec::new(), Vec::new());
        for _ in 0..rows {
            for c in 0..cols {
                if rng.random::<f64>() < density {
                    ci.push(c as u32);
                    v.push(rng.random_range(-1.0f32..1.0));
                }
            }
            rp.push(ci.len() as u32);
        }
        (rp, ci, v)
    }

    proptest! {
        #[test]
        fn fast_path_equals_scalar_bit_for_bit(
            rows in 1usize..12, cols in 1usize..40, n in 0usize..150,
            density in 0.0f64..1.0, seed in 0u64..1000,
        ) {
            let (rp, ci, v) = random_csr(rows, cols, density, seed);
            let b: Vec<f32> = (0..cols * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let mut fast = vec![f32::NAN; rows * n];
            let mut slow = vec![f32::NAN; rows * n];
            spmm(&rp, &ci, &v, &b, n, &mut fast);
            spmm_scalar(&rp, &ci, &v, &b, n, &mut slow);
            let fb: Vec<u32> = fast.iter().map(|x| x.to_bits()).collect();
            let sb: Vec<u32> = slow.iter().map(|x| x.to_bits()).collect();
            prop_assert_eq!(fb, sb);
        }
    }
}
