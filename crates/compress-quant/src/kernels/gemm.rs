//! Exact int8 GEMM: `C[m, n] (i32) = A[m, k] (i8) x B[k, n] (i8)`.
//!
//! B (the weights) is packed once into panels of [`NR`] columns in which each pair of
//! consecutive `k` rows is interleaved per column (`B[2p][j], B[2p+1][j]`), so one 32-byte
//! load gives 16 column pairs. A is packed per call into blocks of [`MR`] rows as sign-extended
//! `i16` pairs. The AVX2 micro-kernel broadcasts one `(A[r][2p], A[r][2p+1])` pair, sign-extends
//! 16 B bytes to `i16` (`vpmovsxbw`) and multiplies with `vpmaddwd`, whose `i16 x i16` products
//! and pair sums are exact in `i32` (no `vpmaddubsw` saturation), then adds with wrapping `i32`
//! adds. The portable path does the same arithmetic with `wrapping_add`, so both are equal bit
//! for bit (a property test checks it). Sums are exact while `k * 128 * 128 < 2^31`, i.e. for
//! `k <= 131_071`.

/// Rows of A per micro-tile (12 accumulators with [`NR`] = 16 keep the AVX2 register file full
/// and enough independent dot-product chains in flight).
pub const MR: usize = 6;
/// Columns of B per panel / micro-tile.
pub const NR: usize = 16;
/// `k` pairs per cache block (1024 values of `k`).
const KC_PAIRS: usize = 512;
/// Row blocks of A per cache block (96 rows).
const MC_BLOCKS: usize = 16;

/// B packed for [`gemm_i8`]: `ceil(n / NR)` panels of `ceil(k / 2)` interleaved column pairs.
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
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedB {
    n: usize,
    k: usize,
    kpairs: usize,
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
        Self::build(n, k, |kk, j| w[j * k + kk])
    }

    /// Packs `b` given as `[k, n]` row-major (a plain right-hand matrix).
    ///
    /// # Panics
    ///
    /// If `b.len() != k * n`.
    #[track_caller]
    pub fn from_kn(b: &[i8], k: usize, n: usize) -> Self {
        assert_eq!(b.len(), k * n, "matrix length must be k * n");
        Self::build(n, k, |kk, j| b[kk * n + j])
    }

    fn build(n: usize, k: usize, at: impl Fn(usize, usize) -> i8) -> Self {
        let kpairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * kpairs * 2 * NR];
        let mut col_sums = vec![0i32; n];
        for p in 0..panels {
            for kp in 0..kpairs {
                let base = (p * kpairs + kp) * 2 * NR;
                for jj in 0..NR {
                    let j = p * NR + jj;
                    if j >= n {
                        continue;
                    }
                    for h in 0..2 {
                        let kk = 2 * kp + h;
                        if kk < k {
                            let v = at(kk, j);
                            data[base + 2 * jj + h] = v;
                            col_sums[j] += i32::from(v);
                        }
                    }
                }
            }
        }
        Self {
            n,
            k,
            kpairs,
            data,
            col_sums,
        }
    }

    /// Number of columns `n` (output features).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Inner dimension `k` (input features).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Sum of each column of B (for zero-point corrections).
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }

    /// Bytes of packed storage (padding included).
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }
}

/// A packed into `ceil(m / MR)` blocks of `kpairs` x `MR` little-endian `i16` pairs.
fn pack_a(a: &[i8], m: usize, k: usize, kpairs: usize) -> Vec<i32> {
    let blocks = m.div_ceil(MR);
    let mut out = vec![0i32; blocks * kpairs * MR];
    for rb in 0..blocks {
        for r in 0..MR {
            let row = rb * MR + r;
            if row >= m {
                continue;
            }
            let src = &a[row * k..(row + 1) * k];
            for kp in 0..kpairs {
                let lo = src[2 * kp];
                let hi = src.get(2 * kp + 1).copied().unwrap_or(0);
                let v = u32::from(i16::from(lo) as u16) | (u32::from(i16::from(hi) as u16) << 16);
                out[(rb * kpairs + kp) * MR + r] = v as i32;
            }
        }
    }
    out
}

