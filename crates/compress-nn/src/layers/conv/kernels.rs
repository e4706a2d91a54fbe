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

use compress_core::{Float, Isa};

use super::depthwise::{self, Dw};

/// A module `$build` holding [`depthwise::forward`] and [`depthwise::backward`] compiled
/// with the target feature `$feature` (the per-ISA twins of the portable kernels).
macro_rules! vector_build {
    ($build:ident, $feature:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $build {
            use super::{Dw, Float, depthwise};

            #[target_feature(enable = $feature)]
            pub(super) fn forward<F: Float>(a: Dw<'_, F>, bias: Option<&[F]>, out: &mut Vec<F>) {
                depthwise::forward(a, bias, out);
            }

            #[target_feature(enable = $feature)]
            pub(super) fn backward<F: Float>(a: Dw<'_, F>, gout: &[F], dx: &mut [F], dw: &mut [F]) {
                depthwise::backward(a, gout, dx, dw);
            }
        }
    };
}

vector_build!(avx512, "avx512f");
vector_build!(avx2, "avx2");

/// [`depthwise::forward`] on the widest vector unit this CPU has.
pub(crate) fn depthwise_forward<F: Float>(a: Dw<'_, F>, bias: Option<&[F]>, out: &mut Vec<F>) {
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `avx512::forward` is the portable kernel compiled with AVX-512F enabled;
        // `Isa::current` is at most what this CPU reported (AVX-512 F, BW, VL).
        Isa::Avx512 => unsafe { avx512::forward(a, bias, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, with AVX2 (at most what the CPU reported).
        Isa::Avx2 => unsafe { avx2::forward(a, bias, out) },
        // Portable, and every level on other architectures.
        _ => depthwise::forward(a, bias, out),
    }
}

/// [`depthwise::backward`] on the widest vector unit this CPU has.
pub(crate) fn depthwise_backward<F: Float>(a: Dw<'_, F>, gout: &[F], dx: &mut [F], dw: &mut [F]) {
    match Isa::current() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `avx512::backward` is the portable kernel compiled with AVX-512F enabled;
        // `Isa::current` is at most what this CPU reported (AVX-512 F, BW, VL).
        Isa::Avx512 => unsafe { avx512::backward(a, gout, dx, dw) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, with AVX2 (at most what the CPU reported).
        Isa::Avx2 => unsafe { avx2::backward(a, gout, dx, dw) },
        _ => depthwise::backward(a, gout, dx, dw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::conv::Conv2dConfig;
    use crate::layers::conv::geom::ConvGeometry;
    use proptest::prelude::*;

    /// Forward output, input gradient and weight gradient of the dispatched and the
    /// portable builds.
    type Run = (Vec<f32>, Vec<f32>, Vec<f32>);

    fn run(cfg: Conv2dConfig, n: usize, h: usize, w: usize, vals: &[f32]) -> (Run, Run) {
        let (oh, ow) = cfg.output_hw(h, w).unwrap();
        let g = ConvGeometry::with_output(&cfg, h, w, oh, ow);
        let c = cfg.in_channels;
        let pick = |len: usize, off: usize| -> Vec<f32> {
            (0..len).map(|i| vals[(i * 7 + off) % vals.len()]).collect()
        };
        let x = pick(n * c * h * w, 0);
        let wt = pick(cfg.out_channels * cfg.kernel.0 * cfg.kernel.1, 3);
        let bias = pick(cfg.out_channels, 5);
        let gout = pick(n * cfg.out_channels * oh * ow, 11);
        let mut fast = (Vec::new(), vec![0.0; x.len()], vec![0.0; wt.len()]);
        let mut portable = fast.clone();
        let a = Dw::new(n, &cfg, &x, &wt, &g);
        depthwise_forward(a, Some(&bias), &mut fast.0);
        depthwise::forward(a, Some(&bias), &mut portable.0);
        depthwise_backward(a, &gout, &mut fast.1, &mut fast.2);
        depthwise::backward(a, &gout, &mut portable.1, &mut portable.2);
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
