//! The x86-64 paths of the 2:4 kernel (AVX-512 and AVX2 + FMA): token-tile transposes and
//! the multiply-add blocks, behind the dispatch in the parent module.

use std::arch::x86_64::{
    __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd,
    _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
};
use std::ops::Range;

use super::Packed24;

/// Raw pointers and sizes of one input block of one token tile.
#[derive(Clone, Copy)]
pub(super) struct Block {
    vals: *const f32,
    codes: *const u8,
    rows: usize,
    gpr: usize,
    g0: usize,
    g1: usize,
    xt: *const f32,
    wt: usize,
    yt: *mut f32,
    first: bool,
}

impl Block {
    pub(super) fn new(
        w: Packed24<'_>,
        groups: Range<usize>,
        xt: &[f32],
        wt: usize,
        yt: &mut [f32],
        first: bool,
    ) -> Self {
        Self {
            vals: w.vals.as_ptr(),
            codes: w.codes.as_ptr(),
            rows: w.rows,
            gpr: w.cols / 4,
            g0: groups.start,
            g1: groups.end,
            xt: xt.as_ptr(),
            wt,
            yt: yt.as_mut_ptr(),
            first,
        }
    }

    /// The values and the two `x^T` rows of group `g` of row `j`.
    ///
    /// # Safety
    ///
    /// `j < rows`, `g < gpr`, and the pointers valid as [`avx512`] requires.
    #[inline(always)]
    unsafe fn group(&self, j: usize, g: usize) -> (f32, f32, *const f32, *const f32) {
        let q = j * self.gpr + g;
        // SAFETY: `q < rows * gpr`, so `2q + 1` is inside the values and `q / 2` inside
        // the codes; each position is < 4, so both rows are inside `x^T` (`[4 gpr, wt]`).
        unsafe {
            let c = usize::from((*self.codes.add(q >> 1) >> ((q & 1) * 4)) & 15);
            let base = self.xt.add(4 * g * self.wt);
            (
                *self.vals.add(2 * q),
                *self.vals.add(2 * q + 1),
                base.add((c & 3) * self.wt),
                base.add((c >> 2) * self.wt),
            )
        }
    }
}

/// Transposes the 16 x 16 block held in `r` (row `i` in `r[i]`) in registers.
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for q in 0..4 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        let pd = |x: __m512| _mm512_castps_pd(x);
        r[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(a), pd(c)));
        r[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(a), pd(c)));
        r[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(b), pd(d)));
        r[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(b), pd(d)));
    }
    for h in 0..2 {
        for i in 0..4 {
            let (a, b) = (r[8 * h + i], r[8 * h + 4 + i]);
            t[8 * h + i] = _mm512_shuffle_f32x4::<0x88>(a, b);
            t[8 * h + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(a, b);
        }
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
        r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
    }
}

/// The full 16 x 16 blocks of `transpose_in`: columns `0..k16`, tile tokens `0..r16`.
///
/// # Safety
///
/// AVX-512F; `x` holds rows `start .. start + r16` of `k` floats; `xt` is `[k, wt]` with
/// `r16 <= wt`; `k16 <= k`, both multiples of 16.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_in(
    x: &[f32],
    k: usize,
    start: usize,
    xt: &mut [f32],
    wt: usize,
    k16: usize,
    r16: usize,
) {
    let mut r = [_mm512_setzero_ps(); 16];
    for i0 in (0..r16).step_by(16) {
        for c0 in (0..k16).step_by(16) {
            // SAFETY: rows `start + i0 + q < start + r16` of `x`, columns `c0 .. c0 + 16
            // <= k`; `xt` rows `c0 + q < k`, columns `i0 .. i0 + 16 <= wt`.
            unsafe {
                for (q, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(x.as_ptr().add((start + i0 + q) * k + c0));
                }
                transpose16(&mut r);
                for (q, v) in r.iter().enumerate() {
                    _mm512_storeu_ps(xt.as_mut_ptr().add((c0 + q) * wt + i0), *v);
                }
            }
        }
    }
}

