//! Scales and zero points from ranges, and the signal-to-quantization-noise ratio.

use compress_core::CoreError;
use half::f16;

use crate::{IntScheme, QuantError, ScaleDtype};

/// Smallest scale used, so that `1 / scale` stays finite.
const MIN_SCALE: f32 = 1e-30;

/// Rounds a positive scale up to the next representable f16 (so the clip range never
/// shrinks).
fn round_up_f16(s: f32) -> Result<f32, QuantError> {
    let mut h = f16::from_f32(s);
    if h.to_f32() < s {
        h = f16::from_bits(h.to_bits() + 1);
    }
    if h.is_infinite() {
        return Err(CoreError::config(
            "scale_dtype",
            format!("scale {s} overflows f16 (max 65504); use f32 scales"),
        )
        .into());
    }
    Ok(h.to_f32())
}

/// The scale and zero point that `scheme` uses for values clipped to `[lo, hi]`.
///
/// - symmetric: `scale = max(|lo|, |hi|) / (2^(b-1) - 1)`, zero point 0;
/// - affine: the range is widened to contain 0, `scale = (hi - lo) / (2^b - 1)` and
///   `zero_point = round(-lo / scale)`, so that 0.0 is represented exactly; the scale is
///   then widened just enough that the grid with the rounded zero point still covers
///   `[lo, hi]` (so min-max ranges never clip).
///
/// A zero-width range gets scale 1. With f16 scales the scale is rounded up to an f16.
///
/// ```
/// use compress_quant::{IntScheme, qparams_from_range};
/// let (s, z) = qparams_from_range(-1.0, 3.0, IntScheme::new(8).affine()).unwrap();
/// assert_eq!((s, z), (3.0 / 191.0, 64)); // grid [-64 s, 191 s] covers [-1, 3]
/// let (s, z) = qparams_from_range(-1.0, 3.0, IntScheme::new(8)).unwrap();
/// assert_eq!((s, z), (3.0 / 127.0, 0));
/// ```
///
/// # Errors
///
/// An invalid-config error when `lo > hi` or either end is not finite, an unsupported bit
/// width, or a scale that overflows f16.
pub fn qparams_from_range(lo: f32, hi: f32, scheme: IntScheme) -> Result<(f32, i32), QuantError> {
    scheme.validate()?;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(
            CoreError::config("range", format!("need finite lo <= hi, got [{lo}, {hi}]")).into(),
        );
    }
    let (qlo, qhi) = scheme.code_range();
    let (mut scale, zp) = if scheme.affine {
        let (l, h) = (lo.min(0.0), hi.max(0.0));
        let s = (h - l) / (qhi - qlo) as f32;
        if s == 0.0 {
            (1.0, 0)
        } else {
            affine_cover(l, h, s.max(MIN_SCALE), qlo, qhi)
        }
    } else {
        let s = lo.abs().max(hi.abs()) / qhi as f32;
        (if s == 0.0 { 1.0 } else { s }, 0)
    };
    scale = scale.max(MIN_SCALE);
    if scheme.scale_dtype == ScaleDtype::F16 {
        scale = round_up_f16(scale)?;
    }
    Ok((scale, zp))
}

/// The integer zero point next to `-l / s` and the smallest scale `>= s` with which the
/// grid `[(qlo - z) s', (qhi - z) s']` still covers `[l, h]` (rounding the zero point alone
/// would shift the grid and clip one end).
fn affine_cover(l: f32, h: f32, s: f32, qlo: i32, qhi: i32) -> (f32, i32) {
    let t = -l / s;
    let mut best = (f32::INFINITY, 0);
    for z in [t.floor() as i32, t.ceil() as i32] {
        let z = z.clamp(qlo, qhi);
        let need_lo = if l < 0.0 {
            if z > qlo {
                -l / (z - qlo) as f32
            } else {
                f32::INFINITY
            }
        } else {
            0.0
        };
        let need_hi = if h > 0.0 {
            if z < qhi {
                h / (qhi - z) as f32
            } else {
                f32::INFINITY
            }
        } else {
            0.0
        };
        let s2 = need_lo.max(need_hi).max(s);
        if s2 < best.0 {
            best = (s2, z);
        }
    }
    // Some candidate always works for l <= 0 <= h and qhi - qlo >= 3.
    if best.0.is_finite() {
        best
    } else {
        (s, t.round_ties_even() as i32)
    }
}
