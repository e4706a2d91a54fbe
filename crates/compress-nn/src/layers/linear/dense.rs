//! Hot loop of [`super::Linear`]'s eval path: `y = x Wt + b` for a weight kept transposed
//! (`Wt` is `[k, n_pad]`, each row zero-padded to a multiple of 16 columns), so no per-call
//! packing or transposition is needed, whatever the number of rows.
//!
//! The x86-64 paths hold a tile of `R` rows by 16 or 32 (AVX-512) or 16 (AVX2) columns in
//! registers and, for each `k`, broadcast `x[i, k]` and fuse-multiply-add it with a row of
//! `Wt`. Every output is the same chain as in the portable [`dense_scalar`]:
//! `acc = 0; acc = fma(x[i, p], Wt[p, j], acc)` for `p = 0..k`, then `y = acc + b[j]`
//! (no add without bias), so all paths agree bit for bit (tested) and a row's result does
//! not depend on the other rows of its batch.
#![allow(unsafe_code)]

use compress_core::Float;

/// Column padding of the transposed weight (one AVX-512 vector of `f32`).
pub(crate) const PAD: usize = 16;

/// `n` rounded up to a multiple of [`PAD`].
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(PAD) * PAD
}

/// Which implementation of [`dense`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// The portable reference (the path on aarch64, where FMA is part of the base ISA).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    Scalar,
    /// AVX2 + FMA, 6 x 16 tiles.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F, 8 x 32 tiles.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// The fastest SIMD path of this CPU; `None` when it has no vector FMA (the portable
    /// loop would be slower than the layers' own GEMM there).
    pub(crate) fn best() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            // The level `NETCOMPRESS_ISA` allows, within what the CPU has.
            if compress_core::Isa::Avx512.enabled() {
                return Some(Self::Avx512);
            }
            if compress_core::Isa::Avx2.enabled() {
                return Some(Self::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        return Some(Self::Scalar);
        #[allow(unreachable_code)]
        None
    }

    /// Whether this CPU can run the path.
    pub(crate) fn available(self) -> bool {
        match self {
            Self::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => compress_core::Isa::detected() >= compress_core::Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => compress_core::Isa::detected() >= compress_core::Isa::Avx512,
        }
    }
}

/// Checks the slice lengths of a product of `m = x.len() / k` rows writing `y_len`
/// outputs; returns `m`.
///
/// # Panics
///
/// When the lengths do not fit (callers build them from one validated layer).
#[track_caller]
fn rows_of(x: &[f32], k: usize, wt: &[f32], n: usize, bias: Option<&[f32]>, y_len: usize) -> usize {
    assert!(k > 0 && x.len().is_multiple_of(k), "x is not [m, {k}]");
    let m = x.len() / k;
    assert_eq!(wt.len(), k * padded(n), "Wt is not [{k}, {}]", padded(n));
    assert!(
        bias.is_none_or(|b| b.len() == padded(n)),
        "bias is not padded"
    );
    assert_eq!(y_len, m * n, "y is not [{m}, {n}]");
    m
}

/// The portable reference: `y[m, n] = x[m, k] Wt[k, n_pad] (+ b)`, all row-major.
///
/// # Panics
///
/// When `x` is not a whole number of rows of `k`, `wt` is not `k * padded(n)`, `bias` (if
/// any) is not `padded(n)` long or `y` is not `m * n`.
pub(crate) fn dense_scalar(
    x: &[f32],
    k: usize,
    wt: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    rows_of(x, k, wt, n, bias, y.len());
    let np = padded(n);
    // Row by row, with the output row as the accumulators (the chain of each element is
    // still `p = 0..k` in order; this order streams Wt and vectorizes where FMA is native).
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
        yr.fill(0.0);
        for (p, &xv) in xr.iter().enumerate() {
            for (acc, &w) in yr.iter_mut().zip(&wt[p * np..p * np + n]) {
                *acc = xv.mul_add(w, *acc);
            }
        }
        if let Some(b) = bias {
            for (acc, &bv) in yr.iter_mut().zip(b) {
                *acc += bv;
            }
        }
    }
}

