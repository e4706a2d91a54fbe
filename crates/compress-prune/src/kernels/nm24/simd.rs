//! The x86-64 paths of the 2:4 kernel (AVX-512 and AVX2 + FMA): token-tile transposes and
//! the multiply-add blocks, behind the dispatch in the parent module.

use std::arch::x86_64::{
    __m256, __m512, _MM_HINT_T0, _mm_prefetch, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd,
    _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4,
    _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
    _mm512_unpacklo_ps,
};
use std::ops::Range;

use super::panels::{PR, PanelBlock, Panels24};

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

/// The full 16 x 16 blocks of `transpose_out`: outputs `outs`, tile tokens `0..r16`.
///
/// # Safety
///
/// AVX-512F; `yt` is `[n, wt]`, `y` `[m, n]` with `r16 <= m`, `r16 <= wt`, `outs` within
/// `0..n` (bounds multiples of 16); `bias` (if any) has `n` entries.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_out(
    yt: &[f32],
    wt: usize,
    n: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    outs: Range<usize>,
    r16: usize,
) {
    let mut r = [_mm512_setzero_ps(); 16];
    for j0 in outs.step_by(16) {
        // SAFETY: `j0 + 16 <= n` entries of the bias.
        let b = bias.map_or(_mm512_setzero_ps(), |b| unsafe {
            _mm512_loadu_ps(b.as_ptr().add(j0))
        });
        for i0 in (0..r16).step_by(16) {
            // SAFETY: `yt` rows `j0 + q < n`, columns `i0 .. i0 + 16 <= wt`; `y` rows
            // `i0 + q < m`, columns `j0 .. j0 + 16 <= n`.
            unsafe {
                for (q, v) in r.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(yt.as_ptr().add((j0 + q) * wt + i0));
                }
                transpose16(&mut r);
                for (q, v) in r.iter().enumerate() {
                    let dst = y.as_mut_ptr().add((i0 + q) * n + j0);
                    _mm512_storeu_ps(dst, _mm512_add_ps(*v, b));
                }
            }
        }
    }
}

/// Bytes from one row of `x^T` to the next (`TILE` floats).
const ROW: usize = 4 * super::TILE;
/// How far ahead (in floats) the kernels prefetch the value stream.
const PF_VALS: usize = 256;
/// How far ahead (in codes) the kernels prefetch the code stream.
const PF_CODES: usize = 64;
const _: () = assert!(ROW == 1 << 8, "`offset` assumes 256-byte rows");

