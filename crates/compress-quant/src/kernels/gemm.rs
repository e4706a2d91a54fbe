//! Exact int8 GEMM: `C[m, n] (i32) = A[m, k] x B[k, n]` with B (the weights) `i8` and A either
//! `i8` ([`gemm_i8`]) or `u8` ([`gemm_u8i8`]).
//!
//! B is packed once ([`PackedB`]) into panels of [`NR`] columns; within a panel, each group of
//! four consecutive `k` (a *quad*) stores the four bytes of every column side by side, so that
//! one 64-byte load feeds `vpdpbusd` 16 columns x 4 `k` and the four A bytes of a quad are one
//! broadcast `i32`. `vpdpbusd` multiplies unsigned by signed bytes: signed activations are
//! shifted by +128 (`a ^ 0x80`) and `128 x` the column sums of B, stored with the packing, are
//! subtracted at the end. The products `(a + 128) b` are at most `255 x 128` in magnitude and
//! the `i32` sums wrap (`vpdpbusd`, not `vpdpbusds`), so the result is exact modulo `2^32`,
//! hence exact whenever the true `A B` fits `i32`: always for `k <= 131_071`.
//!
//! Blocking: rows run in blocks whose A (over all of `k`) fits [`A_BLOCK_BYTES`] of L2; for
//! each row block and panel, `k` runs in blocks of [`KC_QUADS`] quads (the panel's block,
//! 24 KiB, stays in L1 while the row tiles pass) and the panel's strip of C stays in cache
//! across them. The micro-kernels are in `micro.rs`.

pub use super::micro::{MR, NR};
use super::micro::{QUAD_BYTES, Tile, tile_portable};

/// Quads of `k` per cache block (512 values of `k`).
const KC_QUADS: usize = 128;
/// Bytes of A per row block (kept in L2 across all panels).
const A_BLOCK_BYTES: usize = 384 << 10;
/// Most rows per row block.
const MC_MAX: usize = 1024;

/// B packed for [`gemm_i8`] / [`gemm_u8i8`]: `ceil(n / NR)` panels of `ceil(k / 4)` quads,
/// zero-padded, and the column sums of B.
///
/// ```
/// use compress_quant::kernels::{PackedB, gemm_i8};
/// // W is [n = 2, k = 3] (a Linear weight [out, in]); C = A W^T.
/// let w: Vec<i8> = vec![1, 2, 3, -1, 0, 1];
/// let b = PackedB::from_nk(&w, 2, 3);
/// let a: Vec<i8> = vec![1, 1, 1, 2, 0, -1];
/// let mut c = vec![0i32; 4];
/// gemm_i8(&a, 2, &b, &mut c);
/// assert_eq!(c, vec![6, 0, -1, -3]);
/// assert_eq!(b.to_nk(), w);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedB {
    n: usize,
    k: usize,
    quads: usize,
    data: Vec<i8>,
    col_sums: Vec<i32>,
}

impl PackedB {
    /// Packs `w` given as `[n, k]` row-major (the layout of a Linear weight `[out, in]`),
    /// so that the GEMM computes `A W^T`.
    ///
    /// # Panics
    ///
    /// If `w.len() != n * k`.
    #[track_caller]
    pub fn from_nk(w: &[i8], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "weight length must be n * k");
        let mut p = Self::empty(n, k);
        for (j, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (panel, jj) = (j / NR, j % NR);
            let base = panel * p.quads * QUAD_BYTES + 4 * jj;
            for (kk, &v) in row.iter().enumerate() {
                p.data[base + (kk / 4) * QUAD_BYTES + kk % 4] = v;
            }
            p.col_sums[j] = row.iter().map(|&v| i32::from(v)).sum();
        }
        p
    }

    /// Packs `b` given as `[k, n]` row-major (a plain right-hand matrix).
    ///
    /// # Panics
    ///
    /// If `b.len() != k * n`.
    #[track_caller]
    pub fn from_kn(b: &[i8], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "matrix length must be k * n");
        let mut p = Self::empty(n, k);
        for (kk, row) in b.chunks_exact(n.max(1)).enumerate().take(k) {
            let off = (kk / 4) * QUAD_BYTES + kk % 4;
            for (j, &v) in row.iter().enumerate() {
                p.data[(j / NR) * p.quads * QUAD_BYTES + off + 4 * (j % NR)] = v;
                p.col_sums[j] += i32::from(v);
            }
        }
        p
    }

    fn empty(n: usize, k: usize) -> Self {
        let quads = k.div_ceil(4);
        Self {
            n,
            k,
            quads,
            data: vec![0; n.div_ceil(NR) * quads * QUAD_BYTES],
            col_sums: vec![0; n],
        }
    }

    /// The packed matrix back in `[n, k]` row-major order (the Linear weight layout).
    pub fn to_nk(&self) -> Vec<i8> {
        let mut w = vec![0i8; self.n * self.k];
        for (j, row) in w.chunks_exact_mut(self.k.max(1)).enumerate().take(self.n) {
            let base = (j / NR) * self.quads * QUAD_BYTES + 4 * (j % NR);
            for (kk, v) in row.iter_mut().enumerate() {
                *v = self.data[base + (kk / 4) * QUAD_BYTES + kk % 4];
            }
        }
        w
    }

    /// Number of columns `n` (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension `k` (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The row stride a `u8` A needs for [`gemm_u8i8`]: `k` rounded up to a multiple of 4.
    pub fn lda(&self) -> usize {
        4 * self.quads
    }

    /// Sum of each column of B (for zero-point corrections).
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes of packed storage (padding included) and column sums.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 4 * self.col_sums.len()
    }
}

