//! Hot loop of the direct depthwise convolution, compiled twice.
//!
//! The kernel is ordinary safe Rust written so that LLVM vectorises it: every input plane
//! is copied once into a zero-padded scratch plane (so no tap ever needs a bounds test),
//! and each output row is one pass over equal-length, contiguous slices. The 3x3,
//! stride-1 case (any dilation) does all nine multiply-adds per output element in that one
//! pass; other shapes accumulate tap by tap into the (L1-resident) output row.
//!
//! [`depthwise_forward`] runs the same source either as the portable build
//! ([`depthwise_forward_portable`], the scalar twin: baseline x86-64 is SSE2) or, when the
//! CPU has them, inside a `#[target_feature(enable = "avx512f")]` or `"avx2"` wrapper,
//! which only widens the vectors. Rust never contracts `a * b + c` into a fused
//! multiply-add, and the vectorised loops are element-wise (no reassociated reductions),
//! so every build performs the same operations in the same order and the results agree bit
//! for bit (a property test checks it).
#![allow(unsafe_code)]

use compress_core::Float;

use super::geom::Geom;

/// Shapes of one depthwise call: batch `n`, input channels `c`, channel multiplier `mult`
/// (output channel `o` reads input channel `o / mult`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DwShape {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) mult: usize,
}

/// Appends to `out` the depthwise convolution (`[n, c * mult, oh, ow]`) of `x`
/// (`[n, c, h, w]`) with `w` (`[c * mult, 1, kh, kw]`) plus `bias`, on the widest vector
/// unit this CPU has. Bit-identical to [`depthwise_forward_portable`].
///
/// Preconditions (the caller validated the layer): `x.len() == n * c * h * w`,
/// `w.len() == c * mult * kh * kw`, `bias` has `c * mult` entries, and `g` is consistent
/// (`oh`, `ow` from the output-size formula).
pub(crate) fn depthwise_forward<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &Geom,
    out: &mut Vec<F>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: `dw_avx512` only differs from the portable kernel by being compiled
            // with AVX-512F enabled; the feature was detected on this CPU just above.
            unsafe { dw_avx512(s, x, w, bias, g, out) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, with AVX2 (detected just above).
            unsafe { dw_avx2(s, x, w, bias, g, out) };
            return;
        }
    }
    depthwise_forward_portable(s, x, w, bias, g, out);
}

