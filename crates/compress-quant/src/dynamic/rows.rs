//! Per-token activation quantization of [`super::DynamicQLinear`] (the dequantization is
//! fused into the GEMM: [`crate::kernels::epilogue`]).

use crate::QuantError;
use crate::error::non_finite;
use crate::kernels::epilogue::{Dequant, OutLayout};
use crate::kernels::{PackedB, gemm_u8i8_dequant_par, gemm_u8i8_dequant_vec, quantize};

/// How [`super::DynamicQLinear`] quantizes each input row (token) at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenQuant {
    /// Codes `0..=255` over the row's `[min(lo, 0), max(hi, 0)]` with a zero point (zero is
    /// exact): `scale = (hi - lo) / 255`. Uses the whole code range on one-sided rows (after
    /// GELU or ReLU).
    #[default]
    Asymmetric,
    /// Codes `-127..=127`, `scale = absmax / 127`, no zero point.
    Symmetric,
}

/// The scale, zero point (in `u8` code space) and lowest code of a row with range
/// `[lo, hi]`. Rows with no usable range (all zeros, or too small to invert) get scale 1
/// and quantize to zero.
pub(crate) fn row_params(lo: f32, hi: f32, act: TokenQuant) -> (f32, i32, f32) {
    let usable = |scale: f32| scale > 0.0 && (1.0 / scale).is_finite();
    match act {
        TokenQuant::Asymmetric => {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let scale = (hi - lo) / 255.0;
            if !usable(scale) {
                return (1.0, 0, 0.0);
            }
            let zp = (-lo * (1.0 / scale)).round_ties_even().clamp(0.0, 255.0);
            (scale, zp as i32, 0.0)
        }
        TokenQuant::Symmetric => {
            let scale = lo.abs().max(hi.abs()) / 127.0;
            if !usable(scale) {
                return (1.0, 128, 1.0);
            }
            (scale, 128, 1.0)
        }
    }
}

/// Buffers reused across calls (grown, never shrunk), so that a forward pass allocates only
/// its output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    /// Activation codes, `[m, lda]` `u8`.
    pub(crate) codes: Vec<u8>,
    /// Integer accumulators, `[m, n]`.
    pub(crate) acc: Vec<i32>,
    /// Per-row activation scales.
    pub(crate) row_scales: Vec<f32>,
    /// Per-row zero points (`u8` code space).
    pub(crate) row_zps: Vec<i32>,
}

impl Scratch {
    /// Quantizes the `[m, k]` rows of `x` into `codes` (row stride `lda`), with one scale and
    /// zero point per row; a non-finite value is reported under the path `what`.
    pub(crate) fn quantize(
        &mut self,
        what: &str,
        x: &[f32],
        m: usize,
        k: usize,
        lda: usize,
        act: TokenQuant,
    ) -> Result<(), QuantError> {
        grow(&mut self.codes, m * lda, 0);
        grow(&mut self.row_scales, m, 0.0);
        grow(&mut self.row_zps, m, 0);
        let params = |lo, hi| row_params(lo, hi, act);
        let (codes, scales, zps) = (&mut self.codes, &mut self.row_scales, &mut self.row_zps);
        // The rows before the one reported are finite: the first non-finite value of `x`
        // is in it.
        quantize::quantize_rows(x, m, k, lda, params, codes, scales, zps)
            .map_err(|_| non_finite(x, what))
    }
}

impl Scratch {
    /// Quantizes the `[m, k]` rows of `x` symmetrically (codes `-127..=127` stored `+ 128`)
    /// with one given scale for every row. The caller checked `x` for non-finite values and
    /// `scale` for a usable value.
    pub(crate) fn quantize_shared(
        &mut self,
        x: &[f32],
        m: usize,
        k: usize,
        lda: usize,
        scale: f32,
    ) {
        grow(&mut self.codes, m * lda, 0);
        grow(&mut self.row_scales, m, 0.0);
        grow(&mut self.row_zps, m, 0);
        let inv = 1.0 / scale;
        let rows = x.chunks_exact(k).zip(self.codes.chunks_exact_mut(lda));
        for (row, codes) in rows.take(m) {
            quantize::quantize(row, inv, 128.0, 1.0, 255.0, &mut codes[..k]);
        }
        self.row_scales[..m].fill(scale);
        self.row_zps[..m].fill(128);
    }
}

fn grow<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}

impl Scratch {
    /// After [`Scratch::quantize`] (or [`Scratch::quantize_shared`]) of `m` rows: their
    /// product with `b` dequantized with the weight scales `col_scales` and `bias`, into
    /// `out` (`[m, n]`, returning an empty vector) or, without `out`, into a new vector.
    pub(crate) fn product(
        &mut self,
        m: usize,
        b: &PackedB,
        col_scales: &[f32],
        bias: &[f32],
        out: Option<&mut [f32]>,
    ) -> Vec<f32> {
        let dq = Dequant {
            row_scales: &self.row_scales[..m],
            row_zps: &self.row_zps[..m],
            col_sums: b.col_sums(),
            col_scales,
            bias,
            layout: OutLayout::RowMajor,
        };
        let (a, lda) = (&self.codes[..m * b.lda()], b.lda());
        match out {
            Some(out) => {
                gemm_u8i8_dequant_par(a, lda, m, b, dq, out, &mut self.acc);
                Vec::new()
            }
            None => gemm_u8i8_dequant_vec(a, lda, m, b, dq, &mut self.acc),
        }
    }
}