/// Which micro-kernel to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

/// The fastest path this CPU supports under the `NETCOMPRESS_ISA` cap.
fn best_path() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        if compress_core::Isa::Avx512.enabled() && GemmKernel::Avx512Vnni.is_available() {
            return Path::Avx512Vnni;
        }
        if compress_core::Isa::uncapped() && GemmKernel::AvxVnni.is_available() {
            return Path::AvxVnni;
        }
        if super::has_avx2() {
            return Path::Avx2;
        }
    }
    Path::Portable
}

/// The name of the micro-kernel [`gemm_i8`] uses on this CPU: `"avx512-vnni"`, `"avx-vnni"`,
/// `"avx2"` or `"portable"`.
pub fn gemm_i8_kernel() -> &'static str {
    match best_path() {
        Path::Portable => "portable",
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        Path::AvxVnni => "avx-vnni",
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni => "avx512-vnni",
    }
}

fn tile(path: Path, t: Tile<'_>) {
    match path {
        Path::Portable => tile_portable(t),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Path::Avx2` is only chosen after a runtime AVX2 check.
        Path::Avx2 => unsafe { super::micro::tile_avx2(t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Path::AvxVnni` is only chosen after runtime AVX2 and AVX-VNNI checks.
        Path::AvxVnni => unsafe { super::micro::tile_avxvnni(t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Path::Avx512Vnni` is only chosen after runtime AVX-512F/BW/VNNI checks.
        Path::Avx512Vnni => unsafe { super::micro::tile_avx512(t) },
    }
}

/// `c = a b` in wrapping `i32`, `a` `u8` `[m, lda]`, `c` `[m, ldc]`, over rows `0..m`.
fn run_u8(path: Path, a: &[u8], lda: usize, m: usize, b: &PackedB, c: &mut [i32], ldc: usize) {
    let (n, quads) = (b.n, b.quads);
    if m == 0 || n == 0 {
        return;
    }
    if quads == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            row[..n].fill(0);
        }
        return;
    }
    let panels = n.div_ceil(NR);
    // Rows per block: the block of A over the whole of `k` stays in L2 while every panel
    // passes, and each panel's column strip of C stays in cache across the `k` blocks.
    let mc = ((A_BLOCK_BYTES / lda.max(1)) / MR * MR).clamp(MR, MC_MAX);
    for m0 in (0..m).step_by(mc) {
        let m1 = (m0 + mc).min(m);
        for p in 0..panels {
            let cols = NR.min(n - p * NR);
            for k0 in (0..quads).step_by(KC_QUADS) {
                let kc = KC_QUADS.min(quads - k0);
                let start = (p * quads + k0) * QUAD_BYTES;
                let bs = &b.data[start..start + kc * QUAD_BYTES];
                for r0 in (m0..m1).step_by(MR) {
                    let rows = MR.min(m1 - r0);
                    tile(
                        path,
                        Tile {
                            a: &a[r0 * lda + 4 * k0..],
                            lda,
                            rows,
                            b: bs,
                            quads: kc,
                            c: &mut c[r0 * ldc + p * NR..],
                            ldc,
                            cols,
                            accumulate: k0 > 0,
                        },
                    );
                }
            }
        }
    }
}

/// `C = A B` in wrapping `i32` arithmetic with `A` unsigned: `a` is `[m, lda]` row-major `u8`
/// (`lda >= b.lda()`; the bytes of each row beyond `k` are ignored), `c` is `[m, n]`
/// row-major (overwritten). For a zero point `z`, `sum_k (a - z) b = C - z * col_sums`.
///
/// ```
/// use compress_quant::kernels::{PackedB, gemm_u8i8};
/// let b = PackedB::from_nk(&[1, -2, 3], 1, 3); // one column
/// let a = [200u8, 100, 0, 0]; // one row, k = 3, lda = 4
/// let mut c = [0i32; 1];
/// gemm_u8i8(&a, 4, 1, &b, &mut c);
/// assert_eq!(c, [0]);
/// ```
///
/// # Panics
///
/// If `lda < b.lda()`, `a.len() < m * lda` or `c.len() != m * n`.
#[track_caller]
pub fn gemm_u8i8(a: &[u8], lda: usize, m: usize, b: &PackedB, c: &mut [i32]) {
    check_u8(a, lda, m, b, c);
    run_u8(best_path(), a, lda, m, b, c, b.n);
}

#[track_caller]
fn check_u8(a: &[u8], lda: usize, m: usize, b: &PackedB, c: &[i32]) {
    assert!(lda >= b.lda(), "lda {lda} must be at least {}", b.lda());
    assert!(a.len() >= m * lda, "A must hold m * lda bytes");
    assert_eq!(c.len(), m * b.n, "C must be m * n");
}

/// `gemm_u8i8` over row blocks in parallel when rayon has more than one thread and the work
/// is large enough to pay for it.
pub(crate) fn gemm_u8i8_par(a: &[u8], lda: usize, m: usize, b: &PackedB, c: &mut [i32]) {
    use rayon::prelude::*;
    check_u8(a, lda, m, b, c);
    let path = best_path();
    let threads = rayon::current_num_threads();
    let work = m * b.n * b.k;
    if threads < 2 || m < 2 * MR || work < (1 << 22) {
        run_u8(path, a, lda, m, b, c, b.n);
        return;
    }
    let rows = m.div_ceil(threads).div_ceil(MR) * MR;
    c.par_chunks_mut(rows * b.n)
        .zip(a.par_chunks(rows * lda))
        .for_each(|(cc, aa)| run_u8(path, aa, lda, cc.len() / b.n, b, cc, b.n));
}

fn run(a: &[i8], m: usize, b: &PackedB, c: &mut [i32], path: Path) {
    let (n, k) = (b.n, b.k);
    assert_eq!(a.len(), m * k, "A must be m * k");
    assert_eq!(c.len(), m * n, "C must be m * n");
    let lda = b.lda();
    let mut au = vec![0u8; m * lda];
    for (dst, src) in au
        .chunks_exact_mut(lda.max(1))
        .zip(a.chunks_exact(k.max(1)))
    {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = (s as u8) ^ 0x80;
        }
    }
    run_u8(path, &au, lda, m, b, c, n);
    for row in c.chunks_exact_mut(n.max(1)) {
        for (v, &s) in row.iter_mut().zip(&b.col_sums) {
            *v = v.wrapping_sub(s.wrapping_mul(128));
        }
    }
}

/// `C = A B` with `A` `[m, k]` row-major `i8`, `B` packed, `C` `[m, n]` row-major
/// (overwritten). Uses the widest kernel the CPU has (see [`gemm_i8_kernel`]); all give
/// identical results.
///
/// # Panics
///
/// If `a.len() != m * k` or `c.len() != m * n`.
#[track_caller]
pub fn gemm_i8(a: &[i8], m: usize, b: &PackedB, c: &mut [i32]) {
    run(a, m, b, c, best_path());
}

/// A micro-kernel choice for [`gemm_i8_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GemmKernel {
    /// Scalar Rust.
    Portable,
    /// AVX2: `vpdpbusd` emulated exactly with `vpmaddwd` on widened bytes.
    Avx2,
    /// AVX-VNNI `vpdpbusd` on `ymm`.
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd` on `zmm`.
    Avx512Vnni,
}

impl GemmKernel {
    /// Whether the running CPU supports this kernel.
    pub fn is_available(self) -> bool {
        use compress_core::{CpuFeature, Isa};
        match self {
            Self::Portable => true,
            Self::Avx2 => Isa::detected() >= Isa::Avx2,
            Self::AvxVnni => CpuFeature::AvxVnni.detected(),
            Self::Avx512Vnni => CpuFeature::Avx512Vnni.detected(),
        }
    }
}

/// [`gemm_i8`] with an explicit micro-kernel (for benchmarks and tests); every kernel gives
/// the same bits.
///
/// # Errors
///
/// An invalid-config error if the CPU does not support `kernel`.
///
/// # Panics
///
/// As [`gemm_i8`].
#[track_caller]
pub fn gemm_i8_with(
    kernel: GemmKernel,
    a: &[i8],
    m: usize,
    b: &PackedB,
    c: &mut [i32],
) -> Result<(), crate::QuantError> {
    if !kernel.is_available() {
        return Err(compress_core::CoreError::config(
            "kernel",
            format!("{kernel:?} is not supported by this CPU"),
        )
        .into());
    }
    let path = match kernel {
        GemmKernel::Portable => Path::Portable,
        #[cfg(target_arch = "x86_64")]
        GemmKernel::Avx2 => Path::Avx2,
        #[cfg(target_arch = "x86_64")]
        GemmKernel::AvxVnni => Path::AvxVnni,
        #[cfg(target_arch = "x86_64")]
        GemmKernel::Avx512Vnni => Path::Avx512Vnni,
        #[allow(unreachable_patterns)]
        _ => Path::Portable, // unavailable kernels were rejected above
    };
    run(a, m, b, c, path);
    Ok(())
}

/// The portable twin of [`gemm_i8`] (scalar Rust, no `unsafe`).
///
/// # Panics
///
/// As [`gemm_i8`].
#[track_caller]
pub fn gemm_i8_portable(a: &[i8], m: usize, b: &PackedB, c: &mut [i32]) {
    run(a, m, b, c, Path::Portable);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `A W^T` with `A` `[m, lda]` (first `k` columns used) and `W` `[n, k]`.
    fn naive_strided<T: Copy + Into<i32>>(
        a: &[T],
        lda: usize,
        (m, k): (usize, usize),
        w: &[i8],
        n: usize,
    ) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|t| a[i * lda + t].into() * i32::from(w[j * k + t]))
                    .sum();
            }
        }
        c
    }

    fn naive(a: &[i8], m: usize, k: usize, w: &[i8], n: usize) -> Vec<i32> {
        naive_strided(a, k, (m, k), w, n)
    }

    const ALL: [GemmKernel; 4] = [
        GemmKernel::Portable,
        GemmKernel::Avx2,
        GemmKernel::AvxVnni,
        GemmKernel::Avx512Vnni,
    ];

    proptest! {
        #[test]
        fn every_kernel_equals_naive(
            (m, n, k, a, w) in (1usize..20, 1usize..110, 1usize..40).prop_flat_map(|(m, n, k)| (
                Just(m), Just(n), Just(k),
                prop::collection::vec(any::<i8>(), m * k),
                prop::collection::vec(any::<i8>(), n * k),
            ))
        ) {
            let b = PackedB::from_nk(&w, n, k);
            let want = naive(&a, m, k, &w, n);
            let mut c = vec![0; m * n];
            gemm_i8(&a, m, &b, &mut c);
            prop_assert_eq!(&c, &want);
            for kernel in ALL {
                let mut c3 = vec![7; m * n];
                if gemm_i8_with(kernel, &a, m, &b, &mut c3).is_ok() {
                    prop_assert_eq!(&c3, &want, "{:?}", kernel);
                }
            }
            prop_assert_eq!(b.to_nk(), w);
        }

        #[test]
        fn from_kn_equals_from_nk(
            (n, k, w) in (1usize..60, 1usize..20).prop_flat_map(|(n, k)| (
                Just(n), Just(k), prop::collection::vec(any::<i8>(), n * k)))
        ) {
            let kn: Vec<i8> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            prop_assert_eq!(PackedB::from_kn(&kn, k, n), PackedB::from_nk(&w, n, k));
        }
    }

    #[test]
    fn long_k_crosses_cache_blocks_exactly() {
        // k spans several KC blocks and m several MC blocks; extreme values everywhere.
        let (m, n, k) = (MC_MAX + 9, 50, 4 * KC_QUADS * 2 + 7);
        let a: Vec<i8> = (0..m * k)
            .map(|i| if i % 3 == 0 { -128 } else { 127 })
            .collect();
        let w: Vec<i8> = (0..n * k)
            .map(|i| if i % 5 == 0 { 127 } else { -128 })
            .collect();
        let b = PackedB::from_nk(&w, n, k);
        let want = naive(&a, m, k, &w, n);
        for kernel in ALL {
            let mut c = vec![0; m * n];
            if gemm_i8_with(kernel, &a, m, &b, &mut c).is_ok() {
                assert_eq!(c, want, "{kernel:?}");
            }
        }
    }

    #[test]
    fn u8_gemm_with_wide_lda_and_parallel_rows() {
        let (m, n, k, lda) = (203, 130, 157, 164);
        let a: Vec<u8> = (0..m * lda).map(|i| (i * 7 % 256) as u8).collect();
        let w: Vec<i8> = (0..n * k).map(|i| (i * 13 % 256) as u8 as i8).collect();
        let b = PackedB::from_nk(&w, n, k);
        let want = naive_strided(&a, lda, (m, k), &w, n);
        let mut c = vec![0; m * n];
        gemm_u8i8(&a, lda, m, &b, &mut c);
        assert_eq!(c, want);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut c2 = vec![0; m * n];
        pool.install(|| gemm_u8i8_par(&a, lda, m, &b, &mut c2));
        assert_eq!(c2, want);
    }
}
