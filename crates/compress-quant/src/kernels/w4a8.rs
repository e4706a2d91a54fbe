//! The W4A8 GEMM: `u8` activations (one scale and zero point per row) times 4-bit weights
//! (one scale and zero point per group of `k`), exact integer dot products per group.
//!
//! The weights stay 4-bit in memory ([`PackedW4`]): panels of [`NR`] columns whose quads
//! (four consecutive `k` of every column, the `vpdpbusd` layout of [`super::PackedB`]) are
//! stored in pairs, one quad in the low nibbles and the next in the high nibbles of the same
//! 192 bytes. Before a panel meets the rows of A, its codes are unpacked with a mask or a
//! shift and shifted by their group's zero point into signed bytes `w' = q - z` in a small
//! buffer (the panel over all of `k`: 72 KiB at `k = 1536`, L2-resident).
//!
//! For row `r` (scale `s_r`, zero point `z_r`), column `j` and group `g` (scale `s_gj`,
//! `S_gj = sum_{k in g} w'_kj`):
//!
//! `y[r][j] = fma(c_rj, s_r, b_j)` with `c_rj = fma(f32(d_grj), s_gj, c_rj)` over the groups
//! in order, where `d_grj = sum_{k in g} a_rk w'_kj - z_r S_gj` is exact in `i32` (the
//! accumulator starts at `-z_r S_gj` and `vpdpbusd` adds the products): the activation
//! zero point is handled exactly by the precomputed weight sums. Every path runs the same
//! integer and float operations in the same order, so all give the same bits.
//!
//! Paths: AVX-512 VNNI (`vpdpbusd` on `zmm`, a 4-row x 48-column tile with its `i32` and
//! `f32` accumulators in registers), AVX2 (`vpmaddubsw` + `vpmaddwd`, exact because
//! `|w'| <= 15` keeps every pair sum `<= 2 * 255 * 15`, far from `i16` saturation), and
//! portable scalar Rust.

use super::GemmKernel;
use super::micro::NR;

/// Bytes of one quad of a panel (four `k` of [`NR`] columns).
const QUAD: usize = 4 * NR;
/// Rows of A per micro-tile.
const MR4: usize = 4;
/// Bytes of A per row block (kept in L2 while the panels pass).
const A_BLOCK_BYTES: usize = 256 << 10;

/// 4-bit weights `[n, k]` with groups of `group` along `k`, packed for [`w4a8_gemm`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedW4 {
    n: usize,
    k: usize,
    group: usize,
    /// Per panel and pair of quads, 192 bytes of two nibbles (`q` in `0..=15`).
    data: Vec<u8>,
    /// Per panel and group, [`NR`] zero points (`0..=15`; padded columns 0).
    zps: Vec<u8>,
    /// Per panel and group, [`NR`] scales (padded columns 0).
    scales: Vec<f32>,
    /// Per panel and group, [`NR`] sums `S_gj` of `q - z` over the group.
    sums: Vec<i32>,
}

impl PackedW4 {
    /// Packs codes `q[j * k + t]` in `0..=15` with zero points and scales per (row `j`,
    /// group), `[n, k / group]` row-major. The caller guarantees `group % 8 == 0`,
    /// `k % group == 0`, `q.len() == n * k` and the parameter lengths.
    pub(crate) fn new(
        q: &[u8],
        zps: &[u8],
        scales: &[f32],
        n: usize,
        k: usize,
        group: usize,
    ) -> Self {
        assert!(group > 0 && group.is_multiple_of(8) && k.is_multiple_of(group));
        assert_eq!(q.len(), n * k, "codes");
        let groups = k / group;
        assert!(
            zps.len() == n * groups && scales.len() == n * groups,
            "group parameters"
        );
        let (panels, pairs) = (n.div_ceil(NR), k / 8);
        let mut data = vec![0u8; panels * pairs * QUAD];
        let mut pz = vec![0u8; panels * groups * NR];
        let mut ps = vec![0.0f32; panels * groups * NR];
        let mut sums = vec![0i32; panels * groups * NR];
        for j in 0..n {
            let (p, jj) = (j / NR, j % NR);
            let row = &q[j * k..(j + 1) * k];
            for (t, &c) in row.iter().enumerate() {
                let (pair, rest) = (t / 8, t % 8);
                let byte = &mut data[(p * pairs + pair) * QUAD + 4 * jj + rest % 4];
                *byte |= if rest < 4 { c } else { c << 4 };
            }
            for g in 0..groups {
                let at = (p * groups + g) * NR + jj;
                let z = zps[j * groups + g];
                pz[at] = z;
                ps[at] = scales[j * groups + g];
                let codes = &row[g * group..(g + 1) * group];
                sums[at] = codes.iter().map(|&c| i32::from(c) - i32::from(z)).sum();
            }
        }
        Self {
            n,
            k,
            group,
            data,
            zps: pz,
            scales: ps,
            sums,
        }
    }