/// Portable micro-kernel: `tile[r][j] = sum_p a_pair[p][r] . b_pair[p][j]`.
fn tile_portable(a: &[i32], b: &[i8], kp: usize, tile: &mut [i32; MR * NR]) {
    tile.fill(0);
    for p in 0..kp {
        let bp = &b[p * 2 * NR..(p + 1) * 2 * NR];
        for r in 0..MR {
            let pair = a[p * MR + r] as u32;
            let a0 = i32::from(pair as u16 as i16);
            let a1 = i32::from((pair >> 16) as u16 as i16);
            for j in 0..NR {
                let s = a0 * i32::from(bp[2 * j]) + a1 * i32::from(bp[2 * j + 1]);
                tile[r * NR + j] = tile[r * NR + j].wrapping_add(s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tile_avx2(a: &[i32], b: &[i8], kp: usize, tile: &mut [i32; MR * NR]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_cvtepi8_epi16,
        _mm256_madd_epi16, _mm256_set1_epi32, _mm256_setzero_si256, _mm256_storeu_si256,
    };
    assert!(a.len() >= kp * MR && b.len() >= kp * 2 * NR);
    let mut acc: [__m256i; 2 * MR] = [_mm256_setzero_si256(); 2 * MR];
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for p in 0..kp {
        // SAFETY: `p < kp` and the lengths were asserted above, so the 32 bytes at
        // `bp + 32 p` and the 4 `i32` at `ap + 4 p` are in bounds; unaligned loads are used.
        let (b0, b1, a_pairs) = unsafe {
            let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(p * 32).cast::<__m128i>()));
            let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(p * 32 + 16).cast::<__m128i>()));
            let a_pairs: [i32; MR] = std::array::from_fn(|r| *ap.add(p * MR + r));
            (b0, b1, a_pairs)
        };
        for r in 0..MR {
            let av = _mm256_set1_epi32(a_pairs[r]);
            acc[2 * r] = _mm256_add_epi32(acc[2 * r], _mm256_madd_epi16(av, b0));
            acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], _mm256_madd_epi16(av, b1));
        }
    }
    for (i, v) in acc.iter().enumerate() {
        // SAFETY: `tile` holds MR * NR = 16 MR i32 and `i < 2 MR`, so `8 i .. 8 i + 8` is in
        // bounds.
        unsafe { _mm256_storeu_si256(tile.as_mut_ptr().add(8 * i).cast::<__m256i>(), *v) };
    }
}

/// The AVX-VNNI micro-kernel: as [`tile_avx2`] with `vpdpwssd` (the fused, wrapping —
/// not saturating — form of `vpmaddwd` + `vpaddd`), so the results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avxvnni")]
fn tile_vnni(a: &[i32], b: &[i8], kp: usize, tile: &mut [i32; MR * NR]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_cvtepi8_epi16, _mm256_dpwssd_avx_epi32,
        _mm256_set1_epi32, _mm256_setzero_si256, _mm256_storeu_si256,
    };
    assert!(a.len() >= kp * MR && b.len() >= kp * 2 * NR);
    let mut acc: [__m256i; 2 * MR] = [_mm256_setzero_si256(); 2 * MR];
    let ap = a.as_ptr();
    let bp = b.as_ptr();
    for p in 0..kp {
        // SAFETY: `p < kp` and the lengths were asserted above, so the 32 bytes at
        // `bp + 32 p` and the 4 `i32` at `ap + 4 p` are in bounds; unaligned loads are used.
        let (b0, b1, a_pairs) = unsafe {
            let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(p * 32).cast::<__m128i>()));
            let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(p * 32 + 16).cast::<__m128i>()));
            let a_pairs: [i32; MR] = std::array::from_fn(|r| *ap.add(p * MR + r));
            (b0, b1, a_pairs)
        };
        for r in 0..MR {
            let av = _mm256_set1_epi32(a_pairs[r]);
            acc[2 * r] = _mm256_dpwssd_avx_epi32(acc[2 * r], av, b0);
            acc[2 * r + 1] = _mm256_dpwssd_avx_epi32(acc[2 * r + 1], av, b1);
        }
    }
    for (i, v) in acc.iter().enumerate() {
        // SAFETY: `tile` holds MR * NR = 16 MR i32 and `i < 2 MR`, so `8 i .. 8 i + 8` is in
        // bounds.
        unsafe { _mm256_storeu_si256(tile.as_mut_ptr().add(8 * i).cast::<__m256i>(), *v) };
    }
}

