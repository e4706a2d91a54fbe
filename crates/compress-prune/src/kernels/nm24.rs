//! `y[m, n] = x[m, k] W^T (+ b)` with `W` `[n, k]` in packed 2:4 form: two kept values per
//! group of four inputs, row by row, and a 4-bit code per group (`p0 | p1 << 2`, the kept
//! positions, two codes per byte, low nibble first).
//!
//! Layout: `x` is copied once per call into `x^T` tiles of 64 tokens (`[k, 64]`, tokens
//! zero-padded to a multiple of 16), so every kept weight is one broadcast multiply-add over
//! a contiguous row of 64 tokens (four AVX-512 vectors, eight AVX2 ones) while the output
//! tile `y^T` stays in registers. The inputs are walked in blocks of about 32 KiB of `x^T`
//! (L1), and each block serves every output row before the next is loaded. The AVX-512
//! kernel keeps four output rows (16 accumulators) in flight, the AVX2 one a single row.
//!
//! The SIMD paths fuse each multiply-add and the portable one does not, so the paths agree
//! within floating-point tolerance, not bit for bit (each is tested against an `f64` dense
//! reference).

use std::ops::Range;

/// A 2:4 weight as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packed24<'a> {
    /// Output features `n` (rows of `W`).
    pub(crate) rows: usize,
    /// Input features `k` (columns of `W`), a multiple of 4.
    pub(crate) cols: usize,
    /// `rows * cols / 2` kept values, row-major, two per group.
    pub(crate) vals: &'a [f32],
    /// `(rows * cols / 4).div_ceil(2)` bytes of group codes.
    pub(crate) codes: &'a [u8],
}

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F (x86-64).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Path {
    /// The widest path [`compress_core::Isa::current`] allows.
    pub(crate) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if compress_core::Isa::Avx512.enabled() {
                return Self::Avx512;
            }
            if compress_core::Isa::Avx2.enabled() {
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Every path this CPU can run (for tests and benches).
    pub(crate) fn all_available() -> Vec<Self> {
        let mut v = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = compress_core::Isa::detected();
            if cpu >= compress_core::Isa::Avx2 {
                v.push(Self::Avx2);
            }
            if cpu >= compress_core::Isa::Avx512 {
                v.push(Self::Avx512);
            }
        }
        v
    }
}

/// Tokens per tile of `x^T`.
const TILE: usize = 64;
/// Tokens are padded to a multiple of this.
const PAD: usize = 16;
/// Bytes of `x^T` per input block (most of a 48 KiB L1).
const BLOCK_BYTES: usize = 32 * 1024;
/// Products of at least this many multiply-adds run their token tiles on the rayon pool
/// (as `compress_nn::gemm` splits large products).
const PAR_MIN_MACS: usize = 1 << 21;

/// The code of group `q` (row-major over the whole matrix).
#[inline(always)]
fn code(codes: &[u8], q: usize) -> usize {
    usize::from((codes[q >> 1] >> ((q & 1) * 4)) & 15)
}

/// `y = x W^T (+ b)` on `path`; `x` is `[m, k]`, `y` `[m, n]`, both row-major; `scratch`
/// is reused between calls (it grows to `(k + n) * round_up(m, 16) + 16` floats).
///
/// # Panics
///
/// When the slice lengths do not match the shapes (callers build them from a validated
/// matrix), or `path` is not available on this CPU.
#[track_caller]
pub(crate) fn spmm24(
    path: Path,
    w: Packed24<'_>,
    x: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(k.is_multiple_of(4), "k = {k} is not a multiple of 4");
    assert_eq!(w.vals.len(), n * k / 2, "values are not [{n}, {}]", k / 2);
    assert_eq!(w.codes.len(), (n * k / 4).div_ceil(2), "codes length");
    assert_eq!(x.len(), m * k, "x is not [{m}, {k}]");
    assert_eq!(y.len(), m * n, "y is not [{m}, {n}]");
    assert!(bias.is_none_or(|b| b.len() == n), "bias is not [{n}]");
    assert!(
        Path::all_available().contains(&path),
        "{path:?} unavailable"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in y.chunks_exact_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
        }
        return;
    }
    let mp = m.div_ceil(PAD) * PAD;
    let need = (k + n) * mp + PAD;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    // Align the tiles to 64 bytes (a cache line, one AVX-512 vector).
    let skip = scratch.as_ptr().align_offset(64).min(PAD);
    let (xt_all, yt_all) = scratch[skip..skip + (k + n) * mp].split_at_mut(k * mp);
    // One tile of up to 64 tokens: its rows of `x` and `y` and its own scratch, so tiles
    // are independent and large products run them on the rayon pool.
    let tile = |xc: &[f32], xt: &mut [f32], yt: &mut [f32], yc: &mut [f32]| {
        let (real, wt) = (xc.len() / k, xt.len() / k);
        transpose_in(path, xc, k, real, 0..wt, xt);
        let groups = k / 4;
        let block = (BLOCK_BYTES / (16 * wt)).max(1);
        let mut g0 = 0;
        while g0 < groups {
            let g1 = (g0 + block).min(groups);
            run_block(path, w, g0..g1, xt, wt, yt, g0 == 0);
            g0 = g1;
        }
        transpose_out(path, yt, wt, n, real, 0, bias, yc);
    };
    let jobs: Vec<_> = x
        .chunks(TILE * k)
        .zip(xt_all.chunks_mut(TILE * k))
        .zip(yt_all.chunks_mut(TILE * n))
        .zip(y.chunks_mut(TILE * n))
        .collect();
    if jobs.len() > 1 && rayon::current_num_threads() > 1 && m * n * k >= PAR_MIN_MACS {
        use rayon::prelude::*;
        jobs.into_par_iter()
            .for_each(|(((xc, xt), yt), yc)| tile(xc, xt, yt, yc));
    } else {
        for (((xc, xt), yt), yc) in jobs {
            tile(xc, xt, yt, yc);
        }
    }
}

