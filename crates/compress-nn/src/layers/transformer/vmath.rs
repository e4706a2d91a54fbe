//! Vectorised `f32` element-wise math for the transformer layers: `exp` (the attention
//! softmax), the exact-erf and tanh GELU and their derivatives, and a masked row softmax.
//!
//! Each kernel is one branch-free scalar body over a slice that the compiler vectorises,
//! compiled three times: for AVX-512, for AVX2 + FMA, and for the baseline target, and
//! chosen at run time by [`Isa::current`] (so `NETCOMPRESS_ISA` applies as to the GEMM).
//! The bodies are the same source, so the three paths agree to rounding (the AVX2 and
//! AVX-512 builds may contract `a * b + c` into one FMA; tested against `f64` references).
//!
//! Accuracy (tested over the whole range): [`exp_slice`] is within 2 ulp of `exp` on
//! `[-87, 88]` (range reduction `x = n ln2 + r`, Cephes' degree-6 polynomial for `e^r`,
//! `2^n` from the exponent bits) and gives exactly `0` below `-87` (where `e^x < 2e-38`),
//! so masked scores (`-inf`) get weight zero; the GELU uses Abramowitz & Stegun 7.1.26 for
//! `erf` (absolute error below `1.5e-7`, about one `f32` ulp of `1`). NaN propagates.
#![allow(unsafe_code)]

use compress_core::Isa;

use super::GeluKind;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in a part exact in few bits and a correction (Cephes).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting `1.5 * 2^23` rounds an `f32` of magnitude below `2^22` to the
/// nearest integer.
const ROUND: f32 = 12_582_912.0;
/// Below this `exp` returns exactly zero; above [`EXP_HI`] it saturates at `e^88`.
const EXP_LO: f32 = -87.0;
const EXP_HI: f32 = 88.0;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const TANH_C: f32 = 0.044_715;

/// `e^x` (see the module docs for its accuracy).
#[inline(always)]
fn exp1(x: f32) -> f32 {
    // Comparisons, not `max`/`min`, so NaN stays NaN.
    let xc = if x > EXP_HI { EXP_HI } else { x };
    let xc = if xc < EXP_LO { EXP_LO } else { xc };
    // `t`'s low mantissa bits hold `n = round(x / ln 2)` as an integer: reading them as
    // bits (not a float-to-int cast, which the compiler would not vectorise) gives `2^n`.
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // `ni` is in [-126, 127] here (anything for NaN, which `e` keeps).
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x < EXP_LO { 0.0 } else { e * scale }
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error below `1.5e-7`).
#[inline(always)]
fn erf1(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4_f32;
    p = p * t - 1.453_152_1;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp1(-a * a);
    y.copysign(x)
}

/// `tanh(u) = 1 - 2 / (e^{2u} + 1)`, saturating cleanly at `+-1`.
#[inline(always)]
fn tanh1(u: f32) -> f32 {
    1.0 - 2.0 / (exp1(2.0 * u) + 1.0)
}

#[inline(always)]
fn gelu1(kind: GeluKind, x: f32) -> f32 {
    match kind {
        GeluKind::Exact => 0.5 * x * (1.0 + erf1(x * FRAC_1_SQRT_2)),
        GeluKind::Tanh => 0.5 * x * (1.0 + tanh1(SQRT_2_OVER_PI * (x + TANH_C * x * x * x))),
    }
}