/// The product on `path` into a new vector, written once (the SIMD paths store every
/// output, so the buffer is not zero-filled first). `None` unless `F` is `f32`.
///
/// # Panics
///
/// As [`dense_scalar`], and when `path` is not available on this CPU.
pub(crate) fn dense_new<F: Float>(
    path: Path,
    x: &[f32],
    k: usize,
    wt: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Option<Vec<F>> {
    if !F::IS_F32 {
        return None;
    }
    assert!(path.available(), "{path:?} is not available on this CPU");
    let m = rows_of(x, k, wt, n, bias, x.len() / k.max(1) * n);
    let len = m * n;
    let mut y: Vec<F> = Vec::with_capacity(len);
    match path {
        Path::Scalar => {
            y.resize(len, F::zero());
            dense_scalar(x, k, wt, n, bias, F::as_f32_slice_mut(&mut y)?);
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            by_row_blocks(
                x,
                m,
                k,
                n,
                &mut y.spare_capacity_mut()[..len],
                |xb, rows, yb| {
                    // SAFETY: `F` is `f32`, so `yb` points to `rows * n` (uninitialised) `f32`s
                    // of the capacity; AVX2 and FMA were detected, the lengths checked by
                    // `rows_of`, and the kernel writes every one of those outputs.
                    unsafe { avx2::dense(xb, rows, k, wt, n, bias, yb) }
                },
            );
            // SAFETY: every block of the `len` elements was written above.
            unsafe { y.set_len(len) };
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            by_row_blocks(
                x,
                m,
                k,
                n,
                &mut y.spare_capacity_mut()[..len],
                |xb, rows, yb| {
                    // SAFETY: as above, with AVX-512F.
                    unsafe { avx512::dense(xb, rows, k, wt, n, bias, yb) }
                },
            );
            // SAFETY: every block of the `len` elements was written above.
            unsafe { y.set_len(len) };
        }
    }
    Some(y)
}

/// Products of at least this many multiply-adds are split into row blocks across the
/// rayon pool (as `crate::gemm` does).
const PAR_MIN_MACS: usize = 1 << 21;

/// Runs `kernel(x_block, rows, y_block)` over blocks of rows of `x` (`[m, k]`) and `y`
/// (`[m, n]`), in parallel on the current rayon pool when the product is large. Rows are
/// independent and each is computed the same way in any block, so the result does not
/// depend on the split.
#[cfg(target_arch = "x86_64")]
fn by_row_blocks<F: Float>(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    y: &mut [std::mem::MaybeUninit<F>],
    kernel: impl Fn(&[f32], usize, *mut f32) + Sync,
) {
    use rayon::prelude::*;

    let threads = rayon::current_num_threads();
    if threads < 2 || m * n * k < PAR_MIN_MACS || m < 16 || n == 0 {
        kernel(x, m, y.as_mut_ptr().cast());
        return;
    }
    let rows = m.div_ceil(threads).next_multiple_of(8);
    y.par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * k))
        .for_each(|(yb, xb)| kernel(xb, xb.len() / k, yb.as_mut_ptr().cast()));
}