/// The full 16 x 16 blocks of `transpose_out`: outputs `0..n16`, tile tokens `0..r16`.
///
/// # Safety
///
/// AVX-512F; `yt` is `[n, wt]`, `y` `[m, n]` with `start + r16 <= m`, `r16 <= wt`,
/// `n16 <= n` (multiples of 16); `bias` (if any) has `n` entries.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_out(
    yt: &[f32],
    wt: usize,
    n: usize,
    start: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    n16: usize,
    r16: usize,
) {
    let mut r = [_mm512_setzero_ps(); 16];
    for j0 in (0..n16).step_by(16) {
        // SAFETY: `j0 + 16 <= n` entries of the bias.
        let b = bias.map_or(_mm512_setzero_ps(), |b| unsafe {
            _mm512_loadu_ps(b.as_ptr().add(j0))
        });
        for i0 in (0..r16).step_by(16) {
            // SAFETY: `yt` rows `j0 + q < n`, columns `i0 .. i0 + 16 <= wt`; `y` rows
            // `start + i0 + q < m`, columns `j0 .. j0 + 16 <= n`.
            unsafe {
                for (q, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(yt.as_ptr().add((j0 + q) * wt + i0));
                }
                transpose16(&mut r);
                for (q, v) in r.iter().enumerate() {
                    let dst = y.as_mut_ptr().add((start + i0 + q) * n + j0);
                    _mm512_storeu_ps(dst, _mm512_add_ps(*v, b));
                }
            }
        }
    }
}

/// Rows `j0..j0 + R` of the block, `T` vectors of 16 tokens each (`wt = 16 T` is a
/// constant here, so row offsets are shifts). When rows hold a multiple of 8 groups and
/// the block starts on one, eight groups are decoded from one 32-bit load per row; the
/// rest go two groups per code byte (even `gpr` and start) or one at a time.
///
/// # Safety
///
/// AVX-512F; `j0 + R <= rows`; `T * 16 == wt`; `xt` valid for `4 gpr * wt` reads, `yt`
/// for `rows * wt` reads and writes, `vals` for `2 rows gpr`, `codes` for the codes.
#[target_feature(enable = "avx512f")]
unsafe fn rows512<const R: usize, const T: usize>(b: Block, j0: usize) {
    let wt = 16 * T;
    // SAFETY (whole body): every offset stays inside the ranges the caller guarantees
    // (`(j0 + r) * wt + 16 t < rows * wt`; groups `g < g1 <= gpr`, positions < 4, value
    // and code indices of rows `< rows`).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        if !b.first {
            for (r, a) in acc.iter_mut().enumerate() {
                for (t, v) in a.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(b.yt.add((j0 + r) * wt + 16 * t));
                }
            }
        }
        let mut g = b.g0;
        if b.gpr.is_multiple_of(8) && b.g0.is_multiple_of(8) {
            // Eight groups per step: one 32-bit load of each row's codes, then every
            // position and value addressed from registers (fewer loads per multiply-add).
            let mut vp: [*const f32; R] =
                std::array::from_fn(|r| b.vals.add(2 * ((j0 + r) * b.gpr + g)));
            let mut cp: [*const u8; R] =
                std::array::from_fn(|r| b.codes.add(((j0 + r) * b.gpr + g) / 2));
            while g + 8 <= b.g1 {
                let base = b.xt.add(4 * g * wt);
                let cw: [usize; R] =
                    std::array::from_fn(|r| cp[r].cast::<u32>().read_unaligned() as usize);
                for h in 0..8 {
                    let gb = base.add(4 * h * wt);
                    for (r, a) in acc.iter_mut().enumerate() {
                        let c = cw[r] >> (4 * h);
                        let x0 = gb.add((c & 3) * wt);
                        let x1 = gb.add((c >> 2 & 3) * wt);
                        let v0 = _mm512_set1_ps(*vp[r].add(2 * h));
                        let v1 = _mm512_set1_ps(*vp[r].add(2 * h + 1));
                        for (t, acc) in a.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x0.add(16 * t)), *acc);
                        }
                        for (t, acc) in a.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x1.add(16 * t)), *acc);
                        }
                    }
                }
                for r in 0..R {
                    vp[r] = vp[r].add(16);
                    cp[r] = cp[r].add(4);
                }
                g += 8;
            }
        }
        if b.gpr.is_multiple_of(2) && g.is_multiple_of(2) {
            while g + 2 <= b.g1 {
                let base = b.xt.add(4 * g * wt);
                for (r, a) in acc.iter_mut().enumerate() {
                    let q = (j0 + r) * b.gpr + g;
                    let c = usize::from(*b.codes.add(q >> 1));
                    let vp = b.vals.add(2 * q);
                    let xs = [
                        base.add((c & 3) * wt),
                        base.add((c >> 2 & 3) * wt),
                        base.add((4 + (c >> 4 & 3)) * wt),
                        base.add((4 + (c >> 6)) * wt),
                    ];
                    for (e, xp) in xs.iter().enumerate() {
                        let v = _mm512_set1_ps(*vp.add(e));
                        for (t, acc) in a.iter_mut().enumerate() {
                            *acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp.add(16 * t)), *acc);
                        }
                    }
                }
                g += 2;
            }
        }
        for g in g..b.g1 {
            for (r, a) in acc.iter_mut().enumerate() {
                let (v0, v1, x0, x1) = b.group(j0 + r, g);
                let (v0, v1) = (_mm512_set1_ps(v0), _mm512_set1_ps(v1));
                for (t, v) in a.iter_mut().enumerate() {
                    *v = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x0.add(16 * t)), *v);
                    *v = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x1.add(16 * t)), *v);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (t, v) in a.iter().enumerate() {
                _mm512_storeu_ps(b.yt.add((j0 + r) * wt + 16 * t), *v);
            }
        }
    }
}