    /// Output features.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Inputs per group.
    pub(crate) fn group(&self) -> usize {
        self.group
    }

    /// The code, zero point and scale of weight `(j, t)`.
    pub(crate) fn get(&self, j: usize, t: usize) -> (u8, u8, f32) {
        let (p, jj, g) = (j / NR, j % NR, t / self.group);
        let byte = self.data[(p * (self.k / 8) + t / 8) * QUAD + 4 * jj + t % 4];
        let q = if t % 8 < 4 { byte & 0x0F } else { byte >> 4 };
        let at = (p * (self.k / self.group) + g) * NR + jj;
        (q, self.zps[at], self.scales[at])
    }

    /// Bytes of the stored arrays (packed codes, one byte per zero point, scales; padding
    /// to whole panels included).
    pub(crate) fn size_bytes(&self) -> usize {
        self.data.len() + self.zps.len() + 4 * self.scales.len()
    }

    /// [`Self::size_bytes`] plus the precomputed weight sums.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.size_bytes() + 4 * self.sums.len()
    }
}

super::isa_dispatch! {
    /// Unpacks panel `p` into `ub` as signed bytes `q - z` (`k / 4` quads of [`QUAD`] bytes).
    fn unpack(w: &PackedW4, p: usize, ub: &mut [i8]) as unpack_body {
        let (pairs, groups) = (w.k / 8, w.k / w.group);
        let pairs_per_group = w.group / 8;
        let mut z4 = [0i8; QUAD];
        for g in 0..groups {
            let zs = &w.zps[(p * groups + g) * NR..][..NR];
            for (d, &z) in z4.chunks_exact_mut(4).zip(zs) {
                d.fill(z as i8);
            }
            for t in g * pairs_per_group..(g + 1) * pairs_per_group {
                let src = &w.data[(p * pairs + t) * QUAD..][..QUAD];
                let (lo, hi) = ub[2 * t * QUAD..][..2 * QUAD].split_at_mut(QUAD);
                for (((l, h), &b), &z) in lo.iter_mut().zip(hi.iter_mut()).zip(src).zip(&z4) {
                    *l = (b & 0x0F) as i8 - z;
                    *h = (b >> 4) as i8 - z;
                }
            }
        }
    }
}

/// The per-row quantization of A: `u8` codes `[m, lda]`, scales and zero points.
#[derive(Clone, Copy)]
pub(crate) struct RowsU8<'a> {
    /// Codes, row stride `lda` (`>= k`).
    pub(crate) codes: &'a [u8],
    /// Row stride.
    pub(crate) lda: usize,
    /// One scale per row.
    pub(crate) scales: &'a [f32],
    /// One zero point per row (`u8` code space).
    pub(crate) zps: &'a [i32],
}

/// One micro-tile: `rows` rows of A against one unpacked panel, written to `out`.
struct Tile<'a> {
    a: RowsU8<'a>,
    rows: usize,
    /// The unpacked panel (`k / 4` quads).
    ub: &'a [i8],
    w: &'a PackedW4,
    p: usize,
    /// The panel's bias ([`NR`] values, padded with zeros).
    bias: &'a [f32; NR],
    /// Output from the tile's first row and the panel's first column, row stride `ldo`.
    out: &'a mut [f32],
    ldo: usize,
    cols: usize,
}