/// Dispatches a runtime row count `1..=MAX` to a const-generic tile.
macro_rules! by_rows {
    ($rows:expr, $tile:ident, $nv:literal, $args:tt, [$($r:literal),*]) => {
        match $rows {
            $($r => $tile::<$r, $nv> $args,)*
            _ => unreachable!("row count out of the tile range"),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    use super::padded;

    /// Rows per tile.
    const MR: usize = 8;

    /// Pointers and sizes shared by every tile of one product.
    #[derive(Clone, Copy)]
    struct Args {
        x: *const f32,
        k: usize,
        wt: *const f32,
        np: usize,
        bias: Option<*const f32>,
        y: *mut f32,
        n: usize,
    }

    /// `y = x Wt (+ b)` over `8 x 32` tiles (16-column tiles at the right edge).
    ///
    /// # Safety
    ///
    /// AVX-512F must be available; `x` holds `m * k`, `wt` `k * padded(n)` and `bias` (if
    /// any) `padded(n)` elements, and `y` is valid for writes of `m * n` (every one of which
    /// is written, so `y` may start uninitialised).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dense(
        x: &[f32],
        m: usize,
        k: usize,
        wt: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        y: *mut f32,
    ) {
        let a = Args {
            x: x.as_ptr(),
            k,
            wt: wt.as_ptr(),
            np: padded(n),
            bias: bias.map(<[f32]>::as_ptr),
            y,
            n,
        };
        let mut j0 = 0;
        while j0 < a.np {
            let wide = a.np - j0 >= 32;
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(MR);
                // SAFETY: `i0 + rows <= m` and `j0 + 16 (or 32) <= np`, the bounds `tile`
                // needs, with the caller's lengths.
                unsafe {
                    if wide {
                        by_rows!(rows, tile, 2, (a, i0, j0), [1, 2, 3, 4, 5, 6, 7, 8]);
                    } else {
                        by_rows!(rows, tile, 1, (a, i0, j0), [1, 2, 3, 4, 5, 6, 7, 8]);
                    }
                }
                i0 += rows;
            }
            j0 += if wide { 32 } else { 16 };
        }
    }

    /// Rows `i0..i0 + R`, columns `j0..j0 + 16 NV` (stores clipped to `n`).
    ///
    /// # Safety
    ///
    /// As [`dense`], with `i0 + R <= m` and `j0 + 16 NV <= padded(n)`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize, const NV: usize>(a: Args, i0: usize, j0: usize) {
        let mut acc: [[__m512; NV]; R] = [[_mm512_setzero_ps(); NV]; R];
        for p in 0..a.k {
            // SAFETY: row `p < k` of Wt, columns `j0 .. j0 + 16 NV <= np`: in bounds.
            let w: [__m512; NV] = std::array::from_fn(|v| unsafe {
                _mm512_loadu_ps(a.wt.add(p * a.np + j0 + 16 * v))
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: row `i0 + r < m`, column `p < k` of x: in bounds.
                let xb = _mm512_set1_ps(unsafe { *a.x.add((i0 + r) * a.k + p) });
                for (acc_rv, &wv) in acc_r.iter_mut().zip(&w) {
                    *acc_rv = _mm512_fmadd_ps(xb, wv, *acc_rv);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &o) in acc_r.iter().enumerate() {
                let col = j0 + 16 * v;
                if col >= a.n {
                    continue;
                }
                let o = match a.bias {
                    // SAFETY: `col + 16 <= np`, the padded bias length.
                    Some(b) => _mm512_add_ps(o, unsafe { _mm512_loadu_ps(b.add(col)) }),
                    None => o,
                };
                // SAFETY: row `i0 + r < m`; the store covers columns `col .. min(col + 16, n)`
                // of y, which has `m * n` elements.
                unsafe {
                    let dst = a.y.add((i0 + r) * a.n + col);
                    if col + 16 <= a.n {
                        _mm512_storeu_ps(dst, o);
                    } else {
                        let mask = (1u16 << (a.n - col)) - 1;
                        _mm512_mask_storeu_ps(dst, mask, o);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    use super::padded;

    /// Rows per tile.
    const MR: usize = 6;

    /// Pointers and sizes shared by every tile of one product.
    #[derive(Clone, Copy)]
    struct Args {
        x: *const f32,
        k: usize,
        wt: *const f32,
        np: usize,
        bias: Option<*const f32>,
        y: *mut f32,
        n: usize,
    }

    /// `y = x Wt (+ b)` over `6 x 16` tiles.
    ///
    /// # Safety
    ///
    /// AVX2 and FMA must be available; lengths as in the AVX-512 `dense`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dense(
        x: &[f32],
        m: usize,
        k: usize,
        wt: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        y: *mut f32,
    ) {
        let a = Args {
            x: x.as_ptr(),
            k,
            wt: wt.as_ptr(),
            np: padded(n),
            bias: bias.map(<[f32]>::as_ptr),
            y,
            n,
        };
        for j0 in (0..a.np).step_by(16) {
            let mut i0 = 0;
            while i0 < m {
                let rows = (m - i0).min(MR);
                // SAFETY: `i0 + rows <= m` and `j0 + 16 <= np`, the bounds `tile` needs.
                unsafe { by_rows!(rows, tile, 2, (a, i0, j0), [1, 2, 3, 4, 5, 6]) };
                i0 += rows;
            }
        }
    }

    /// Rows `i0..i0 + R`, columns `j0..j0 + 8 NV` (stores clipped to `n`).
    ///
    /// # Safety
    ///
    /// As [`dense`], with `i0 + R <= m` and `j0 + 8 NV <= padded(n)`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const NV: usize>(a: Args, i0: usize, j0: usize) {
        let mut acc: [[__m256; NV]; R] = [[_mm256_setzero_ps(); NV]; R];
        for p in 0..a.k {
            // SAFETY: row `p < k` of Wt, columns `j0 .. j0 + 8 NV <= np`: in bounds.
            let w: [__m256; NV] = std::array::from_fn(|v| unsafe {
                _mm256_loadu_ps(a.wt.add(p * a.np + j0 + 8 * v))
            });
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: row `i0 + r < m`, column `p < k` of x: in bounds.
                let xb = _mm256_set1_ps(unsafe { *a.x.add((i0 + r) * a.k + p) });
                for (acc_rv, &wv) in acc_r.iter_mut().zip(&w) {
                    *acc_rv = _mm256_fmadd_ps(xb, wv, *acc_rv);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &o) in acc_r.iter().enumerate() {
                let col = j0 + 8 * v;
                if col >= a.n {
                    continue;
                }
                let o = match a.bias {
                    // SAFETY: `col + 8 <= np`, the padded bias length.
                    Some(b) => _mm256_add_ps(o, unsafe { _mm256_loadu_ps(b.add(col)) }),
                    None => o,
                };
                let mut buf = [0.0f32; 8];
                // SAFETY: `buf` holds 8 floats.
                unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), o) };
                let len = (a.n - col).min(8);
                // SAFETY: row `i0 + r < m`, columns `col .. col + len <= n` of y.
                unsafe {
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), a.y.add((i0 + r) * a.n + col), len);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Path, dense_new, dense_scalar, padded};
    use proptest::prelude::*;

    /// A random product: `(x, k, wt, n, bias)`.
    fn product() -> impl Strategy<Value = (Vec<f32>, usize, Vec<f32>, usize, Option<Vec<f32>>)> {
        (0usize..20, 1usize..40, 1usize..70, any::<bool>()).prop_flat_map(|(m, k, n, b)| {
            let np = padded(n);
            let val = prop_oneof![
                8 => -4.0f32..4.0,
                1 => Just(0.0f32),
                1 => Just(-0.0f32),
                1 => prop::sample::select(vec![f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e-30]),
            ];
            (
                prop::collection::vec(val.clone(), m * k),
                Just(k),
                prop::collection::vec(-2.0f32..2.0, k * n),
                Just(n),
                prop::collection::vec(-1.0f32..1.0, n),
                Just(b),
            )
                .prop_map(move |(x, k, w, n, bias, b)| {
                    // Wt padded with zeros, bias padded with zeros.
                    let mut wt = vec![0.0f32; k * np];
                    for p in 0..k {
                        wt[p * np..p * np + n].copy_from_slice(&w[p * n..(p + 1) * n]);
                    }
                    let bias = b.then(|| {
                        let mut v = bias.clone();
                        v.resize(np, 0.0);
                        v
                    });
                    (x, k, wt, n, bias)
                })
        })
    }

    proptest! {
        #[test]
        fn simd_paths_equal_the_scalar_twin_bit_for_bit((x, k, wt, n, bias) in product()) {
            let m = x.len() / k;
            let mut want = vec![f32::NAN; m * n];
            dense_scalar(&x, k, &wt, n, bias.as_deref(), &mut want);
            #[cfg(target_arch = "x86_64")]
            for path in [Path::Avx2, Path::Avx512] {
                if !path.available() {
                    continue;
                }
                let got: Vec<f32> = dense_new(path, &x, k, &wt, n, bias.as_deref()).unwrap();
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same, "{:?}: {:?} vs {:?}", path, got, want);
            }
            // The reference is the fused chain of the definition.
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0f32;
                    for p in 0..k {
                        acc = x[i * k + p].mul_add(wt[p * padded(n) + j], acc);
                    }
                    let v = bias.as_ref().map_or(acc, |b| acc + b[j]);
                    prop_assert_eq!(v.to_bits(), want[i * n + j].to_bits());
                }
            }
        }

        #[test]
        fn a_row_does_not_depend_on_its_batch((x, k, wt, n, bias) in product()) {
            let m = x.len() / k;
            let Some(path) = Path::best() else { return Ok(()) };
            let all: Vec<f32> = dense_new(path, &x, k, &wt, n, bias.as_deref()).unwrap();
            for i in 0..m {
                let one: Vec<f32> =
                    dense_new(path, &x[i * k..(i + 1) * k], k, &wt, n, bias.as_deref()).unwrap();
                let same = one.iter().zip(&all[i * n..(i + 1) * n]).all(|(a, b)| a.to_bits() == b.to_bits());
                prop_assert!(same);
            }
        }
    }
}
