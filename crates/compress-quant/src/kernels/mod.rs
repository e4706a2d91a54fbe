//! Hot loops: element-wise int8 quantize/dequantize and the exact int8 GEMM.
//!
//! Each kernel has a portable path and, on x86-64 CPUs with AVX2 or AVX-512 (detected at run
//! time), wider paths; property tests check that all give identical bits. The element-wise
//! kernels are one portable body compiled three times (`isa_dispatch!`); the GEMM
//! micro-kernels are hand-written per ISA. This is the only module of
//! the crate allowed to use `unsafe` (for `std::arch` intrinsics and `#[target_feature]` calls),
//! each block with a `SAFETY` comment.
//!
//! The `*_into` functions write into caller-owned buffers: on large tensors a fresh output
//! buffer costs more in page faults than the quantization itself.
#![allow(unsafe_code)]

/// Writes `fn $name` and its portable build `fn $body` (`#[inline(always)]`, same
/// signature, the given code). `$name` runs the code compiled for the widest level
/// [`compress_core::Isa::current`] allows: with AVX-512 F/BW, with AVX2, or `$body` as it is.
/// The builds are the same Rust code (Rust contracts no multiply-add into an FMA), so they
/// give the same bits as `$body`, which the property tests call as the reference.
macro_rules! isa_dispatch {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident: $b:path),*>)? ($($arg:ident: $ty:ty),* $(,)?)
            $(-> $ret:ty)? as $body:ident $code:block
    ) => {
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn $body $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? $code

        $(#[$attr])*
        $vis fn $name $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                #[allow(clippy::too_many_arguments)]
                fn wide $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn narrow $(<$($g: $b),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if compress_core::Isa::Avx512.enabled() {
                    // SAFETY: `Isa::current` (capped by `NETCOMPRESS_ISA`) is at most what
                    // the CPU reported, here AVX-512 F/BW; `$body` is safe code.
                    return unsafe { wide($($arg),*) };
                }
                if compress_core::Isa::Avx2.enabled() {
                    // SAFETY: as above, with AVX2.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use isa_dispatch;

pub(crate) mod epilogue;
mod gemm;
mod micro;
pub(crate) mod quantize;
pub(crate) mod w4a8;

pub use gemm::{
    GemmKernel, MR, NR, PackedB, gemm_i8, gemm_i8_kernel, gemm_i8_portable, gemm_i8_with, gemm_u8i8,
};
pub(crate) use gemm::{gemm_u8i8_dequant_par, gemm_u8i8_dequant_vec};

use compress_core::CoreError;

use crate::QuantError;

fn check_scale(scale: f32) -> Result<f32, QuantError> {
    let inv = 1.0 / scale;
    if !(scale > 0.0 && scale.is_finite() && inv.is_finite()) {
        return Err(CoreError::config(
            "scale",
            format!("must be positive, finite and invertible, got {scale}"),
        )
        .into());
    }
    Ok(inv)
}

fn check_zero_point(zero_point: i32, lo: i32, hi: i32) -> Result<(), QuantError> {
    if !(lo..=hi).contains(&zero_point) {
        return Err(CoreError::config(
            "zero_point",
            format!("must be in {lo}..={hi}, got {zero_point}"),
        )
        .into());
    }
    Ok(())
}

/// ONNX `QuantizeLinear` to int8: `out = clamp(round_ties_even(x / scale) + zero_point,
/// -128, 127)`, computed as `x * (1 / scale)`. Non-finite inputs give unspecified codes
/// (use [`QTensor`](crate::QTensor) for checked quantization).
///
/// ```
/// use compress_quant::kernels::quantize_i8_into;
/// let mut q = [0i8; 4];
/// quantize_i8_into(&[0.5, -1.25, 100.0, 0.25], 0.5, 0, &mut q).unwrap();
/// assert_eq!(q, [1, -2, 127, 0]); // -2.5 -> -2 and 0.5 -> 0: ties to even
/// ```
///
/// # Errors
///
/// An invalid-config error for a scale that is not positive and finite, or a zero point
/// outside `-128..=127`.
///
/// # Panics
///
/// If `x` and `out` differ in length.
#[track_caller]
pub fn quantize_i8_into(
    x: &[f32],
    scale: f32,
    zero_point: i32,
    out: &mut [i8],
) -> Result<(), QuantError> {
    quantize_checked(x, scale, zero_point, (-128, 127), out)
}

/// ONNX `QuantizeLinear` to uint8: as [`quantize_i8_into`] with the range `0..=255`.
///
/// # Errors
///
/// As [`quantize_i8_into`], with the zero point in `0..=255`.
///
/// # Panics
///
/// If `x` and `out` differ in length.
#[track_caller]
pub fn quantize_u8_into(
    x: &[f32],
    scale: f32,
    zero_point: i32,
    out: &mut [u8],
) -> Result<(), QuantError> {
    quantize_checked(x, scale, zero_point, (0, 255), out)
}

/// `QuantizeLinear` into codes `lo..=hi` after checking the lengths, the scale and the zero
/// point.
#[track_caller]
fn quantize_checked<T: quantize::CodeOut>(
    x: &[f32],
    scale: f32,
    zero_point: i32,
    (lo, hi): (i32, i32),
    out: &mut [T],
) -> Result<(), QuantError> {
    assert_eq!(x.len(), out.len(), "input and output lengths differ");
    let inv = check_scale(scale)?;
    check_zero_point(zero_point, lo, hi)?;
    quantize::quantize(x, inv, zero_point as f32, lo as f32, hi as f32, out);
    Ok(())
}

/// ONNX `DequantizeLinear` from int8: `out = (q - zero_point) * scale`.
///
/// ```
/// use compress_quant::kernels::dequantize_i8_into;
/// let mut x = [0.0f32; 3];
/// dequantize_i8_into(&[1, -2, 127], 0.5, 0, &mut x);
/// assert_eq!(x, [0.5, -1.0, 63.5]);
/// ```
///
/// # Panics
///
/// If `q` and `out` differ in length.
#[track_caller]
pub fn dequantize_i8_into(q: &[i8], scale: f32, zero_point: i32, out: &mut [f32]) {
    assert_eq!(q.len(), out.len(), "input and output lengths differ");
    quantize::dequantize(q, scale, zero_point, out);
}

/// ONNX `DequantizeLinear` from uint8: `out = (q - zero_point) * scale`.
///
/// # Panics
///
/// If `q` and `out` differ in length.
#[track_caller]
pub fn dequantize_u8_into(q: &[u8], scale: f32, zero_point: i32, out: &mut [f32]) {
    assert_eq!(q.len(), out.len(), "input and output lengths differ");
    quantize::dequantize(q, scale, zero_point, out);
}

/// Symmetric int8 quantization of each row of a row-major `[rows, cols]` matrix with its own
/// scale `absmax / 127` (codes in `-127..=127`), computing the scales in the same pass over
/// each row while it is in cache. All-zero rows get scale 1.
///
/// ```
/// use compress_quant::kernels::quantize_rows_i8_into;
/// let x = [1.0f32, -0.5, 0.0, 2.0, 4.0, -8.0];
/// let (mut q, mut s) = ([0i8; 6], [0.0f32; 2]);
/// quantize_rows_i8_into(&x, 3, &mut q, &mut s).unwrap();
/// assert_eq!(q, [127, -64, 0, 32, 64, -127]);
/// assert_eq!(s, [1.0 / 127.0, 8.0 / 127.0]);
/// ```
///
/// # Errors
///
/// [`CoreError::NonFinite`] (path `"x"`) if a row holds NaN or infinity.
///
/// # Panics
///
/// If `cols == 0`, `x.len()` is not `scales.len() * cols`, or `out.len() != x.len()`.
#[track_caller]
pub fn quantize_rows_i8_into(
    x: &[f32],
    cols: usize,
    out: &mut [i8],
    scales: &mut [f32],
) -> Result<(), QuantError> {
    assert!(cols > 0, "cols must be positive");
    assert_eq!(x.len(), scales.len() * cols, "x must be rows * cols");
    assert_eq!(out.len(), x.len(), "output length");
    for ((row, orow), s) in x
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(cols))
        .zip(scales.iter_mut())
    {
        let (lo, hi, finite) = quantize::min_max(row);
        if !finite {
            // The rows before are finite: the first non-finite value of `x` is in this one.
            return Err(crate::error::non_finite(x, "x"));
        }
        let amax = lo.abs().max(hi.abs());
        let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        *s = scale;
        quantize::quantize(row, 1.0 / scale, 0.0, -127.0, 127.0, orow);
    }
    Ok(())
}

/// Dequantizes packed 4-bit codes (low nibble first): signed two's-complement codes times
/// `scale` without a zero point, or `(code - zero_point) * scale` with one.
///
/// ```
/// use compress_quant::kernels::dequantize_nibbles;
/// let mut out = [0.0f32; 4];
/// dequantize_nibbles(&[0xF1, 0x07], 0.5, None, &mut out);
/// assert_eq!(out, [0.5, -0.5, 3.5, 0.0]);
/// ```
///
/// # Panics
///
/// If `out.len() != 2 * bytes.len()`.
#[track_caller]
pub fn dequantize_nibbles(bytes: &[u8], scale: f32, zero_point: Option<i32>, out: &mut [f32]) {
    assert_eq!(out.len(), 2 * bytes.len(), "two outputs per byte");
    nibbles(bytes, scale, zero_point, out);
}

isa_dispatch! {
    fn nibbles(bytes: &[u8], scale: f32, zero_point: Option<i32>, out: &mut [f32]) as nibbles_body {
        match zero_point {
            None => {
                for (o, &b) in out.chunks_exact_mut(2).zip(bytes) {
                    o[0] = i32::from(((b << 4) as i8) >> 4) as f32 * scale;
                    o[1] = i32::from((b as i8) >> 4) as f32 * scale;
                }
            }
            Some(z) => {
                for (o, &b) in out.chunks_exact_mut(2).zip(bytes) {
                    o[0] = (i32::from(b & 0x0F) - z) as f32 * scale;
                    o[1] = (i32::from(b >> 4) - z) as f32 * scale;
                }
            }
        }
    }
}

/// One output of a weight-only int4 product: `sum_g scales[g] * sum_{i in g} x[i] * w[i]`
/// over a packed row of 4-bit codes (low nibble first; signed codes, or `code - zero_point`
/// when `zero_points` is not empty), without dequantizing the row. `x` comes split into its
/// even and odd elements (`x_even[t] = x[2t]`, `x_odd[t] = x[2t + 1]`), so that each byte's
/// two codes meet their inputs without shuffles; each lane accumulates
/// `scale * (lo * x_even + hi * x_odd)`.
///
/// ```
/// use compress_quant::kernels::int4_row_dot;
/// // Codes 1, -1 (group 0, scale 0.5) and 7, 0 (group 1, scale 2).
/// let y = int4_row_dot(&[0xF1, 0x07], 2, &[0.5, 2.0], &[], &[1.0, 3.0], &[2.0, 4.0]);
/// assert_eq!(y, 0.5 * (1.0 * 1.0 - 1.0 * 2.0) + 2.0 * (7.0 * 3.0 + 0.0 * 4.0));
/// ```
///
/// # Panics
///
/// If `group` is odd or zero, `x_even`/`x_odd` do not have one entry per byte, the row is
/// not a whole number of groups, or `scales` (and a non-empty `zero_points`) do not have one
/// entry per group.
#[track_caller]
pub fn int4_row_dot(
    bytes: &[u8],
    group: usize,
    scales: &[f32],
    zero_points: &[i32],
    x_even: &[f32],
    x_odd: &[f32],
) -> f32 {
    check_row_dot(bytes, group, scales, zero_points, x_even, x_odd);
    row_dot(bytes, group, scales, zero_points, x_even, x_odd)
}

/// Portable twin of [`int4_row_dot`] (same operations in the same order: equal bits).
///
/// # Panics
///
/// As [`int4_row_dot`].
#[track_caller]
pub fn int4_row_dot_portable(
    bytes: &[u8],
    group: usize,
    scales: &[f32],
    zero_points: &[i32],
    x_even: &[f32],
    x_odd: &[f32],
) -> f32 {
    check_row_dot(bytes, group, scales, zero_points, x_even, x_odd);
    row_dot_body(bytes, group, scales, zero_points, x_even, x_odd)
}

#[track_caller]
fn check_row_dot(b: &[u8], group: usize, s: &[f32], z: &[i32], xe: &[f32], xo: &[f32]) {
    assert!(
        group > 0 && group.is_multiple_of(2),
        "group {group} must be even and positive"
    );
    assert!(xe.len() == b.len() && xo.len() == b.len(), "x per byte");
    assert!((2 * b.len()).is_multiple_of(group), "whole groups");
    let groups = 2 * b.len() / group;
    assert_eq!(s.len(), groups, "one scale per group");
    assert!(
        z.is_empty() || z.len() == groups,
        "one zero point per group"
    );
}

isa_dispatch! {
    fn row_dot(b: &[u8], group: usize, s: &[f32], z: &[i32], xe: &[f32], xo: &[f32]) -> f32
        as row_dot_body
    {
        /// Lanes of the accumulator (one AVX-512 vector, two AVX2 vectors).
        const L: usize = 16;
        let half = group / 2;
        let mut acc = [0.0f32; L];
        let mut tail = 0.0f32;
        let groups = b
            .chunks_exact(half)
            .zip(xe.chunks_exact(half))
            .zip(xo.chunks_exact(half));
        for (g, ((gb, ge), go)) in groups.enumerate() {
            let scale = s[g];
            // Codes as (low, high) pairs of i32, signed or shifted by the zero point.
            let codes = |byte: u8| -> (i32, i32) {
                match z.get(g) {
                    None => (
                        i32::from(((byte << 4) as i8) >> 4),
                        i32::from((byte as i8) >> 4),
                    ),
                    Some(&zp) => (i32::from(byte & 0x0F) - zp, i32::from(byte >> 4) - zp),
                }
            };
            let (cb, ce, co) = (gb.chunks_exact(L), ge.chunks_exact(L), go.chunks_exact(L));
            for ((&byte, &e), &o) in cb
                .remainder()
                .iter()
                .zip(ce.remainder())
                .zip(co.remainder())
            {
                let (lo, hi) = codes(byte);
                tail += scale * (lo as f32 * e + hi as f32 * o);
            }
            for ((b8, e8), o8) in cb.zip(ce).zip(co) {
                for t in 0..L {
                    let (lo, hi) = codes(b8[t]);
                    acc[t] += scale * (lo as f32 * e8[t] + hi as f32 * o8[t]);
                }
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

/// Portable twin of [`dequantize_nibbles`].
///
/// # Panics
///
/// As [`dequantize_nibbles`].
#[track_caller]
pub fn dequantize_nibbles_portable(
    bytes: &[u8],
    scale: f32,
    zero_point: Option<i32>,
    out: &mut [f32],
) {
    assert_eq!(out.len(), 2 * bytes.len(), "two outputs per byte");
    nibbles_body(bytes, scale, zero_point, out);
}
