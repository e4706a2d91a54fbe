//! Micro-kernels of the `u8 x i8` GEMM: one [`MR`] x [`NR`] tile of `C += A B` over a run of
//! `k` quads (groups of four consecutive `k`).
//!
//! Layouts (see [`super::gemm`]): A is row-major `u8` with a row stride `lda >= 4 * quads`;
//! a B panel holds, for each quad, [`NR`] columns of four consecutive `i8` (one `i32` lane of
//! `vpdpbusd` per column). Every path computes `sum_t a[r][4q + t] * b[q][j][t]` in wrapping
//! `i32` arithmetic, so all are equal bit for bit:
//!
//! - AVX-512 VNNI: `vpdpbusd` on `zmm`, the whole `MR x NR` tile in 24 accumulators;
//! - AVX-VNNI: `vpdpbusd` on `ymm`, the tile as six `4 x 16` sub-tiles;
//! - AVX2: the same sub-tiles, `vpdpbusd` emulated exactly by splitting the bytes of each lane
//!   into their even and odd halves widened to `i16` (`vpmaddwd` of `u8 x i8` products is
//!   exact; `vpmaddubsw` would saturate);
//! - portable: scalar.

use super::epilogue::{Dequant, Out, OutLayout};

/// Rows of A per micro-tile.
pub const MR: usize = 8;
/// Columns of B per panel and micro-tile (three `zmm` of 16 `i32` lanes).
pub const NR: usize = 48;
/// Bytes of one quad of a B panel.
pub(crate) const QUAD_BYTES: usize = 4 * NR;

/// One micro-tile's operands: `c[r * ldc + j] (+)= sum_q sum_t a[r * lda + 4q + t] *
/// b[q * QUAD_BYTES + 4j + t]` for `r < rows`, `j < cols`; with an epilogue ([`TileOut`]),
/// the finished sums (plus the partial sums in `c` when `accumulate`) are dequantized into
/// `f32` instead.
pub(crate) struct Tile<'a> {
    /// A from the tile's first row (`rows` rows of stride `lda`).
    pub(crate) a: &'a [u8],
    /// Row stride of A.
    pub(crate) lda: usize,
    /// Valid rows (`1..=MR`); the missing ones repeat the last row and are not stored.
    pub(crate) rows: usize,
    /// The B panel's quads for this tile (`quads * QUAD_BYTES` bytes, `i8` bit patterns).
    pub(crate) b: &'a [i8],
    /// Number of quads.
    pub(crate) quads: usize,
    /// C from the tile's first element: the `i32` result, or the partial sums of the earlier
    /// `k` blocks when an epilogue finishes the tile (unused, and may be empty, when the
    /// epilogue has no partial sums to add).
    pub(crate) c: &'a mut [i32],
    /// Row stride of C.
    pub(crate) ldc: usize,
    /// Valid columns (`1..=NR`).
    pub(crate) cols: usize,
    /// Add to C instead of overwriting it.
    pub(crate) accumulate: bool,
    /// Where the finished tile goes in `f32`, if it is the last `k` block of a fused
    /// dequantizing GEMM.
    pub(crate) out: Option<TileOut<'a>>,
}

/// The fused dequantization of one finished tile: rows `row0..row0 + rows` and columns
/// `col0..col0 + cols` of the whole product, written through [`Dequant::row`].
pub(crate) struct TileOut<'a> {
    /// The factors and layout of the output.
    pub(crate) dq: &'a Dequant<'a>,
    /// The whole output.
    pub(crate) out: &'a mut [Out],
    /// First row of the tile in the whole product.
    pub(crate) row0: usize,
    /// First column of the tile in the whole product.
    pub(crate) col0: usize,
}