/// `v`, hidden from the optimizer (no instruction is emitted): each position's offset
/// passes through this, or LLVM computes the offsets of a code word in a vector register
/// and extracts them one by one (which made the AVX-512 kernel 25% slower).
#[inline(always)]
fn opaque(mut v: u64) -> u64 {
    // SAFETY: an empty template: no instruction, no memory, the register unchanged.
    unsafe {
        std::arch::asm!("/* {0} */", inout(reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

/// The byte offset, from its group's first row of `x^T`, of the row of the position at
/// bits `s..s + 2` of the code word `c` (`ROW` = 256 bytes: one shift and one mask).
#[inline(always)]
fn offset(c: u64, s: u32) -> usize {
    let v = if s >= 8 { c >> (s - 8) } else { c << (8 - s) };
    opaque(v) as usize & (3 << 8)
}

/// Walks the groups of `blk`: `f(values, c, s, x)` for each, with the group's eight
/// values, a code word `c` holding its 16-bit codes at bits `s..s + 16`, and its first row
/// of `x^T` (`xt` is the block's first). Four groups share one 64-bit code load, then
/// the rest go one at a time; the value and code streams are prefetched ahead.
///
/// # Safety
///
/// `xt` valid for reads of the block's `4 g` rows of `TILE` floats; `f` may read the eight
/// values and the four rows of `x^T` it is given.
#[inline(always)]
unsafe fn groups(
    blk: PanelBlock<'_>,
    xt: *const f32,
    mut f: impl FnMut(*const f32, u64, u32, *const u8),
) {
    // SAFETY: `cp < end` (or `cp + 4 <= end`) keeps the code reads inside the block;
    // the values (eight per code) and `x^T` rows (four per code) advance with them.
    unsafe {
        let (mut vp, mut cp, mut xg) = (blk.vals.as_ptr(), blk.codes.as_ptr(), xt.cast::<u8>());
        let end = cp.add(blk.codes.len());
        while cp.add(4) <= end {
            _mm_prefetch::<_MM_HINT_T0>(vp.wrapping_add(PF_VALS).cast());
            _mm_prefetch::<_MM_HINT_T0>(cp.wrapping_add(PF_CODES).cast());
            let c = cp.cast::<u64>().read_unaligned();
            for q in 0..4 {
                f(vp.add(8 * q), c, 16 * q as u32, xg.add(4 * q * ROW));
            }
            vp = vp.add(32);
            cp = cp.add(4);
            xg = xg.add(16 * ROW);
        }
        while cp < end {
            f(vp, u64::from(*cp), 0, xg);
            vp = vp.add(8);
            cp = cp.add(1);
            xg = xg.add(4 * ROW);
        }
    }
}

/// One panel's block against `x^T`, `T` vectors of 16 tokens per row (`wt = 16 T`): four
/// output rows of `T` accumulators each, the groups walked by [`groups`].
///
/// # Safety
///
/// AVX-512F; `xt` valid for reads of `4 g` rows of `TILE` floats (`g` the groups of
/// `blk`), `yt` for reads and writes of `PR` rows of `wt` floats.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn panel512<const T: usize>(blk: PanelBlock<'_>, xt: *const f32, yt: *mut f32, first: bool) {
    let wt = 16 * T;
    // SAFETY (whole body): rows `r < PR` of `yt`, vectors `t < T`; group `h < gb` reads
    // rows `4 h + position` (`position < 4`) of `x^T`, values `8 h .. 8 h + 8` and code
    // `h` of the block, all inside the lengths the caller guarantees.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); T]; PR];
        if !first {
            for (r, a) in acc.iter_mut().enumerate() {
                for (t, v) in a.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(yt.add(r * wt + 16 * t));
                }
            }
        }
        // `v * x^T[row at bits `s` of `c`]` into the accumulators `a` of one row.
        let fma = |a: &mut [__m512; T], v: f32, xg: *const u8, c: u64, s: u32| {
            let x = xg.add(offset(c, s));
            let v = _mm512_set1_ps(v);
            for (t, acc) in a.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(v, _mm512_loadu_ps(x.add(64 * t).cast()), *acc);
            }
        };
        groups(blk, xt, |v, c, s, gx| {
            for (r, a) in acc.iter_mut().enumerate() {
                let s = s + 4 * r as u32;
                fma(a, *v.add(2 * r), gx, c, s);
                fma(a, *v.add(2 * r + 1), gx, c, s + 2);
            }
        });
        for (r, a) in acc.iter().enumerate() {
            for (t, v) in a.iter().enumerate() {
                _mm512_storeu_ps(yt.add(r * wt + 16 * t), *v);
            }
        }
    }
}

/// Block `b` of every panel against `x^T`, `T` vectors of 16 tokens per row.
///
/// # Safety
///
/// As [`avx512`], with `wt = 16 T`.
#[target_feature(enable = "avx512f")]
unsafe fn all512<const T: usize>(
    w: &Panels24,
    b: usize,
    panels: Range<usize>,
    xt: &[f32],
    yt: &mut [f32],
    first: bool,
) {
    for (p, yp) in panels.zip(yt.chunks_exact_mut(PR * 16 * T)) {
        // SAFETY: `yp` is the panel's `PR` rows of `wt`; the rest is the caller's.
        unsafe { panel512::<T>(w.block(b, p), xt.as_ptr(), yp.as_mut_ptr(), first) };
    }
}

