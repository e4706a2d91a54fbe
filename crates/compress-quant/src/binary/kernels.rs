//! XNOR-popcount GEMM kernels: a portable scalar path, a scalar path compiled with the
//! `popcnt` instruction, and an AVX2 path (nibble-table popcount with `vpshufb`), chosen at
//! run time. All return exactly the same integers (tested by proptest).
#![allow(unsafe_code)]

/// Which XNOR GEMM implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum XnorKernel {
    /// The fastest available on this CPU (AVX2, else popcnt, else portable).
    #[default]
    Auto,
    /// Plain Rust (`u64::count_ones` without target features).
    Portable,
    /// Scalar with the hardware `popcnt` instruction (x86-64 only).
    Popcnt,
    /// AVX2 nibble-table popcount over 256-bit vectors (x86-64 only).
    Avx2,
}

impl XnorKernel {
    /// Whether this kernel can run on the current CPU.
    pub fn is_available(self) -> bool {
        match self {
            Self::Auto | Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Popcnt => compress_core::CpuFeature::Popcnt.detected(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => {
                compress_core::Isa::detected() >= compress_core::Isa::Avx2
                    && compress_core::CpuFeature::Popcnt.detected()
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// `Auto` resolved to a concrete kernel; an unavailable one falls back to `Portable`.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto => {
                if compress_core::Isa::Avx2.enabled() && Self::Avx2.is_available() {
                    Self::Avx2
                } else if Self::Popcnt.is_available() {
                    Self::Popcnt
                } else {
                    Self::Portable
                }
            }
            k if k.is_available() => k,
            _ => Self::Portable,
        }
    }
}

/// The operands of one XNOR GEMM: `a` is `m` rows and `b` is `n` rows of `w` words each,
/// `k` valid bits per row (padding bits clear in both); `out` is `m * n`, row-major.
pub(crate) struct XnorArgs<'a> {
    pub(crate) a: &'a [u64],
    pub(crate) b: &'a [u64],
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) w: usize,
    pub(crate) k: usize,
}

/// Computes `out[i * n + j] = k - 2 * popcount(a_i xor b_j)` (the ±1 dot product).
///
/// # Panics
///
/// If the slices do not have the sizes `args` describes.
#[track_caller]
pub(crate) fn xnor_gemm_kernel(args: &XnorArgs<'_>, out: &mut [i32], kernel: XnorKernel) {
    assert!(args.a.len() >= args.m * args.w && args.b.len() >= args.n * args.w);
    assert_eq!(out.len(), args.m * args.n);
    match kernel.resolve() {
        #[cfg(target_arch = "x86_64")]
        XnorKernel::Avx2 => {
            // SAFETY: `resolve` returned Avx2 only after runtime detection of avx2 and popcnt;
            // the slice sizes were asserted above and the kernel reads only within them.
            unsafe { x86::gemm_avx2(args, out) }
        }
        #[cfg(target_arch = "x86_64")]
        XnorKernel::Popcnt => {
            // SAFETY: `resolve` returned Popcnt only after runtime detection of popcnt.
            unsafe { x86::gemm_popcnt(args, out) }
        }
        _ => gemm_scalar(args, out),
    }
}