impl Tile<'_> {
    /// Checks every bound the SIMD kernels rely on.
    #[track_caller]
    fn check(&self) {
        assert!((1..=MR).contains(&self.rows) && (1..=NR).contains(&self.cols));
        assert!(self.lda >= 4 * self.quads);
        assert!(self.a.len() >= (self.rows - 1) * self.lda + 4 * self.quads);
        assert!(self.b.len() >= self.quads * QUAD_BYTES);
        if self.out.is_none() || self.accumulate {
            assert!(self.c.len() >= (self.rows - 1) * self.ldc + self.cols);
        }
    }

    /// Offsets of the MR rows of A (missing rows repeat the last valid one).
    fn row_offsets(&self) -> [usize; MR] {
        std::array::from_fn(|r| r.min(self.rows - 1) * self.lda)
    }

    /// Writes (or adds) a full `MR x NR` result into C, or finishes it through the
    /// epilogue; valid rows and columns only.
    #[inline(always)]
    fn store(&mut self, tile: &[[i32; NR]; MR]) {
        if let Some(o) = &mut self.out {
            let mut sums = *tile;
            if self.accumulate {
                for (r, s) in sums.iter_mut().enumerate().take(self.rows) {
                    let crow = &self.c[r * self.ldc..r * self.ldc + self.cols];
                    for (sv, cv) in s.iter_mut().zip(crow) {
                        *sv = cv.wrapping_add(*sv);
                    }
                }
            }
            o.dq.tile(o.row0, self.rows, o.col0, self.cols, &sums, &mut *o.out);
            return;
        }
        for (r, t) in tile.iter().enumerate().take(self.rows) {
            let crow = &mut self.c[r * self.ldc..r * self.ldc + self.cols];
            if self.accumulate {
                for (cv, tv) in crow.iter_mut().zip(t) {
                    *cv = cv.wrapping_add(*tv);
                }
            } else {
                crow.copy_from_slice(&t[..self.cols]);
            }
        }
    }
}

/// Portable micro-kernel.
pub(crate) fn tile_portable(mut t: Tile<'_>) {
    t.check();
    let offs = t.row_offsets();
    let mut acc = [[0i32; NR]; MR];
    for q in 0..t.quads {
        let bq = &t.b[q * QUAD_BYTES..(q + 1) * QUAD_BYTES];
        for (r, row) in acc.iter_mut().enumerate() {
            let a = &t.a[offs[r] + 4 * q..offs[r] + 4 * q + 4];
            for (j, v) in row.iter_mut().enumerate() {
                let b = &bq[4 * j..4 * j + 4];
                let s: i32 = (0..4).map(|i| i32::from(a[i]) * i32::from(b[i])).sum();
                *v = v.wrapping_add(s);
            }
        }
    }
    t.store(&acc);
}

/// AVX-512 VNNI micro-kernel: up to 8 rows x 3 `zmm`, dispatched to a kernel compiled for
/// exactly the tile's rows (a 1-row tile does one eighth of the work of a full one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(crate) fn tile_avx512(t: Tile<'_>) {
    t.check();
    match t.cols.div_ceil(16) {
        1 => tile_avx512_cols::<1>(t),
        2 => tile_avx512_cols::<2>(t),
        _ => tile_avx512_cols::<3>(t),
    }
}

/// [`tile_avx512`] for tiles of at most `16 V` columns (narrow layers load and multiply only
/// the vectors they use).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn tile_avx512_cols<const V: usize>(t: Tile<'_>) {
    match t.rows {
        1 => tile_avx512_rows::<1, V>(t),
        2 => tile_avx512_rows::<2, V>(t),
        3 => tile_avx512_rows::<3, V>(t),
        4 => tile_avx512_rows::<4, V>(t),
        5 => tile_avx512_rows::<5, V>(t),
        6 => tile_avx512_rows::<6, V>(t),
        7 => tile_avx512_rows::<7, V>(t),
        _ => tile_avx512_rows::<MR, V>(t),
    }
}