/// `xt[c * wt + i] = x[tokens.start + i, c]` (zero for tokens `>= m`), the 16 x 16 blocks
/// on AVX-512 when `path` is it.
fn transpose_in(path: Path, x: &[f32], k: usize, m: usize, tokens: Range<usize>, xt: &mut [f32]) {
    let (start, wt) = (tokens.start, tokens.len());
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (k16, r16) = (k / 16 * 16, wt.min(m - start) / 16 * 16);
        // SAFETY: AVX-512F is available (`spmm24` checked the path); every block read is
        // inside `x` (tokens `start + i + 15 < m`, columns `c + 15 < k`) and every block
        // written inside `xt` (`[k, wt]`, `i + 15 < wt`).
        unsafe { simd::transpose_in(x, k, start, xt, wt, k16, r16) };
        tin_scalar(x, k, m, start, xt, wt, k16..k, 0..wt);
        tin_scalar(x, k, m, start, xt, wt, 0..k16, r16..wt);
        return;
    }
    let _ = path;
    tin_scalar(x, k, m, start, xt, wt, 0..k, 0..wt);
}

/// The scalar part of [`transpose_in`] for columns `cols` and tile tokens `toks`.
#[allow(clippy::too_many_arguments)]
fn tin_scalar(
    x: &[f32],
    k: usize,
    m: usize,
    start: usize,
    xt: &mut [f32],
    wt: usize,
    cols: Range<usize>,
    toks: Range<usize>,
) {
    const B: usize = 16;
    for c0 in cols.clone().step_by(B) {
        let c1 = (c0 + B).min(cols.end);
        for i in toks.clone() {
            let tok = start + i;
            if tok < m {
                for (c, &v) in (c0..c1).zip(&x[tok * k + c0..tok * k + c1]) {
                    xt[c * wt + i] = v;
                }
            } else {
                for c in c0..c1 {
                    xt[c * wt + i] = 0.0;
                }
            }
        }
    }
}

/// `y[tok, j] = yt[j * wt + tok - start] (+ b[j])` for the real tokens of the tile, the
/// 16 x 16 blocks on AVX-512 when `path` is it.
#[allow(clippy::too_many_arguments)]
fn transpose_out(
    path: Path,
    yt: &[f32],
    wt: usize,
    n: usize,
    m: usize,
    start: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let real = wt.min(m - start);
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 {
        let (n16, r16) = (n / 16 * 16, real / 16 * 16);
        // SAFETY: AVX-512F is available; blocks read from `yt` (`[n, wt]`, `j + 15 < n`,
        // `i + 15 < wt`) and written to `y` (`[m, n]`, token `start + i + 15 < m`) are in
        // bounds, as is the bias (`n` entries).
        unsafe { simd::transpose_out(yt, wt, n, start, bias, y, n16, r16) };
        tout_scalar(yt, wt, n, start, bias, y, n16..n, 0..real);
        tout_scalar(yt, wt, n, start, bias, y, 0..n16, r16..real);
        return;
    }
    let _ = path;
    tout_scalar(yt, wt, n, start, bias, y, 0..n, 0..real);
}

/// The scalar part of [`transpose_out`] for outputs `outs` and tile tokens `toks`.
#[allow(clippy::too_many_arguments)]
fn tout_scalar(
    yt: &[f32],
    wt: usize,
    n: usize,
    start: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
    outs: Range<usize>,
    toks: Range<usize>,
) {
    const B: usize = 16;
    for j0 in outs.clone().step_by(B) {
        let j1 = (j0 + B).min(outs.end);
        for i in toks.clone() {
            let row = &mut y[(start + i) * n + j0..(start + i) * n + j1];
            for (j, o) in (j0..j1).zip(row.iter_mut()) {
                *o = yt[j * wt + i] + bias.map_or(0.0, |b| b[j]);
            }
        }
    }
}

