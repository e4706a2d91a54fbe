//! Element-wise quantize / dequantize kernels over `f32` slices.
//!
//! Rounding is to nearest, ties to even, via the float "magic number" trick:
//! for `|v| < 2^22`, the bits of `v + 1.5 * 2^23` hold `round_ties_even(v)` in their low
//! mantissa bits. The clamp happens before rounding (`lo`, `hi` are integers, so the two
//! commute), which keeps every step branch-free and vectorizable. The AVX-512 and AVX2 builds
//! ([`super::isa_dispatch`]) compile the very same bodies with more target features (no FMA
//! contraction happens in Rust), so they are bit-for-bit equal to the portable ones; property
//! tests check it.

/// `1.5 * 2^23`: adding it rounds an `f32` of magnitude `< 2^22` to an integer, ties to even.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;

/// Round-to-nearest-even code of `x`: `clamp(x * inv + zp, lo, hi)` rounded.
/// NaN maps to an unspecified code (callers check finiteness first).
#[inline(always)]
fn code(x: f32, inv: f32, zp: f32, lo: f32, hi: f32) -> i32 {
    let v = x * inv + zp;
    let v = if v < lo { lo } else { v };
    let v = if v > hi { hi } else { v };
    (v + MAGIC).to_bits() as i32 - MAGIC_BITS
}

/// Output element types of the quantize kernels.
pub(crate) trait CodeOut: Copy + Send + Sync {
    fn from_code(c: i32) -> Self;
}
impl CodeOut for u8 {
    #[inline(always)]
    fn from_code(c: i32) -> Self {
        c as u8
    }
}
impl CodeOut for i8 {
    #[inline(always)]
    fn from_code(c: i32) -> Self {
        c as i8
    }
}

super::isa_dispatch! {
    /// Quantizes `x` into codes (`clamp(round(x * inv + zp), lo, hi)`, stored as their low 8
    /// bits) with the fastest available path.
    pub(crate) fn quantize<T: CodeOut>(
        x: &[f32],
        inv: f32,
        zp: f32,
        lo: f32,
        hi: f32,
        out: &mut [T],
    ) as quantize_body {
        debug_assert_eq!(x.len(), out.len());
        for (o, &v) in out.iter_mut().zip(x) {
            *o = T::from_code(code(v, inv, zp, lo, hi));
        }
    }
}

super::isa_dispatch! {
    /// Quantizes `m` rows of `k` values (`x`, row-major) into `u8` codes (row stride `lda`),
    /// each with the `(scale, zero point, lowest code)` that `params` gives for the row's
    /// `(min, max)`, highest code 255: one dispatch for all rows, and each row's extremes and
    /// codes computed while it is in L1. On a row holding NaN or infinity, returns its index
    /// (the rows before it are done).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn quantize_rows<P: Fn(f32, f32) -> (f32, i32, f32)>(
        x: &[f32],
        m: usize,
        k: usize,
        lda: usize,
        params: P,
        codes: &mut [u8],
        scales: &mut [f32],
        zps: &mut [i32],
    ) -> Result<(), usize> as rows_body {
        assert!(
            x.len() >= m * k && codes.len() >= m * lda && lda >= k,
            "quantize_rows: sizes"
        );
        assert!(
            scales.len() >= m && zps.len() >= m,
            "quantize_rows: row factors"
        );
        if k == 0 {
            return Ok(());
        }
        let rows = x.chunks_exact(k).zip(codes.chunks_exact_mut(lda));
        for (r, ((row, out), (s, z))) in rows
            .zip(scales.iter_mut().zip(zps.iter_mut()))
            .enumerate()
            .take(m)
        {
            let (lo, hi, finite) = min_max_body(row);
            if !finite {
                return Err(r);
            }
            let (scale, zp, qmin) = params(lo, hi);
            quantize_body(row, 1.0 / scale, zp as f32, qmin, 255.0, &mut out[..k]);
            (*s, *z) = (scale, zp);
        }
        Ok(())
    }
}

/// Input element types of the dequantize kernels: an integer code (`u8`, `i8`).
pub(crate) trait CodeIn: Copy + Into<i32> {}
impl<T: Copy + Into<i32>> CodeIn for T {}

super::isa_dispatch! {
    /// Dequantizes `u8` or `i8` codes, `(q - zp) * scale`, with the fastest available path.
    pub(crate) fn dequantize<T: CodeIn>(q: &[T], scale: f32, zp: i32, out: &mut [f32])
        as dequantize_body
    {
        debug_assert_eq!(q.len(), out.len());
        for (o, &c) in out.iter_mut().zip(q) {
            *o = (c.into() - zp) as f32 * scale;
        }
    }
}