/// [`tile_avx512`] for `R == t.rows` rows and `V` vectors of 16 columns (`16 V >= t.cols`):
/// one `vpdpbusd` per row and vector per quad with the four A bytes broadcast.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn tile_avx512_rows<const R: usize, const V: usize>(t: Tile<'_>) {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_dpbusd_epi32, _mm512_loadu_si512,
        _mm512_mask_loadu_epi32, _mm512_mask_storeu_epi32, _mm512_set1_epi32, _mm512_setzero_si512,
        _mm512_storeu_si512,
    };
    t.check();
    assert_eq!(t.rows, R);
    assert!(V <= NR / 16 && t.cols <= 16 * V);
    let offs = t.row_offsets();
    let (ap, bp) = (t.a.as_ptr(), t.b.as_ptr());
    let mut acc = [[_mm512_setzero_si512(); V]; R];
    for q in 0..t.quads {
        // SAFETY: `check` asserted `b.len() >= quads * QUAD_BYTES` and every row offset
        // (`r < R == rows`) plus `4 quads` within `a`; `q < quads` and `64 V <= QUAD_BYTES`,
        // so the 64-byte loads and the 4-byte reads are in bounds (all unaligned).
        unsafe {
            let bq = bp.add(q * QUAD_BYTES);
            let b: [__m512i; V] =
                std::array::from_fn(|v| _mm512_loadu_si512(bq.add(64 * v).cast::<__m512i>()));
            for (r, a) in acc.iter_mut().enumerate() {
                let quad = ap.add(offs[r] + 4 * q).cast::<i32>().read_unaligned();
                let av = _mm512_set1_epi32(quad);
                for (av_acc, bv) in a.iter_mut().zip(&b) {
                    *av_acc = _mm512_dpbusd_epi32(*av_acc, av, *bv);
                }
            }
        }
    }
    let masks: [u16; V] = std::array::from_fn(|v| {
        let lanes = t.cols.saturating_sub(16 * v).min(16);
        ((1u32 << lanes) - 1) as u16
    });
    if let Some(o) = &t.out {
        if o.dq.layout == OutLayout::RowMajor {
            let mut t = t;
            // By value: a reference to `acc` would let its address escape and keep the
            // accumulators in memory through the whole product loop (2.7x slower).
            epilogue_avx512_row_major(&mut t, acc, &masks);
            return;
        }
        let mut tile = [[0i32; NR]; MR];
        for (row, a) in tile.iter_mut().zip(&acc) {
            for (v, val) in a.iter().enumerate() {
                // SAFETY: each `val` fills exactly 16 `i32` of the row (`16 V <= NR`).
                unsafe { _mm512_storeu_si512(row[16 * v..].as_mut_ptr().cast(), *val) };
            }
        }
        let mut t = t;
        t.store(&tile);
        return;
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, &val) in row.iter().enumerate() {
            if masks[v] == 0 {
                continue;
            }
            // SAFETY: lanes `16 v + l` with mask bit `l` set satisfy `16 v + l < cols`, and
            // `check` asserted `(rows - 1) ldc + cols <= c.len()` with `r < rows`; masked
            // lanes are not touched.
            unsafe {
                let dst = t.c.as_mut_ptr().add(r * t.ldc + 16 * v);
                let val = if t.accumulate {
                    _mm512_add_epi32(val, _mm512_mask_loadu_epi32(val, masks[v], dst))
                } else {
                    val
                };
                _mm512_mask_storeu_epi32(dst, masks[v], val);
            }
        }
    }
}

/// The fused dequantization of a finished AVX-512 tile in the row-major layout, from the
/// accumulators: `(acc (+ partial) - z cs) as f32 * (s ws) + b` per lane, with the same
/// wrapping integer and separate float operations as [`Dequant::row`], so the bits agree
/// with the scalar epilogue.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn epilogue_avx512_row_major<const R: usize, const V: usize>(
    t: &mut Tile<'_>,
    acc: [[std::arch::x86_64::__m512i; V]; R],
    masks: &[u16; V],
) {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_add_ps, _mm512_cvtepi32_ps, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_epi32, _mm512_maskz_loadu_ps, _mm512_mul_ps, _mm512_mullo_epi32,
        _mm512_set1_epi32, _mm512_set1_ps, _mm512_sub_epi32,
    };
    let Some(o) = &mut t.out else { return };
    let dq = o.dq;
    let n = dq.col_sums.len();
    // `Dequant::check` (run before any tile) bounds rows by the row factors and the output by
    // `m * n`; columns `col0 + 16 v + lane` with the lane's mask bit set are below `n`.
    assert!(o.row0 + R <= dq.row_scales.len().min(dq.row_zps.len()));
    assert!(o.col0 + t.cols <= n && o.out.len() >= (o.row0 + R) * n);
    for (r, a) in acc.iter().enumerate() {
        let row = o.row0 + r;
        let s = _mm512_set1_ps(dq.row_scales[row]);
        let z = _mm512_set1_epi32(dq.row_zps[row]);
        for (v, (&val, &mask)) in a.iter().zip(masks).enumerate() {
            if mask == 0 {
                continue;
            }
            let c0 = o.col0 + 16 * v;
            // SAFETY: masked lanes `l` satisfy `c0 + l < col0 + cols <= n`, so every load of
            // the column factors and every store to row `row` of the `[m, n]` output is in
            // bounds (asserted above); the partial sums are bounded by `Tile::check`.
            unsafe {
                let sum = if t.accumulate {
                    let p = _mm512_maskz_loadu_epi32(mask, t.c.as_ptr().add(r * t.ldc + 16 * v));
                    _mm512_add_epi32(p, val)
                } else {
                    val
                };
                let cs = _mm512_maskz_loadu_epi32(mask, dq.col_sums.as_ptr().add(c0));
                let ws = _mm512_maskz_loadu_ps(mask, dq.col_scales.as_ptr().add(c0));
                let b = _mm512_maskz_loadu_ps(mask, dq.bias.as_ptr().add(c0));
                let q = _mm512_sub_epi32(sum, _mm512_mullo_epi32(z, cs));
                let y = _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_mul_ps(s, ws));
                let y = _mm512_add_ps(y, b);
                let dst = o.out.as_mut_ptr().add(row * n + c0).cast::<f32>();
                _mm512_mask_storeu_ps(dst, mask, y);
            }
        }
    }
}