/// The portable scalar path (also the body of the popcnt path, compiled with the feature).
#[inline(always)]
fn gemm_scalar(args: &XnorArgs<'_>, out: &mut [i32]) {
    let (w, k) = (args.w, args.k as i64);
    for i in 0..args.m {
        let ar = &args.a[i * w..(i + 1) * w];
        let orow = &mut out[i * args.n..(i + 1) * args.n];
        for (j, o) in orow.iter_mut().enumerate() {
            let br = &args.b[j * w..(j + 1) * w];
            let c: u32 = ar.iter().zip(br).map(|(x, y)| (x ^ y).count_ones()).sum();
            *o = (k - 2 * i64::from(c)) as i32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi8, _mm256_add_epi64, _mm256_and_si256, _mm256_extract_epi64,
        _mm256_loadu_si256, _mm256_sad_epu8, _mm256_set1_epi8, _mm256_setr_epi8,
        _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16, _mm256_xor_si256,
    };

    use super::{XnorArgs, gemm_scalar};

    /// # Safety
    ///
    /// The CPU must support `popcnt`.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn gemm_popcnt(args: &XnorArgs<'_>, out: &mut [i32]) {
        gemm_scalar(args, out);
    }

    /// Per-byte popcounts of `x` (each 0..=8).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn popcnt_bytes(x: __m256i, lut: __m256i, low: __m256i) -> __m256i {
        let lo = _mm256_and_si256(x, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
        _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> u64 {
        (_mm256_extract_epi64::<0>(v)
            + _mm256_extract_epi64::<1>(v)
            + _mm256_extract_epi64::<2>(v)
            + _mm256_extract_epi64::<3>(v)) as u64
    }

    /// Four output columns at a time; byte counters are flushed with `vpsadbw` every 31
    /// vectors so they cannot overflow (31 * 8 = 248 < 256).
    ///
    /// # Safety
    ///
    /// The CPU must support `avx2` and `popcnt`; `args.a` must hold `m * w` words, `args.b`
    /// `n * w` words and `out` `m * n` values.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn gemm_avx2(args: &XnorArgs<'_>, out: &mut [i32]) {
        let (w, n, k) = (args.w, args.n, args.k as i64);
        let vecs = w / 4;
        let lut = _mm256_setr_epi8(
            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
            3, 3, 4,
        );
        let low = _mm256_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        for i in 0..args.m {
            let ar = &args.a[i * w..(i + 1) * w];
            let mut j = 0;
            while j + 4 <= n {
                let b0 = &args.b[j * w..(j + 1) * w];
                let b1 = &args.b[(j + 1) * w..(j + 2) * w];
                let b2 = &args.b[(j + 2) * w..(j + 3) * w];
                let b3 = &args.b[(j + 3) * w..(j + 4) * w];
                let (mut s0, mut s1, mut s2, mut s3) = (zero, zero, zero, zero);
                let mut t = 0;
                while t < vecs {
                    let end = (t + 31).min(vecs);
                    let (mut c0, mut c1, mut c2, mut c3) = (zero, zero, zero, zero);
                    while t < end {
                        let o = t * 4;
                        // SAFETY: o + 4 <= vecs * 4 <= w, so each 32-byte load reads words
                        // o..o + 4 of a row slice of length w.
                        unsafe {
                            let va = _mm256_loadu_si256(ar.as_ptr().add(o).cast());
                            let x0 =
                                _mm256_xor_si256(va, _mm256_loadu_si256(b0.as_ptr().add(o).cast()));
                            let x1 =
                                _mm256_xor_si256(va, _mm256_loadu_si256(b1.as_ptr().add(o).cast()));
                            let x2 =
                                _mm256_xor_si256(va, _mm256_loadu_si256(b2.as_ptr().add(o).cast()));
                            let x3 =
                                _mm256_xor_si256(va, _mm256_loadu_si256(b3.as_ptr().add(o).cast()));
                            c0 = _mm256_add_epi8(c0, popcnt_bytes(x0, lut, low));
                            c1 = _mm256_add_epi8(c1, popcnt_bytes(x1, lut, low));
                            c2 = _mm256_add_epi8(c2, popcnt_bytes(x2, lut, low));
                            c3 = _mm256_add_epi8(c3, popcnt_bytes(x3, lut, low));
                        }
                        t += 1;
                    }
                    s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(c0, zero));
                    s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(c1, zero));
                    s2 = _mm256_add_epi64(s2, _mm256_sad_epu8(c2, zero));
                    s3 = _mm256_add_epi64(s3, _mm256_sad_epu8(c3, zero));
                }
                let tail = vecs * 4;
                for (r, (s, br)) in [(s0, b0), (s1, b1), (s2, b2), (s3, b3)]
                    .into_iter()
                    .enumerate()
                {
                    let mut c = hsum(s);
                    for q in tail..w {
                        c += u64::from((ar[q] ^ br[q]).count_ones());
                    }
                    out[i * n + j + r] = (k - 2 * c as i64) as i32;
                }
                j += 4;
            }
            for jj in j..n {
                let br = &args.b[jj * w..(jj + 1) * w];
                let c: u32 = ar.iter().zip(br).map(|(x, y)| (x ^ y).count_ones()).sum();
                out[i * n + jj] = (k - 2 * i64::from(c)) as i32;
            }
        }
    }
}