/// Every row of the block, four at a time.
///
/// # Safety
///
/// As [`rows512`] for every row (`wt` in 16, 32, 48, 64).
#[target_feature(enable = "avx512f")]
unsafe fn all512<const T: usize>(b: Block) {
    let mut j = 0;
    // SAFETY: `j + 4 <= rows` and `j < rows` in the two loops; the rest is the caller's.
    unsafe {
        while j + 4 <= b.rows {
            rows512::<4, T>(b, j);
            j += 4;
        }
        while j < b.rows {
            rows512::<1, T>(b, j);
            j += 1;
        }
    }
}

/// The AVX-512 block.
///
/// # Safety
///
/// AVX-512F must be available and `b` built by [`Block::new`] from slices of the lengths
/// `spmm24` checks, with `wt` a multiple of 16 up to 64.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512(b: Block) {
    // SAFETY: the caller's guarantees, with `T = wt / 16`.
    unsafe {
        match b.wt / 16 {
            1 => all512::<1>(b),
            2 => all512::<2>(b),
            3 => all512::<3>(b),
            4 => all512::<4>(b),
            _ => unreachable!("tiles are 16 to 64 tokens wide"),
        }
    }
}

/// One row of the block, `T` vectors of 8 tokens (eight groups per 32-bit code load
/// where the groups allow, as in [`rows512`]).
///
/// # Safety
///
/// AVX2 + FMA; `j < rows`; `T * 8 == wt`; pointers as for [`rows512`].
#[target_feature(enable = "avx2,fma")]
unsafe fn row256<const T: usize>(b: Block, j: usize) {
    // SAFETY (whole body): as in `rows512`, with 8-float vectors.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        if !b.first {
            for (t, v) in acc.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(b.yt.add(j * b.wt + 8 * t));
            }
        }
        let mut g = b.g0;
        if b.gpr.is_multiple_of(8) && g.is_multiple_of(8) {
            // Eight groups per step from one 32-bit load of the row's codes.
            let q = j * b.gpr + g;
            let (mut vp, mut cp) = (b.vals.add(2 * q), b.codes.add(q / 2));
            while g + 8 <= b.g1 {
                let base = b.xt.add(4 * g * b.wt);
                let cw = cp.cast::<u32>().read_unaligned() as usize;
                for h in 0..8 {
                    let c = cw >> (4 * h);
                    let gb = base.add(4 * h * b.wt);
                    let (x0, x1) = (gb.add((c & 3) * b.wt), gb.add((c >> 2 & 3) * b.wt));
                    let v0 = _mm256_set1_ps(*vp.add(2 * h));
                    let v1 = _mm256_set1_ps(*vp.add(2 * h + 1));
                    for (t, v) in acc.iter_mut().enumerate() {
                        *v = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x0.add(8 * t)), *v);
                        *v = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x1.add(8 * t)), *v);
                    }
                }
                vp = vp.add(16);
                cp = cp.add(4);
                g += 8;
            }
        }
        for g in g..b.g1 {
            let (v0, v1, x0, x1) = b.group(j, g);
            let (v0, v1) = (_mm256_set1_ps(v0), _mm256_set1_ps(v1));
            for (t, v) in acc.iter_mut().enumerate() {
                *v = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x0.add(8 * t)), *v);
                *v = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x1.add(8 * t)), *v);
            }
        }
        for (t, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(b.yt.add(j * b.wt + 8 * t), *v);
        }
    }
}

/// Every row of the block.
///
/// # Safety
///
/// As [`row256`] for every row.
#[target_feature(enable = "avx2,fma")]
unsafe fn all256<const T: usize>(b: Block) {
    for j in 0..b.rows {
        // SAFETY: `j < rows`; the rest is the caller's.
        unsafe { row256::<T>(b, j) };
    }
}

/// The AVX2 block.
///
/// # Safety
///
/// AVX2 and FMA must be available; otherwise as [`avx512`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2(b: Block) {
    // SAFETY: the caller's guarantees, with `T = wt / 8`.
    unsafe {
        match b.wt / 8 {
            2 => all256::<2>(b),
            4 => all256::<4>(b),
            6 => all256::<6>(b),
            8 => all256::<8>(b),
            _ => unreachable!("tiles are 16 to 64 tokens wide"),
        }
    }
}