super::isa_dispatch! {
    /// Dequantizes bytes holding `i8` codes (symmetric, zero point 0): `(q as i8) * scale`.
    pub(crate) fn dequantize_signed_bytes(q: &[u8], scale: f32, out: &mut [f32])
        as dequantize_sbytes_body
    {
        debug_assert_eq!(q.len(), out.len());
        for (o, &c) in out.iter_mut().zip(q) {
            *o = i32::from(c as i8) as f32 * scale;
        }
    }
}

super::isa_dispatch! {
    /// Minimum, maximum and whether every element is finite, with the fastest available path,
    /// in one pass (64 independent lanes,
    /// four AVX-512 registers per quantity, so the loop vectorizes without one long dependency
    /// chain). A last partial chunk is padded with copies of its first element (which change
    /// neither the extremes nor the finiteness), so the lanes stay in registers; they are then
    /// folded to 16 element-wise before the scalar folds, which short rows (one token, one small
    /// image) would otherwise spend most of their time in. For an empty slice:
    /// `(+inf, -inf, true)`.
    pub(crate) fn min_max(x: &[f32]) -> (f32, f32, bool) as min_max_body {
        const LANES: usize = 64;
        const FOLDED: usize = 16;
        let mut lo = [f32::INFINITY; LANES];
        let mut hi = [f32::NEG_INFINITY; LANES];
        let mut bad = [0.0f32; LANES];
        let mut step = |c: &[f32]| {
            for i in 0..LANES {
                let v = c[i];
                lo[i] = if v < lo[i] { v } else { lo[i] };
                hi[i] = if v > hi[i] { v } else { hi[i] };
                // `v * 0` is NaN exactly when `v` is NaN or infinite.
                bad[i] += v * 0.0;
            }
        };
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            step(c);
        }
        if let Some(&first) = rest.first() {
            let mut padded = [first; LANES];
            padded[..rest.len()].copy_from_slice(rest);
            step(&padded);
        }
        for k in 1..LANES / FOLDED {
            for j in 0..FOLDED {
                let (l, h) = (lo[k * FOLDED + j], hi[k * FOLDED + j]);
                lo[j] = if l < lo[j] { l } else { lo[j] };
                hi[j] = if h > hi[j] { h } else { hi[j] };
                bad[j] += bad[k * FOLDED + j];
            }
        }
        let l = lo[..FOLDED].iter().fold(f32::INFINITY, |a, &b| a.min(b));
        let h = hi[..FOLDED]
            .iter()
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let finite = bad[..FOLDED].iter().all(|b| *b == 0.0);
        (l, h, finite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn simd_equals_portable(
            x in prop::collection::vec(-300.0f32..300.0, 0..100),
            inv in 0.01f32..10.0,
            zp in -10i32..10,
        ) {
            let mut a = vec![0i8; x.len()];
            let mut b = vec![0i8; x.len()];
            quantize(&x, inv, zp as f32, -128.0, 127.0, &mut a);
            quantize_body(&x, inv, zp as f32, -128.0, 127.0, &mut b);
            prop_assert_eq!(&a, &b);
            let (mut ua, mut ub) = (vec![0u8; x.len()], vec![0u8; x.len()]);
            quantize(&x, inv, (zp + 128) as f32, 0.0, 255.0, &mut ua);
            quantize_body(&x, inv, (zp + 128) as f32, 0.0, 255.0, &mut ub);
            prop_assert_eq!(&ua, &ub);
            let mut fa = vec![0.0f32; x.len()];
            let mut fb = vec![0.0f32; x.len()];
            dequantize(&a, 1.0 / inv, zp, &mut fa);
            dequantize_body(&a, 1.0 / inv, zp, &mut fb);
            prop_assert_eq!(
                fa.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                fb.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let (l1, h1, f1) = min_max(&x);
            let (l2, h2, f2) = min_max_body(&x);
            prop_assert_eq!((l1.to_bits(), h1.to_bits(), f1), (l2.to_bits(), h2.to_bits(), f2));
        }

        #[test]
        fn rounding_is_ties_even(v in -1000.0f32..1000.0) {
            let c = code(v, 1.0, 0.0, -1e6, 1e6);
            prop_assert_eq!(c, v.round_ties_even() as i32);
        }
    }

    #[test]
    fn min_max_flags_non_finite() {
        assert!(!min_max(&[1.0, f32::NAN, 2.0]).2);
        assert!(
            !min_max(
                &[1.0; 9]
                    .iter()
                    .copied()
                    .chain([f32::INFINITY])
                    .collect::<Vec<_>>()
            )
            .2
        );
        let (l, h, f) = min_max(&[3.0, -1.0, 2.0]);
        assert_eq!((l, h, f), (-1.0, 3.0, true));
    }
}
