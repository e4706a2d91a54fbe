//! Run-time choice of the build of the depthwise kernels ([`super::depthwise`]).
//!
//! The kernels are ordinary safe Rust written so that LLVM vectorises them. Here they are
//! compiled three times: portably (the scalar twin; baseline x86-64 is SSE2) and inside
//! `#[target_feature(enable = "avx512f")]` and `"avx2"` wrappers, which only widen the
//! vectors. Rust never contracts `a * b + c` into a fused multiply-add and the vectorised
//! loops are element-wise (no reassociated reductions), so every build performs the same
//! operations in the same order: the results agree bit for bit (a property test checks
//! it). The only `unsafe` is the call of a `#[target_feature]` function, made after the
//! feature was detected.
#![allow(unsafe_code)]

use compress_core::Float;

use super::depthwise::{self, DwShape};
use super::geom::ConvGeometry;

/// The vector extension a kernel call runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The widest extension this CPU has among those the kernels are built for.
fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        // The level `NETCOMPRESS_ISA` allows, within what the CPU has.
        if compress_core::Isa::Avx512.enabled() {
            return Isa::Avx512;
        }
        if compress_core::Isa::Avx2.enabled() {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// [`depthwise::forward`] on the widest vector unit this CPU has.
pub(crate) fn depthwise_forward<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &ConvGeometry,
    out: &mut Vec<F>,
) {
    match detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fwd_avx512` is the portable kernel compiled with AVX-512F enabled; the
        // feature was detected on this CPU by `detect`.
        Isa::Avx512 => unsafe { fwd_avx512(s, x, w, bias, g, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, with AVX2 (detected by `detect`).
        Isa::Avx2 => unsafe { fwd_avx2(s, x, w, bias, g, out) },
        Isa::Portable => depthwise_forward_portable(s, x, w, bias, g, out),
    }
}

/// The portable build of [`depthwise::forward`] (the scalar twin of the vector builds).
pub(crate) fn depthwise_forward_portable<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &ConvGeometry,
    out: &mut Vec<F>,
) {
    depthwise::forward(s, x, w, bias, g, out);
}

/// [`depthwise::backward`] on the widest vector unit this CPU has.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_backward<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    gout: &[F],
    g: &ConvGeometry,
    dx: &mut [F],
    dw: &mut [F],
) {
    match detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `bwd_avx512` is the portable kernel compiled with AVX-512F enabled; the
        // feature was detected on this CPU by `detect`.
        Isa::Avx512 => unsafe { bwd_avx512(s, x, w, gout, g, dx, dw) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, with AVX2 (detected by `detect`).
        Isa::Avx2 => unsafe { bwd_avx2(s, x, w, gout, g, dx, dw) },
        Isa::Portable => depthwise_backward_portable(s, x, w, gout, g, dx, dw),
    }
}

/// The portable build of [`depthwise::backward`] (the scalar twin of the vector builds).
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_backward_portable<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    gout: &[F],
    g: &ConvGeometry,
    dx: &mut [F],
    dw: &mut [F],
) {
    depthwise::backward(s, x, w, gout, g, dx, dw);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fwd_avx512<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &ConvGeometry,
    out: &mut Vec<F>,
) {
    depthwise::forward(s, x, w, bias, g, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fwd_avx2<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    bias: Option<&[F]>,
    g: &ConvGeometry,
    out: &mut Vec<F>,
) {
    depthwise::forward(s, x, w, bias, g, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn bwd_avx512<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    gout: &[F],
    g: &ConvGeometry,
    dx: &mut [F],
    dw: &mut [F],
) {
    depthwise::backward(s, x, w, gout, g, dx, dw);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn bwd_avx2<F: Float>(
    s: DwShape,
    x: &[F],
    w: &[F],
    gout: &[F],
    g: &ConvGeometry,
    dx: &mut [F],
    dw: &mut [F],
) {
    depthwise::backward(s, x, w, gout, g, dx, dw);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::conv::Conv2dConfig;
    use proptest::prelude::*;

    /// Forward output, input gradient and weight gradient of the dispatched and the
    /// portable builds.
    type Run = (Vec<f32>, Vec<f32>, Vec<f32>);

    fn run(cfg: Conv2dConfig, n: usize, h: usize, w: usize, vals: &[f32]) -> (Run, Run) {
        let (oh, ow) = cfg.output_hw(h, w).unwrap();
        let g = ConvGeometry::with_output(&cfg, h, w, oh, ow);
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
        let gout = pick(n * cfg.out_channels * oh * ow, 11);
        let mut fast = (Vec::new(), vec![0.0; x.len()], vec![0.0; wt.len()]);
        let mut portable = fast.clone();
        depthwise_forward(s, &x, &wt, Some(&bias), &g, &mut fast.0);
        depthwise_forward_portable(s, &x, &wt, Some(&bias), &g, &mut portable.0);
        depthwise_backward(s, &x, &wt, &gout, &g, &mut fast.1, &mut fast.2);
        let (dx, dw) = (&mut portable.1, &mut portable.2);
        depthwise_backward_portable(s, &x, &wt, &gout, &g, dx, dw);
        (fast, portable)
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The vector builds equal the portable twin bit for bit, on every kernel path,
        /// forward and backward.
        #[test]
        fn vector_builds_equal_portable_bit_for_bit(
            c in 1usize..4, mult in 1usize..3, k in 1usize..5, s in 1usize..3,
            p in 0usize..3, d in 1usize..3, h in 1usize..40, w in 1usize..40,
            vals in prop::collection::vec(-4.0f32..4.0, 1..64),
        ) {
            let cfg = Conv2dConfig::new(c, c * mult, k).stride(s).padding(p).dilation(d).groups(c);
            prop_assume!(cfg.output_hw(h, w).is_ok());
            let (fast, portable) = run(cfg, 2, h, w, &vals);
            prop_assert!(same_bits(&fast.0, &portable.0), "forward differs");
            prop_assert!(same_bits(&fast.1, &portable.1), "input gradient differs");
            prop_assert!(same_bits(&fast.2, &portable.2), "weight gradient differs");
        }
    }
}