/// The `ymm` kernels: the tile as `MR / 4` x `NR / 16` sub-tiles of 4 rows x 2 `ymm`
/// (8 accumulators), `$dp(acc, a, b)` being one exact `vpdpbusd` (native or emulated).
#[cfg(target_arch = "x86_64")]
macro_rules! ymm_tile {
    ($t:ident, $dp:expr) => {{
        use std::arch::x86_64::{
            __m256i, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_setzero_si256,
            _mm256_storeu_si256,
        };
        $t.check();
        let offs = $t.row_offsets();
        let (ap, bp) = ($t.a.as_ptr(), $t.b.as_ptr());
        let mut out = [[0i32; NR]; MR];
        for r0 in (0..MR).step_by(4) {
            if r0 >= $t.rows {
                break;
            }
            for s in 0..NR / 16 {
                if 16 * s >= $t.cols {
                    break;
                }
                let mut acc = [[_mm256_setzero_si256(); 2]; 4];
                for q in 0..$t.quads {
                    // SAFETY: as in the AVX-512 kernel: `check` bounds every B quad
                    // (`s * 64 + 64 <= QUAD_BYTES`) and every A row's `4 quads` bytes.
                    unsafe {
                        let bq = bp.add(q * QUAD_BYTES + 64 * s);
                        let b0 = _mm256_loadu_si256(bq.cast::<__m256i>());
                        let b1 = _mm256_loadu_si256(bq.add(32).cast::<__m256i>());
                        for (i, a) in acc.iter_mut().enumerate() {
                            let quad = ap.add(offs[r0 + i] + 4 * q).cast::<i32>().read_unaligned();
                            let av = _mm256_set1_epi32(quad);
                            a[0] = $dp(a[0], av, b0);
                            a[1] = $dp(a[1], av, b1);
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    for (h, v) in a.iter().enumerate() {
                        let dst = &mut out[r0 + i][16 * s + 8 * h..16 * s + 8 * h + 8];
                        // SAFETY: `dst` holds exactly 8 `i32`.
                        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast::<__m256i>(), *v) };
                    }
                }
            }
        }
        let mut t = $t;
        t.store(&out);
    }};
}

/// AVX-VNNI micro-kernel (`vpdpbusd` on `ymm`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
pub(crate) fn tile_avxvnni(t: Tile<'_>) {
    use std::arch::x86_64::_mm256_dpbusd_avx_epi32;
    ymm_tile!(t, _mm256_dpbusd_avx_epi32);
}

/// Exact AVX2 emulation of one `vpdpbusd` lane group: the even and odd bytes of each 16-bit
/// half, widened (A as unsigned, B as signed), multiplied and pair-summed by `vpmaddwd`
/// (`|u8 x i8| <= 32640`, so no `i16` overflow), then added with wrapping `i32` adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dpbusd_avx2(
    acc: std::arch::x86_64::__m256i,
    a: std::arch::x86_64::__m256i,
    b: std::arch::x86_64::__m256i,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{
        _mm256_add_epi32, _mm256_and_si256, _mm256_madd_epi16, _mm256_set1_epi16,
        _mm256_slli_epi16, _mm256_srai_epi16, _mm256_srli_epi16,
    };
    let a_even = _mm256_and_si256(a, _mm256_set1_epi16(0x00FF));
    let a_odd = _mm256_srli_epi16::<8>(a);
    let b_even = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(b));
    let b_odd = _mm256_srai_epi16::<8>(b);
    let lo = _mm256_madd_epi16(a_even, b_even);
    let hi = _mm256_madd_epi16(a_odd, b_odd);
    _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi))
}

/// AVX2 micro-kernel (exact emulated `vpdpbusd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) fn tile_avx2(t: Tile<'_>) {
    ymm_tile!(t, dpbusd_avx2);
}