impl Tile<'_> {
    #[track_caller]
    fn check(&self) {
        let k = self.w.k;
        assert!((1..=MR4).contains(&self.rows) && (1..=NR).contains(&self.cols));
        assert!(self.a.lda >= k && self.a.codes.len() >= (self.rows - 1) * self.a.lda + k);
        assert!(self.a.scales.len() >= self.rows && self.a.zps.len() >= self.rows);
        assert!(self.ub.len() >= k / 4 * QUAD);
        assert!(self.w.sums.len() >= (self.p + 1) * (k / self.w.group) * NR);
        assert!(self.out.len() >= (self.rows - 1) * self.ldo + self.cols);
    }

    /// The panel's group parameters from group 0: sums and scales, [`NR`] per group.
    fn params(&self) -> (&[i32], &[f32]) {
        let groups = self.w.k / self.w.group;
        let at = self.p * groups * NR;
        let end = at + groups * NR;
        (&self.w.sums[at..end], &self.w.scales[at..end])
    }

    /// What the SIMD tiles for exactly `rows` rows read, after checking the tile: groups,
    /// quads per group, the panel's sums and scales, the bases of A and of the unpacked
    /// panel, and the row stride of A.
    #[cfg(target_arch = "x86_64")]
    #[track_caller]
    fn operands(&self, rows: usize) -> Operands<'_> {
        self.check();
        assert_eq!(self.rows, rows);
        let (sums, scales) = self.params();
        let (a, b) = (self.a.codes.as_ptr(), self.ub.as_ptr());
        let groups = self.w.k / self.w.group;
        (groups, self.w.group / 4, sums, scales, a, b, self.a.lda)
    }

    /// Stores finished rows `[rows][NR]` (valid columns only).
    fn store(&mut self, y: &[[f32; NR]]) {
        for (r, row) in y.iter().enumerate().take(self.rows) {
            self.out[r * self.ldo..r * self.ldo + self.cols].copy_from_slice(&row[..self.cols]);
        }
    }
}

/// The operands of a SIMD tile ([`Tile::operands`]).
#[cfg(target_arch = "x86_64")]
type Operands<'a> = (
    usize,
    usize,
    &'a [i32],
    &'a [f32],
    *const u8,
    *const i8,
    usize,
);

fn tile_portable(mut t: Tile<'_>) {
    t.check();
    let (k, group) = (t.w.k, t.w.group);
    let (sums, scales) = t.params();
    let mut y = [[0.0f32; NR]; MR4];
    for (r, yr) in y.iter_mut().enumerate().take(t.rows) {
        let a = &t.a.codes[r * t.a.lda..][..k];
        let (sr, zr) = (t.a.scales[r], t.a.zps[r]);
        for (j, yv) in yr.iter_mut().enumerate() {
            let mut c = 0.0f32;
            for g in 0..k / group {
                let mut d = zr.wrapping_mul(sums[g * NR + j]).wrapping_neg();
                for (kk, &av) in a.iter().enumerate().skip(g * group).take(group) {
                    let wv = t.ub[(kk / 4) * QUAD + 4 * j + kk % 4];
                    d = d.wrapping_add(i32::from(av) * i32::from(wv));
                }
                c = (d as f32).mul_add(scales[g * NR + j], c);
            }
            *yv = c.mul_add(sr, t.bias[j]);
        }
    }
    t.store(&y);
}