/// The AVX-512 block `b` of panels `panels`: adds (or, when `first`, writes) its products
/// to `yt`, their rows of `y^T`.
///
/// # Safety
///
/// AVX-512F must be available; `xt` holds the `4 g` rows of `TILE` floats of the block's
/// `g` groups, `yt` the `PR` rows of `wt` floats of each of `panels` (in range), `wt` a
/// multiple of 16 up to 64.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512(
    w: &Panels24,
    b: usize,
    panels: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    // SAFETY: the caller's guarantees, with `T = wt / 16`.
    unsafe {
        match wt / 16 {
            1 => all512::<1>(w, b, panels, xt, yt, first),
            2 => all512::<2>(w, b, panels, xt, yt, first),
            3 => all512::<3>(w, b, panels, xt, yt, first),
            4 => all512::<4>(w, b, panels, xt, yt, first),
            _ => unreachable!("tiles are 16 to 64 tokens wide"),
        }
    }
}

/// Row `R` of one panel's block, `T` vectors of 8 tokens (`wt = 8 T`), the groups walked
/// by [`groups`].
///
/// # Safety
///
/// AVX2 + FMA; `xt` as for [`panel512`], `yt` valid for reads and writes of `wt` floats
/// (the row's).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row256<const R: usize, const T: usize>(
    blk: PanelBlock<'_>,
    xt: *const f32,
    yt: *mut f32,
    first: bool,
) {
    // SAFETY (whole body): as in `panel512`, with 8-float vectors and one row.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        if !first {
            for (t, v) in acc.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(yt.add(8 * t));
            }
        }
        let fma = |acc: &mut [__m256; T], v: f32, xg: *const u8, c: u64, s: u32| {
            let x = xg.add(offset(c, s));
            let v = _mm256_set1_ps(v);
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x.add(32 * t).cast()), *acc);
            }
        };
        groups(blk, xt, |v, c, s, gx| {
            let s = s + 4 * R as u32;
            fma(&mut acc, *v.add(2 * R), gx, c, s);
            fma(&mut acc, *v.add(2 * R + 1), gx, c, s + 2);
        });
        for (t, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(yt.add(8 * t), *v);
        }
    }
}

/// Block `b` of every panel against `x^T`, a row at a time, `T` vectors of 8 tokens.
///
/// # Safety
///
/// As [`avx2`], with `wt = 8 T`.
#[target_feature(enable = "avx2,fma")]
unsafe fn all256<const T: usize>(
    w: &Panels24,
    b: usize,
    panels: Range<usize>,
    xt: &[f32],
    yt: &mut [f32],
    first: bool,
) {
    let x = xt.as_ptr();
    for (p, yp) in panels.zip(yt.chunks_exact_mut(PR * 8 * T)) {
        let (blk, y) = (w.block(b, p), yp.as_mut_ptr());
        // SAFETY: row `r < PR` of the panel starts at `y + r * 8 T`, inside `yp`; the rest
        // is the caller's.
        unsafe {
            row256::<0, T>(blk, x, y, first);
            row256::<1, T>(blk, x, y.add(8 * T), first);
            row256::<2, T>(blk, x, y.add(16 * T), first);
            row256::<3, T>(blk, x, y.add(24 * T), first);
        }
    }
}

/// The AVX2 block `b` of panels `panels`.
///
/// # Safety
///
/// AVX2 and FMA must be available; otherwise as [`avx512`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2(
    w: &Panels24,
    b: usize,
    panels: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    // SAFETY: the caller's guarantees, with `T = wt / 8`.
    unsafe {
        match wt / 8 {
            2 => all256::<2>(w, b, panels, xt, yt, first),
            4 => all256::<4>(w, b, panels, xt, yt, first),
            6 => all256::<6>(w, b, panels, xt, yt, first),
            8 => all256::<8>(w, b, panels, xt, yt, first),
            _ => unreachable!("tiles are 16 to 64 tokens wide"),
        }
    }
}