/// The AVX-512 VNNI micro-kernel: an `MR x 2 NR` tile over two adjacent B panels, 16 `i16`
/// pairs per `zmm` (`vpmovsxbw` of 32 bytes) and `vpdpwssd` (wrapping, exact) per row and
/// panel, so again identical to the portable arithmetic.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn tile_avx512(a: &[i32], b0: &[i8], b1: &[i8], kp: usize, tile: &mut [i32; 2 * MR * NR]) {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_loadu_si256, _mm512_cvtepi8_epi16, _mm512_dpwssd_epi32,
        _mm512_set1_epi32, _mm512_setzero_si512, _mm512_storeu_si512,
    };
    assert!(a.len() >= kp * MR && b0.len() >= kp * 2 * NR && b1.len() >= kp * 2 * NR);
    let mut acc: [__m512i; 2 * MR] = [_mm512_setzero_si512(); 2 * MR];
    let (ap, p0, p1) = (a.as_ptr(), b0.as_ptr(), b1.as_ptr());
    for p in 0..kp {
        // SAFETY: `p < kp` and the lengths were asserted above, so the 32 bytes at
        // `p0 + 32 p` and `p1 + 32 p` and the MR `i32` at `ap + MR p` are in bounds;
        // unaligned loads are used.
        let (v0, v1, a_pairs) = unsafe {
            let v0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p0.add(p * 32).cast::<__m256i>()));
            let v1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(p1.add(p * 32).cast::<__m256i>()));
            let a_pairs: [i32; MR] = std::array::from_fn(|r| *ap.add(p * MR + r));
            (v0, v1, a_pairs)
        };
        for r in 0..MR {
            let av = _mm512_set1_epi32(a_pairs[r]);
            acc[2 * r] = _mm512_dpwssd_epi32(acc[2 * r], av, v0);
            acc[2 * r + 1] = _mm512_dpwssd_epi32(acc[2 * r + 1], av, v1);
        }
    }
    for (i, v) in acc.iter().enumerate() {
        // SAFETY: `tile` holds 2 MR NR = 32 MR i32 and `i < 2 MR`, so `16 i .. 16 i + 16` is
        // in bounds.
        unsafe { _mm512_storeu_si512(tile.as_mut_ptr().add(16 * i).cast::<__m512i>(), *v) };
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

/// The fastest path this CPU supports.
fn best_path() -> Path {
    #[cfg(target_arch = "x86_64")]
    {
        if compress_core::Isa::Avx512.enabled() && GemmKernel::Avx512Vnni.is_available() {
            return Path::Avx512Vnni;
        }
        if compress_core::Isa::uncapped() && GemmKernel::AvxVnni.is_available() {
            return Path::AvxVnni;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
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

fn run(a: &[i8], m: usize, b: &PackedB, c: &mut [i32], path: Path) {
    let (n, k, kpairs) = (b.n, b.k, b.kpairs);
    assert_eq!(a.len(), m * k, "A must be m * k");
    assert_eq!(c.len(), m * n, "C must be m * n");
    c.fill(0);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let ap = pack_a(a, m, k, kpairs);
    let rblocks = m.div_ceil(MR);
    let panels = n.div_ceil(NR);
    let mut tile = [0i32; MR * NR];
    #[cfg(target_arch = "x86_64")]
    let mut wide = [0i32; 2 * MR * NR];
    for k0 in (0..kpairs).step_by(KC_PAIRS) {
        let kc = KC_PAIRS.min(kpairs - k0);
        for m0 in (0..rblocks).step_by(MC_BLOCKS) {
            let m1 = (m0 + MC_BLOCKS).min(rblocks);
            let mut p = 0;
            while p < panels {
                let panel =
                    |q: usize| &b.data[(q * kpairs + k0) * 2 * NR..(q * kpairs + k0 + kc) * 2 * NR];
                #[cfg(target_arch = "x86_64")]
                if path == Path::Avx512Vnni && p + 1 < panels {
                    let (b0, b1) = (panel(p), panel(p + 1));
                    for rb in m0..m1 {
                        let as_ = &ap[(rb * kpairs + k0) * MR..(rb * kpairs + k0 + kc) * MR];
                        // SAFETY: `Path::Avx512Vnni` is only chosen after runtime AVX-512F,
                        // AVX-512BW and AVX-512 VNNI checks.
                        unsafe { tile_avx512(as_, b0, b1, kc, &mut wide) };
                        let rows = MR.min(m - rb * MR);
                        let cols = (2 * NR).min(n - p * NR);
                        for r in 0..rows {
                            let crow = &mut c[(rb * MR + r) * n + p * NR..][..cols];
                            // tile row r: NR columns of panel p, then NR of panel p + 1
                            let t = &wide[2 * r * NR..2 * (r + 1) * NR];
                            for (cv, tv) in crow.iter_mut().zip(t) {
                                *cv = cv.wrapping_add(*tv);
                            }
                        }
                    }
                    p += 2;
                    continue;
                }
                let bs = panel(p);
                for rb in m0..m1 {
                    let as_ = &ap[(rb * kpairs + k0) * MR..(rb * kpairs + k0 + kc) * MR];
                    match path {
                        Path::Portable => tile_portable(as_, bs, kc, &mut tile),
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Path::Avx2` is only chosen after a runtime AVX2 check.
                        Path::Avx2 => unsafe { tile_avx2(as_, bs, kc, &mut tile) },
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Path::AvxVnni` is only chosen after runtime AVX2 and
                        // AVX-VNNI checks.
                        Path::AvxVnni => unsafe { tile_vnni(as_, bs, kc, &mut tile) },
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Path::Avx512Vnni` is only chosen after a runtime AVX2 check
                        // (the last odd panel takes the AVX2 kernel).
                        Path::Avx512Vnni => unsafe { tile_avx2(as_, bs, kc, &mut tile) },
                    }
                    let rows = MR.min(m - rb * MR);
                    let cols = NR.min(n - p * NR);
                    for r in 0..rows {
                        let crow = &mut c[(rb * MR + r) * n + p * NR..][..cols];
                        for (cv, tv) in crow.iter_mut().zip(&tile[r * NR..r * NR + cols]) {
                            *cv = cv.wrapping_add(*tv);
                        }
                    }
                }
                p += 1;
            }
        }
    }
}

/// `C = A B` with `A` `[m, k]` row-major, `B` packed, `C` `[m, n]` row-major (overwritten).
/// Uses AVX-VNNI or AVX2 when the CPU has them (see [`gemm_i8_kernel`]), else the portable
/// kernel; all give identical results.
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
    /// AVX2 `vpmovsxbw` + `vpmaddwd` + `vpaddd`.
    Avx2,
    /// AVX-VNNI `vpdpwssd` on `ymm`.
    AvxVnni,
    /// AVX-512 VNNI `vpdpwssd` on `zmm` (two panels per tile).
    Avx512Vnni,
}

impl GemmKernel {
    /// Whether the running CPU supports this kernel.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Self::Portable => true,
                Self::Avx2 => has!("avx2"),
                Self::AvxVnni => has!("avx2") && has!("avxvnni"),
                Self::Avx512Vnni => {
                    has!("avx2") && has!("avx512f") && has!("avx512bw") && has!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Self::Portable
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

    fn naive(a: &[i8], m: usize, k: usize, w: &[i8], n: usize) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|kk| i32::from(a[i * k + kk]) * i32::from(w[j * k + kk]))
                    .sum();
            }
        }
        c
    }

    proptest! {
        #[test]
        fn avx2_equals_portable_and_naive(
            (m, n, k, a, w) in (1usize..11, 1usize..37, 1usize..40).prop_flat_map(|(m, n, k)| (
                Just(m), Just(n), Just(k),
                prop::collection::vec(any::<i8>(), m * k),
                prop::collection::vec(any::<i8>(), n * k),
            ))
        ) {
            let b = PackedB::from_nk(&w, n, k);
            let mut c1 = vec![0; m * n];
            let mut c2 = vec![0; m * n];
            gemm_i8(&a, m, &b, &mut c1);
            gemm_i8_portable(&a, m, &b, &mut c2);
            prop_assert_eq!(&c1, &c2);
            prop_assert_eq!(&c1, &naive(&a, m, k, &w, n));
            // every available SIMD path, not only the best one
            for kernel in [GemmKernel::Avx2, GemmKernel::AvxVnni, GemmKernel::Avx512Vnni] {
                let mut c3 = vec![0; m * n];
                if gemm_i8_with(kernel, &a, m, &b, &mut c3).is_ok() {
                    prop_assert_eq!(&c3, &c2, "{:?}", kernel);
                }
            }
        }
    }

    #[test]
    fn extreme_values_are_exact() {
        // -128 * -128 pairs: vpmaddubsw would saturate here; vpmaddwd does not.
        let (m, n, k) = (5, 17, 1100);
        let a = vec![-128i8; m * k];
        let w = vec![-128i8; n * k];
        let b = PackedB::from_nk(&w, n, k);
        let mut c = vec![0; m * n];
        gemm_i8(&a, m, &b, &mut c);
        assert!(c.iter().all(|&v| v == 16384 * k as i32));
        let mut c2 = vec![0; m * n];
        gemm_i8_portable(&a, m, &b, &mut c2);
        assert_eq!(c, c2);
        assert_eq!(b.col_sums()[0], -128 * k as i32);
    }
}