/// Adds (or, when `first`, writes) the contribution of groups `groups` of every row to
/// the `y^T` tile `[n, wt]`.
fn run_block(
    path: Path,
    w: Packed24<'_>,
    groups: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    debug_assert!(xt.len() == w.cols * wt && yt.len() == w.rows * wt && wt.is_multiple_of(PAD));
    match path {
        Path::Portable => block_portable(w, groups, xt, wt, yt, first),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            let b = simd::Block::new(w, groups, xt, wt, yt, first);
            // SAFETY: `spmm24` checked that AVX2 + FMA are available (`Path::all_available`);
            // `Block::new` took the pointers from slices whose lengths `spmm24` checked
            // (`xt` is `[k, wt]`, `yt` `[n, wt]`, `wt` a multiple of 16, every code < 4).
            unsafe { simd::avx2(b) }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            let b = simd::Block::new(w, groups, xt, wt, yt, first);
            // SAFETY: as above, with AVX-512F.
            unsafe { simd::avx512(b) }
        }
    }
}

/// The portable block: one output row at a time, the tile row as accumulators.
fn block_portable(
    w: Packed24<'_>,
    groups: Range<usize>,
    xt: &[f32],
    wt: usize,
    yt: &mut [f32],
    first: bool,
) {
    let gpr = w.cols / 4;
    for (j, acc) in yt.chunks_exact_mut(wt).enumerate() {
        if first {
            acc.fill(0.0);
        }
        for g in groups.clone() {
            let q = j * gpr + g;
            let c = code(w.codes, q);
            let (v0, v1) = (w.vals[2 * q], w.vals[2 * q + 1]);
            let x0 = &xt[(4 * g + (c & 3)) * wt..][..wt];
            let x1 = &xt[(4 * g + (c >> 2)) * wt..][..wt];
            for ((a, &p), &r) in acc.iter_mut().zip(x0).zip(x1) {
                *a = *a + v0 * p + v1 * r;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::{
        __m512, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps,
        _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps,
        _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
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
    /// constant here, so row offsets are shifts). When groups pair up within code bytes
    /// (even `gpr`, `g0`, `g1`), two groups are decoded from one byte.
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
            if b.gpr.is_multiple_of(2) && b.g0.is_multiple_of(2) {
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

    /// One row of the block, `T` vectors of 8 tokens.
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
            for g in b.g0..b.g1 {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// A random 2:4 matrix: values and codes, plus its dense twin.
    fn random24(n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<u8>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let groups = n * k / 4;
        let mut vals = Vec::with_capacity(2 * groups);
        let mut codes = vec![0u8; groups.div_ceil(2)];
        let mut dense = vec![0.0f64; n * k];
        for q in 0..groups {
            let p0 = rng.random_range(0..3usize);
            let p1 = rng.random_range(p0 + 1..4usize);
            let (a, b) = (
                rng.random_range(-1.0f32..1.0),
                rng.random_range(-1.0f32..1.0),
            );
            vals.extend([a, b]);
            codes[q / 2] |= ((p0 | (p1 << 2)) as u8) << ((q % 2) * 4);
            dense[q * 4 + p0] = f64::from(a);
            dense[q * 4 + p1] = f64::from(b);
        }
        (vals, codes, dense)
    }

    #[test]
    fn large_products_split_over_tiles_match_the_dense_product() {
        // 200 x 256 x 64: above the parallel threshold, four token tiles (the last partial).
        let (m, k, n) = (200, 256, 64);
        let (vals, codes, dense) = random24(n, k, 5);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) / 40.0)
            .collect();
        let w = Packed24 {
            rows: n,
            cols: k,
            vals: &vals,
            codes: &codes,
        };
        for path in Path::all_available() {
            let mut y = vec![f32::NAN; m * n];
            spmm24(path, w, &x, m, None, &mut y, &mut Vec::new());
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|c| f64::from(x[i * k + c]) * dense[j * k + c])
                        .sum();
                    assert!(
                        (f64::from(y[i * n + j]) - want).abs() < 1e-3,
                        "{path:?} [{i},{j}]"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_path_matches_the_dense_product(
            m in 0usize..150, k4 in 0usize..70, n in 0usize..40,
            bias in any::<bool>(), seed in 0u64..1000,
        ) {
            let k = 4 * k4;
            let (vals, codes, dense) = random24(n, k, seed);
            let mut rng = StdRng::seed_from_u64(seed ^ 7);
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let b = bias.then_some(&b[..]);
            let w = Packed24 { rows: n, cols: k, vals: &vals, codes: &codes };
            let mut scratch = Vec::new();
            for path in Path::all_available() {
                let mut y = vec![f32::NAN; m * n];
                spmm24(path, w, &x, m, b, &mut y, &mut scratch);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|c| f64::from(x[i * k + c]) * dense[j * k + c])
                            .sum::<f64>()
                            + b.map_or(0.0, |b| f64::from(b[j]));
                        let got = f64::from(y[i * n + j]);
                        prop_assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + k as f64).sqrt() * 2.0,
                            "{path:?} m={m} k={k} n={n} y[{i},{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}