#[inline(always)]
fn gelu_grad1(kind: GeluKind, x: f32) -> f32 {
    match kind {
        GeluKind::Exact => {
            let cdf = 0.5 * (1.0 + erf1(x * FRAC_1_SQRT_2));
            cdf + x * INV_SQRT_2PI * exp1(-0.5 * x * x)
        }
        GeluKind::Tanh => {
            let t = tanh1(SQRT_2_OVER_PI * (x + TANH_C * x * x * x));
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_C * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
    }
}

/// Generates `$name(args)` dispatching on [`Isa::current`] to three builds of `$body`.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn narrow($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match Isa::current() {
                    // SAFETY: `Isa::current` is at most what the CPU reported (AVX-512 F,
                    // BW, VL with AVX2 and FMA; or AVX2 and FMA).
                    Isa::Avx512 => return unsafe { wide($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { narrow($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $body($($arg),*)
        }
    };
}

#[cfg(test)]
#[inline(always)]
fn exp_body(x: &mut [f32]) {
    for v in x {
        *v = exp1(*v);
    }
}

#[inline(always)]
fn gelu_body(kind: GeluKind, x: &mut [f32]) {
    match kind {
        GeluKind::Exact => x.iter_mut().for_each(|v| *v = gelu1(GeluKind::Exact, *v)),
        GeluKind::Tanh => x.iter_mut().for_each(|v| *v = gelu1(GeluKind::Tanh, *v)),
    }
}

#[inline(always)]
fn gelu_backward_body(kind: GeluKind, grad: &mut [f32], x: &[f32]) {
    match kind {
        GeluKind::Exact => grad
            .iter_mut()
            .zip(x)
            .for_each(|(g, &v)| *g *= gelu_grad1(GeluKind::Exact, v)),
        GeluKind::Tanh => grad
            .iter_mut()
            .zip(x)
            .for_each(|(g, &v)| *g *= gelu_grad1(GeluKind::Tanh, v)),
    }
}

/// Lanes of the max and sum reductions (independent accumulators the compiler keeps in
/// one vector register).
const LANES: usize = 16;

#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| if v > a { v } else { a });
    for v in m {
        max = if v > max { v } else { max };
    }
    if max == f32::NEG_INFINITY {
        let u = 1.0 / row.len() as f32;
        row.fill(u);
        return;
    }
    let mut s = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (s, v) in s.iter_mut().zip(c.iter_mut()) {
            *v = exp1(*v - max);
            *s += *v;
        }
    }
    let mut sum = 0.0;
    for v in chunks.into_remainder() {
        *v = exp1(*v - max);
        sum += *v;
    }
    sum += s.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[inline(always)]
fn softmax_rows_body(scores: &mut [f32], cols: usize) {
    for row in scores.chunks_exact_mut(cols) {
        softmax_body(row);
    }
}

/// Sum of a slice in [`LANES`] independent accumulators (vectorisable).
#[inline(always)]
fn lane_sum(x: &[f32], shift: f32) -> (f32, f32) {
    let (mut s, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for ((s, q), &v) in s.iter_mut().zip(q.iter_mut()).zip(c) {
            let d = v - shift;
            *s += d;
            *q += d * d;
        }
    }
    let (mut st, mut qt) = (0.0f32, 0.0f32);
    for &v in chunks.remainder() {
        let d = v - shift;
        st += d;
        qt += d * d;
    }
    (st + s.iter().sum::<f32>(), qt + q.iter().sum::<f32>())
}

#[inline(always)]
fn layer_norm_body(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = w.len();
    if d == 0 {
        return;
    }
    let inv_d = 1.0 / d as f32;
    for row in x.chunks_exact_mut(d) {
        let (sum, _) = lane_sum(row, 0.0);
        let mean = sum * inv_d;
        // Two-pass variance (sum of squared deviations from the mean), as the generic path.
        let (_, sq) = lane_sum(row, mean);
        let r = 1.0 / (sq * inv_d + eps).sqrt();
        for ((v, &g), &bb) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - mean) * r * g + bb;
        }
    }
}

multiversion! {
    /// Eval-mode layer normalisation of each row of `x` (`w.len()` wide) in place:
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    pub(crate) fn layer_norm_rows(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) => layer_norm_body
}

multiversion! {
    /// `x := e^x` element-wise (tested on its own; the layers reach it through the others).
    #[cfg(test)]
    pub(crate) fn exp_slice(x: &mut [f32]) => exp_body
}

multiversion! {
    /// `x := gelu(x)` element-wise.
    pub(crate) fn gelu_slice(kind: GeluKind, x: &mut [f32]) => gelu_body
}