/// AVX-512 VNNI tile for exactly `R` rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn tile_avx512<const R: usize>(mut t: Tile<'_>) {
    use std::arch::x86_64::{
        __m512i, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_loadu_si512, _mm512_mullo_epi32, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_setzero_si512, _mm512_storeu_ps, _mm512_sub_epi32,
    };
    let (groups, qpg, sums, scales, ap, bp, lda) = t.operands(R);
    let mut c = [[_mm512_setzero_ps(); 3]; R];
    for g in 0..groups {
        let gs = &sums[g * NR..][..NR];
        let gc = &scales[g * NR..][..NR];
        let mut ws = [_mm512_setzero_si512(); 3];
        for (v, w) in ws.iter_mut().enumerate() {
            // SAFETY: `gs` holds NR = 48 sums: three 16-lane loads.
            *w = unsafe { _mm512_loadu_si512(gs[16 * v..].as_ptr().cast::<__m512i>()) };
        }
        let mut acc = [[_mm512_setzero_si512(); 3]; R];
        for (r, a) in acc.iter_mut().enumerate() {
            let z = _mm512_set1_epi32(t.a.zps[r]);
            for v in 0..3 {
                a[v] = _mm512_sub_epi32(a[v], _mm512_mullo_epi32(z, ws[v]));
            }
        }
        for q in g * qpg..(g + 1) * qpg {
            // SAFETY: `check` asserted `ub.len() >= k / 4 * QUAD` (q < k / 4, three 64-byte
            // loads within the quad) and every row's `k` bytes of A (`4 q + 4 <= k`).
            unsafe {
                let bq = bp.add(q * QUAD);
                let b0 = _mm512_loadu_si512(bq.cast());
                let b1 = _mm512_loadu_si512(bq.add(64).cast());
                let b2 = _mm512_loadu_si512(bq.add(128).cast());
                for (r, a) in acc.iter_mut().enumerate() {
                    let quad = ap.add(r * lda + 4 * q).cast::<i32>().read_unaligned();
                    let av = _mm512_set1_epi32(quad);
                    a[0] = _mm512_dpbusd_epi32(a[0], av, b0);
                    a[1] = _mm512_dpbusd_epi32(a[1], av, b1);
                    a[2] = _mm512_dpbusd_epi32(a[2], av, b2);
                }
            }
        }
        for v in 0..3 {
            // SAFETY: 16 of the 48 scales.
            let s = unsafe { _mm512_loadu_ps(gc[16 * v..].as_ptr()) };
            for (cr, a) in c.iter_mut().zip(&acc) {
                cr[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[v]), s, cr[v]);
            }
        }
    }
    let mut y = [[0.0f32; NR]; R];
    for (r, (yr, cr)) in y.iter_mut().zip(&c).enumerate() {
        let s = _mm512_set1_ps(t.a.scales[r]);
        for v in 0..3 {
            // SAFETY: 16 of the 48 bias values and 16 of the row's 48 outputs.
            unsafe {
                let b = _mm512_loadu_ps(t.bias[16 * v..].as_ptr());
                _mm512_storeu_ps(yr[16 * v..].as_mut_ptr(), _mm512_fmadd_ps(cr[v], s, b));
            }
        }
    }
    t.store(&y);
}

/// AVX2 tile for exactly `R` rows: the panel in six strips of 8 columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2<const R: usize>(mut t: Tile<'_>) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_cvtepi32_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_mullo_epi32,
        _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_setzero_si256, _mm256_storeu_ps, _mm256_sub_epi32,
    };
    let (groups, qpg, sums, scales, ap, bp, lda) = t.operands(R);
    let ones = _mm256_set1_epi16(1);
    let mut y = [[0.0f32; NR]; R];
    for s in 0..NR / 8 {
        if 8 * s >= t.cols {
            break;
        }
        let mut c = [_mm256_setzero_ps(); R];
        for g in 0..groups {
            // SAFETY: 8 of the group's 48 sums.
            let ws = unsafe { _mm256_loadu_si256(sums[g * NR + 8 * s..].as_ptr().cast()) };
            let mut acc = [_mm256_setzero_si256(); R];
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_sub_epi32(*a, _mm256_mullo_epi32(_mm256_set1_epi32(t.a.zps[r]), ws));
            }
            for q in g * qpg..(g + 1) * qpg {
                // SAFETY: as in the AVX-512 tile; the strip's 32 bytes lie within the quad.
                unsafe {
                    let b = _mm256_loadu_si256(bp.add(q * QUAD + 32 * s).cast::<__m256i>());
                    for (r, a) in acc.iter_mut().enumerate() {
                        let quad = ap.add(r * lda + 4 * q).cast::<i32>().read_unaligned();
                        let pairs = _mm256_maddubs_epi16(_mm256_set1_epi32(quad), b);
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
            // SAFETY: 8 of the group's 48 scales.
            let sc = unsafe { _mm256_loadu_ps(scales[g * NR + 8 * s..].as_ptr()) };
            for (cr, a) in c.iter_mut().zip(&acc) {
                *cr = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*a), sc, *cr);
            }
        }
        for (r, (yr, cr)) in y.iter_mut().zip(&c).enumerate() {
            // SAFETY: 8 of the 48 bias values and of the row's 48 outputs.
            unsafe {
                let b = _mm256_loadu_ps(t.bias[8 * s..].as_ptr());
                let v = _mm256_fmadd_ps(*cr, _mm256_set1_ps(t.a.scales[r]), b);
                _mm256_storeu_ps(yr[8 * s..].as_mut_ptr(), v);
            }
        }
    }
    t.store(&y);
}

/// Runs `$tile::<R>(t)` for the tile's row count `R` (1 to [`MR4`]).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($tile:ident, $t:expr) => {
        match $t.rows {
            1 => $tile::<1>($t),
            2 => $tile::<2>($t),
            3 => $tile::<3>($t),
            _ => $tile::<MR4>($t),
        }
    };
}