/// The portable build of the kernel (the scalar twin of the vector builds).
pub(crate) fn depthwise_forward_portable<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &Geom,
    out: &mut Vec<F>,
) {
    forward_impl(s, x, w, bias, g, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dw_avx512<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &Geom,
    out: &mut Vec<F>,
) {
    forward_impl(s, x, w, bias, g, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dw_avx2<F: Float>(s: DwShape, x: &[F], w: &[F], bias: Option<&[F]>, g: &Geom, out: &mut Vec<F>) {
    forward_impl(s, x, w, bias, g, out);
}

/// The kernel body, inlined into each build.
#[inline(always)]
fn forward_impl<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &Geom,
    out: &mut Vec<F>,
) {
    let (pin, pout, kk) = (g.h * g.w, g.out_len(), g.kh * g.kw);
    let oc = s.c * s.mult;
    if pout == 0 {
        return;
    }
    let padded = g.ph > 0 || g.pw > 0;
    let (prows, pcols) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    // The borders stay zero: only the interior is overwritten, plane after plane.
    let mut pad = if padded {
        vec![F::zero(); prows * pcols]
    } else {
        Vec::new()
    };
    out.reserve(s.n * oc * pout);
    for b in 0..s.n {
        for ch in 0..s.c {
            let xp = &x[(b * s.c + ch) * pin..][..pin];
            let src: &[F] = if padded {
                for (r, row) in xp.chunks_exact(g.w).enumerate() {
                    pad[(r + g.ph) * pcols + g.pw..][..g.w].copy_from_slice(row);
                }
                &pad
            } else {
                xp
            };
            for o in ch * s.mult..(ch + 1) * s.mult {
                let start = out.len();
                out.resize(start + pout, F::zero());
                let bv = bias.map_or(F::zero(), |bs| bs[o]);
                plane(src, pcols, &w[o * kk..][..kk], bv, g, &mut out[start..]);
            }
        }
    }
}

/// One output plane from one zero-padded input plane (`pcols` wide).
#[inline(always)]
fn plane<F: Float>(src: &[F], pcols: usize, wk: &[F], bias: F, g: &Geom, out: &mut [F]) {
    let ow = g.ow;
    if g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 {
        let (dh, dw) = (g.dh, g.dw);
        let w9: [F; 9] = std::array::from_fn(|k| wk[k]);
        for (o, orow) in out.chunks_exact_mut(ow).enumerate() {
            let r0 = &src[o * pcols..][..ow + 2 * dw];
            let r1 = &src[(o + dh) * pcols..][..ow + 2 * dw];
            let r2 = &src[(o + 2 * dh) * pcols..][..ow + 2 * dw];
            row_3x3(orow, [r0, r1, r2], &w9, bias, dw);
        }
        return;
    }
    for (o, orow) in out.chunks_exact_mut(ow).enumerate() {
        orow.fill(bias);
        for i in 0..g.kh {
            let prow = &src[(o * g.sh + i * g.dh) * pcols..][..pcols];
            for j in 0..g.kw {
                let wv = wk[i * g.kw + j];
                let taps = &prow[j * g.dw..];
                if g.sw == 1 {
                    for (d, &v) in orow.iter_mut().zip(&taps[..ow]) {
                        *d += wv * v;
                    }
                } else {
                    for (d, &v) in orow.iter_mut().zip(taps.iter().step_by(g.sw)) {
                        *d += wv * v;
                    }
                }
            }
        }
    }
}

/// `out[q] = bias + sum_{i, j} w[i][j] * rows[i][q + j * d]`, one pass, nine taps.
#[inline(always)]
fn row_3x3<F: Float>(out: &mut [F], rows: [&[F]; 3], w: &[F; 9], bias: F, d: usize) {
    let n = out.len();
    let [r0, r1, r2] = rows;
    let (a0, a1, a2) = (&r0[..n], &r0[d..d + n], &r0[2 * d..2 * d + n]);
    let (b0, b1, b2) = (&r1[..n], &r1[d..d + n], &r1[2 * d..2 * d + n]);
    let (c0, c1, c2) = (&r2[..n], &r2[d..d + n], &r2[2 * d..2 * d + n]);
    for q in 0..n {
        let top = w[0] * a0[q] + w[1] * a1[q] + w[2] * a2[q];
        let mid = w[3] * b0[q] + w[4] * b1[q] + w[5] * b2[q];
        let bot = w[6] * c0[q] + w[7] * c1[q] + w[8] * c2[q];
        out[q] = bias + top + mid + bot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::conv::Conv2dConfig;
    use proptest::prelude::*;

    fn run(cfg: Conv2dConfig, n: usize, h: usize, w: usize, vals: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (oh, ow) = cfg.output_hw(h, w).unwrap();
        let g = Geom::new(&cfg, h, w, oh, ow);
        let c = cfg.in_channels;
        let s = DwShape {
            n,
            c,
            mult: cfg.out_channels / c,
        };
        let pick = |len: usize, off: usize| -> Vec<f32> {
            (0..len).map(|i| vals[(i * 7 + off) % vals.len()]).collect()
        };
        let x = pick(n * c * h * w, 0);
        let wt = pick(cfg.out_channels * cfg.kernel.0 * cfg.kernel.1, 3);
        let bias = pick(cfg.out_channels, 5);
        let (mut fast, mut portable) = (Vec::new(), Vec::new());
        depthwise_forward(s, &x, &wt, Some(&bias), &g, &mut fast);
        depthwise_forward_portable(s, &x, &wt, Some(&bias), &g, &mut portable);
        (fast, portable)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The vector builds equal the portable twin bit for bit, on every kernel path.
        #[test]
        fn vector_builds_equal_portable_bit_for_bit(
            c in 1usize..4, mult in 1usize..3, k in 1usize..5, s in 1usize..3,
            p in 0usize..3, d in 1usize..3, h in 1usize..40, w in 1usize..40,
            vals in prop::collection::vec(-4.0f32..4.0, 1..64),
        ) {
            let cfg = Conv2dConfig::new(c, c * mult, k).stride(s).padding(p).dilation(d).groups(c);
            prop_assume!(cfg.output_hw(h, w).is_ok());
            let (fast, portable) = run(cfg, 2, h, w, &vals);
            prop_assert_eq!(fast.len(), portable.len());
            for (a, b) in fast.iter().zip(&portable) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }
}