multiversion! {
    /// `grad := grad * gelu'(x)` element-wise.
    pub(crate) fn gelu_backward_slice(kind: GeluKind, grad: &mut [f32], x: &[f32]) => gelu_backward_body
}

multiversion! {
    /// Softmax of each row of `scores` (`cols` wide) in place. Entries equal to `-inf`
    /// (masked keys) get weight exactly zero; a row with no finite entry becomes uniform.
    pub(crate) fn softmax_rows(scores: &mut [f32], cols: usize) => softmax_rows_body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_and_zero_below_the_range() {
        let xs: Vec<f32> = (0..=175_000)
            .map(|i| -87.0 + i as f32 * 1e-3)
            .filter(|&x| x <= 88.0)
            .collect();
        let mut y = xs.clone();
        exp_slice(&mut y);
        for (&x, &y) in xs.iter().zip(&y) {
            let want = (x as f64).exp() as f32;
            assert!(ulps(y, want) <= 2, "exp({x}) = {y}, want {want}");
        }
        let mut z = [-87.5, -1e30, f32::NEG_INFINITY, f32::NAN, 1e30];
        exp_slice(&mut z);
        assert_eq!(&z[..3], &[0.0, 0.0, 0.0]);
        assert!(z[3].is_nan());
        assert!(z[4].is_finite() && z[4] > 1e38);
    }

    #[test]
    fn gelu_and_its_derivative_match_f64_references() {
        let xs: Vec<f32> = (0..=24_000).map(|i| -12.0 + i as f32 * 1e-3).collect();
        for kind in [GeluKind::Exact, GeluKind::Tanh] {
            let mut y = xs.clone();
            gelu_slice(kind, &mut y);
            let mut g = vec![1.0f32; xs.len()];
            gelu_backward_slice(kind, &mut g, &xs);
            for ((&x, &y), &g) in xs.iter().zip(&y).zip(&g) {
                let want = kind.apply(x as f64);
                let dwant = kind.derivative(x as f64);
                assert!(
                    (y as f64 - want).abs() <= 3e-7 * (1.0 + want.abs()),
                    "{kind:?} {x}"
                );
                // The tanh form's derivative cancels two terms of size 1e-4 in the tails.
                assert!(
                    (g as f64 - dwant).abs() <= 2e-6,
                    "{kind:?}' {x}: {g} vs {dwant}"
                );
            }
        }
        let mut n = [f32::NAN];
        gelu_slice(GeluKind::Exact, &mut n);
        assert!(n[0].is_nan());
    }

    #[test]
    fn layer_norm_rows_match_an_f64_reference() {
        let d = 37;
        let x: Vec<f32> = (0..4 * d)
            .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 9.0)
            .collect();
        let w: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 * 0.01).collect();
        let b: Vec<f32> = (0..d).map(|j| j as f32 * -0.02).collect();
        let mut y = x.clone();
        layer_norm_rows(&mut y, &w, &b, 1e-12);
        for (xr, yr) in x.chunks(d).zip(y.chunks(d)) {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (xr[j] as f64 - mean) / (var + 1e-12).sqrt() * w[j] as f64 + b[j] as f64;
                assert!((yr[j] as f64 - want).abs() < 1e-5, "{} vs {want}", yr[j]);
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_zero_masked_keys() {
        let cols = 37;
        let mut s: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 7919) % 23) as f32 - 11.0)
            .collect();
        s[3] = f32::NEG_INFINITY;
        s[2 * cols..].fill(f32::NEG_INFINITY);
        let orig = s.clone();
        softmax_rows(&mut s, cols);
        for (r, row) in s.chunks(cols).enumerate().take(2) {
            let o = &orig[r * cols..(r + 1) * cols];
            let max = o.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = o.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (&p, &v) in row.iter().zip(o) {
                let want = (v as f64 - max).exp() / z;
                assert!((p as f64 - want).abs() < 1e-6, "{p} vs {want}");
            }
        }
        assert_eq!(s[3], 0.0);
        assert!(s[2 * cols..].iter().all(|&p| p == 1.0 / cols as f32));
    }
}