fn tile(kernel: GemmKernel, t: Tile<'_>) {
    match kernel {
        GemmKernel::Portable => tile_portable(t),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512Vnni` is only chosen after runtime AVX-512F/BW/VNNI checks.
        GemmKernel::Avx512Vnni => unsafe { by_rows!(tile_avx512, t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX2 kernels are only chosen after runtime AVX2 and FMA checks.
        GemmKernel::Avx2 | GemmKernel::AvxVnni => unsafe { by_rows!(tile_avx2, t) },
        // Never available off x86-64.
        #[cfg(not(target_arch = "x86_64"))]
        _ => tile_portable(t),
    }
}

/// `out[m, n] = dequantized (A W^T) + bias` on `path`; `ub` is the unpack buffer (grown).
fn run(
    path: GemmKernel,
    a: RowsU8<'_>,
    m: usize,
    w: &PackedW4,
    bias: &[f32],
    out: &mut [f32],
    ub: &mut Vec<i8>,
) {
    let (n, k) = (w.n, w.k);
    if ub.len() < k / 4 * QUAD {
        ub.resize(k / 4 * QUAD, 0);
    }
    let mc = ((A_BLOCK_BYTES / a.lda.max(1)) / MR4 * MR4).max(MR4);
    for m0 in (0..m).step_by(mc) {
        let m1 = (m0 + mc).min(m);
        for p in 0..n.div_ceil(NR) {
            unpack(w, p, ub);
            let cols = NR.min(n - p * NR);
            let mut pb = [0.0f32; NR];
            pb[..cols].copy_from_slice(&bias[p * NR..p * NR + cols]);
            for r0 in (m0..m1).step_by(MR4) {
                let t = Tile {
                    a: RowsU8 {
                        codes: &a.codes[r0 * a.lda..],
                        lda: a.lda,
                        scales: &a.scales[r0..],
                        zps: &a.zps[r0..],
                    },
                    rows: MR4.min(m1 - r0),
                    ub,
                    w,
                    p,
                    bias: &pb,
                    out: &mut out[r0 * n + p * NR..],
                    ldo: n,
                    cols,
                };
                tile(path, t);
            }
        }
    }
}

/// `out = (A W^T) + bias` (see the module docs) with the fastest path of this CPU, over row
/// chunks in parallel when rayon has several threads and the work is large; `ub` is scratch
/// kept across calls.
///
/// # Panics
///
/// If `a` does not hold `m` rows of `k` codes with their parameters, `bias.len() != n` or
/// `out.len() != m * n`.
pub(crate) fn w4a8_gemm(
    a: RowsU8<'_>,
    m: usize,
    w: &PackedW4,
    bias: &[f32],
    out: &mut [f32],
    ub: &mut Vec<i8>,
) {
    w4a8_gemm_with(GemmKernel::best(), a, m, w, bias, out, ub);
}

/// [`w4a8_gemm`] on an explicit path (tests compare them).
pub(crate) fn w4a8_gemm_with(
    path: GemmKernel,
    a: RowsU8<'_>,
    m: usize,
    w: &PackedW4,
    bias: &[f32],
    out: &mut [f32],
    ub: &mut Vec<i8>,
) {
    use rayon::prelude::*;
    let (n, k) = (w.n, w.k);
    assert!(
        a.lda >= k && a.codes.len() >= m * a.lda,
        "A holds m rows of k codes"
    );
    assert!(a.scales.len() >= m && a.zps.len() >= m, "row parameters");
    assert_eq!(bias.len(), n, "bias");
    assert_eq!(out.len(), m * n, "output");
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads < 2 || m < 4 * MR4 || m * n * k < (1 << 22) {
        run(path, a, m, w, bias, out, ub);
        return;
    }
    let rows = m.div_ceil(threads).div_ceil(MR4) * MR4;
    out.par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(i, oc)| {
            let r0 = i * rows;
            let chunk = RowsU8 {
                codes: &a.codes[r0 * a.lda..],
                lda: a.lda,
                scales: &a.scales[r0..],
                zps: &a.zps[r0..],
            };
            run(path, chunk, oc.len() / n, w, bias, oc, &mut Vec::new());
        });
}

#[cfg(test)]
mod tests;
