//! The AVX2 + FMA path of [`super::dense_new`]: `6 x 16` register tiles (two `__m256` per
//! row), each over the whole inner dimension, reading 16 columns of a packed panel.

use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
};

use super::{Args, padded, panels};

/// Rows per tile.
const MR: usize = 6;

/// `y = x Wt (+ b)` for a packed `Wt` (see the parent module), over `6 x 16` tiles.
///
/// # Safety
///
/// AVX2 and FMA must be available; lengths as in the AVX-512 `dense`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dense(a: Args, m: usize) {
    for (j0, width) in panels(padded(a.n)) {
        for jj in (0..width).step_by(16) {
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(MR);
                // SAFETY: `i0 + rows <= m`; columns `jj..jj + 16` of the panel at `j0`,
                // `width` wide: the bounds `tile` needs.
                unsafe { by_rows!(rows, tile, 2, (a, i0, j0, width, jj), [1, 2, 3, 4, 5, 6]) };
                i0 += rows;
            }
        }
    }
}

/// Rows `i0..i0 + R`, columns `j0 + jj..j0 + jj + 8 NV` (stores clipped to `n`), from the
/// panel at `j0`, `width` wide.
///
/// # Safety
///
/// As [`dense`], with `i0 + R <= m`, a panel of `width` columns at `j0` and
/// `jj + 8 NV <= width`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const R: usize, const NV: usize>(
    a: Args,
    i0: usize,
    j0: usize,
    width: usize,
    jj: usize,
) {
    let mut acc: [[__m256; NV]; R] = [[_mm256_setzero_ps(); NV]; R];
    // SAFETY: the panel at `j0` holds `k * width` floats from `j0 * k`; `jj < width`.
    let mut wp = unsafe { a.wt.add(j0 * a.k + jj) };
    // SAFETY: row `i0 < m` of x.
    let xp = unsafe { a.x.add(i0 * a.k) };
    for p in 0..a.k {
        // SAFETY: row `p < k` of the panel, columns `jj .. jj + 8 NV <= width`.
        let w: [__m256; NV] = std::array::from_fn(|v| unsafe { _mm256_loadu_ps(wp.add(8 * v)) });
        // SAFETY: still inside the panel (or one row past its end after the last `p`,
        // which is not read).
        wp = unsafe { wp.add(width) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            // SAFETY: row `i0 + r < m`, column `p < k` of x.
            let xb = _mm256_set1_ps(unsafe { *xp.add(r * a.k + p) });
            for (acc_rv, &wv) in acc_r.iter_mut().zip(&w) {
                *acc_rv = _mm256_fmadd_ps(xb, wv, *acc_rv);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        for (v, &o) in acc_r.iter().enumerate() {
            let col = j0 + jj + 8 * v;
            if col >= a.n {
                continue;
            }
            let o = match a.bias {
                // SAFETY: `col + 8 <= padded(n)`, the padded bias length.
                Some(b) => _mm256_add_ps(o, unsafe { _mm256_loadu_ps(b.add(col)) }),
                None => o,
            };
            // SAFETY: row `i0 + r < m`, columns `col .. col + 8` (clipped to `n`) of y.
            unsafe {
                let dst = a.y.add((i0 + r) * a.n + col);
                if col + 8 <= a.n {
                    _mm256_storeu_ps(dst, o);
                } else {
                    let mut buf = [0.0f32; 8];
                    _mm256_storeu_ps(buf.as_mut_ptr(), o);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, a.n - col);
                }
            }
        }
    }
}
