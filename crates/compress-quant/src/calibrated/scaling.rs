//! Activation-aware per-input-channel scaling: AWQ (Lin et al. 2023) for weight-only low-bit
//! weights and SmoothQuant (Xiao et al. 2022) for int8 weights and activations.
//!
//! Both multiply the input columns of the linear layers that read one activation by `s` and
//! divide the activation by `s`, so the product is unchanged in exact arithmetic; the
//! division is folded into whatever produced the activation ([`fold_scales`]): a LayerNorm's
//! `weight` and `bias`, or the output rows of a previous linear layer (attention's output
//! projection reads `softmax(QK^T) V`, which is linear in `V`, so the value projection takes
//! it). The float model computes the same function afterwards; only the quantization grid
//! sees different weights.

use compress_core::surgery::with_param_mut;
use compress_core::{CoreError, Module, Param};
use ndarray::{Array2, ArrayView2, Axis};

use super::grid::{WeightQuant, quantize_rtn};
use crate::QuantError;
use compress_core::capture::InputStats;

/// Where the division of the activation by `s` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleSource {
    /// Folded into the LayerNorm at this path (`PATH.weight`, `PATH.bias` divided by `s`).
    /// Only valid when the norm's output feeds nothing but the scaled layers (pre-LN
    /// models); in a post-LN BERT the norm's output is also the residual stream.
    Norm(String),
    /// Folded into the output rows of the linear layer at this path (`PATH.weight`,
    /// `PATH.bias`), e.g. the value projection for attention's output projection.
    Linear(String),
    /// Kept explicit: each scaled layer multiplies its input by `1 / s` before its kernel
    /// ([`InputScaled`](super::InputScaled)), as AutoAWQ's scaled activations; `k`
    /// multiplications per token against the layer's `k * n` multiply-adds.
    Explicit,
}

/// Folds per-channel scales: the input columns of every layer in `linears` are multiplied by
/// `s`, and `source`'s output channels divided by it.
///
/// # Errors
///
/// [`CoreError::MissingParam`] for a path with no such parameter; a shape mismatch when `s`
/// does not have one entry per channel; an invalid-config error for a scale that is not
/// positive and finite.
pub fn fold_scales<M: Module<f32> + ?Sized>(
    model: &mut M,
    source: &ScaleSource,
    linears: &[String],
    s: &[f32],
) -> Result<(), QuantError> {
    if let Some(bad) = s.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(
            CoreError::config("scales", format!("must be positive and finite, got {bad}")).into(),
        );
    }
    let divide_rows = |p: &mut Param<f32>, path: &str| -> compress_core::Result<()> {
        if p.shape().first() != Some(&s.len()) {
            return Err(CoreError::shape(path.to_string(), &[s.len()], p.shape()));
        }
        for (mut row, &si) in p.value_mut().axis_iter_mut(Axis(0)).zip(s) {
            row.mapv_inplace(|v| v / si);
        }
        Ok(())
    };
    // Check every consumer before changing anything.
    for l in linears {
        let path = format!("{l}.weight");
        with_param_mut(model, &path, |p| {
            if p.shape().len() != 2 || p.shape()[1] != s.len() {
                return Err(CoreError::shape(path.clone(), &[0, s.len()], p.shape()));
            }
            Ok(())
        })?;
    }
    let (w, b) = match source {
        ScaleSource::Norm(p) | ScaleSource::Linear(p) => {
            (format!("{p}.weight"), format!("{p}.bias"))
        }
        ScaleSource::Explicit => {
            return Err(CoreError::config(
                "source",
                "explicit scales are not folded into the model (see InputScaled)",
            )
            .into());
        }
    };
    with_param_mut(model, &w, |p| divide_rows(p, &w))?;
    // A missing bias is fine (nothing to divide).
    match with_param_mut(model, &b, |p| divide_rows(p, &b)) {
        Err(CoreError::MissingParam { .. }) | Ok(()) => {}
        Err(e) => return Err(e.into()),
    }
    for l in linears {
        let path = format!("{l}.weight");
        with_param_mut(model, &path, |p| {
            for mut row in p.value_mut().rows_mut() {
                for (v, &si) in row.iter_mut().zip(s) {
                    *v *= si;
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// SmoothQuant's scales `s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha)` over every weight
/// that reads the activation (`alpha` = 0.5 in the paper), clamped to `[1e-5, 1e5]`; a
/// channel never active keeps `s_j = 1`.
///
/// # Errors
///
/// An invalid-config error for `alpha` outside `[0, 1]`; a shape mismatch between a weight and
/// the statistics.
pub fn smoothquant_scales(
    stats: &InputStats,
    weights: &[ArrayView2<'_, f32>],
    alpha: f32,
) -> Result<Vec<f32>, QuantError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(CoreError::config("alpha", format!("must be in [0, 1], got {alpha}")).into());
    }
    let k = stats.features;
    let mut wmax = vec![0.0f32; k];
    for w in weights {
        if w.ncols() != k {
            return Err(CoreError::shape("smoothed weight", &[w.nrows(), k], w.shape()).into());
        }
        for row in w.rows() {
            for (m, v) in wmax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
    }
    Ok(stats
        .abs_max
        .iter()
        .zip(&wmax)
        .map(|(&a, &w)| {
            if a == 0.0 || w == 0.0 {
                1.0
            } else {
                (a.powf(alpha) / w.powf(1.0 - alpha)).clamp(1e-5, 1e5)
            }
        })
        .collect())
}

/// The result of [`awq_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct AwqScales {
    /// Per-input-channel scales (all ones when no scaling won).
    pub scales: Vec<f32>,
    /// The exponent that won (`None`: no scaling, plain round-to-nearest, won).
    pub alpha: Option<f32>,
    /// The summed squared output error over the calibration tokens with those scales.
    pub error: f64,
    /// The same error without scaling (plain round-to-nearest).
    pub rtn_error: f64,
}

/// Summed squared output error `sum_rows dw^T (X^T X) dw` of replacing `w` by `q`.
fn output_error(w: &ArrayView2<'_, f32>, q: &Array2<f32>, xtx: &Array2<f64>) -> f64 {
    let d = (w - q).mapv(f64::from);
    let dh = d.dot(xtx);
    (&dh * &d).sum()
}

/// Mean over the rows of every weight of `|w_rc| / max |w_r,group(c)|`: how large each input
/// channel's weights are relative to the rest of their quantization group.
fn normalized_weight_mean(
    path: &str,
    weights: &[ArrayView2<'_, f32>],
    quant: WeightQuant,
    k: usize,
) -> Result<Vec<f64>, QuantError> {
    let g = quant.group_for(path, k)?;
    let mut sum = vec![0.0f64; k];
    let mut rows = 0usize;
    for w in weights {
        if w.ncols() != k {
            return Err(CoreError::shape(path.to_string(), &[w.nrows(), k], w.shape()).into());
        }
        for row in w.rows() {
            let row = row.to_vec();
            for (c0, chunk) in row.chunks_exact(g).enumerate() {
                let m = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs())) + 1e-6;
                for (j, v) in chunk.iter().enumerate() {
                    sum[c0 * g + j] += f64::from(v.abs() / m);
                }
            }
            rows += 1;
        }
    }
    Ok(sum.iter().map(|v| v / rows.max(1) as f64).collect())
}

/// The summed output error of `Q(W diag(s)) diag(s)^-1` over `weights`.
fn scaled_error(
    path: &str,
    weights: &[ArrayView2<'_, f32>],
    s: &[f32],
    quant: WeightQuant,
    xtx: &Array2<f64>,
) -> Result<f64, QuantError> {
    let mut error = 0.0;
    for w in weights {
        let scaled = Array2::from_shape_fn(w.dim(), |(r, c)| w[[r, c]] * s[c]);
        let mut q = quantize_rtn(path, &scaled.view(), quant)?.dequantize();
        for mut row in q.rows_mut() {
            for (v, &si) in row.iter_mut().zip(s) {
                *v /= si;
            }
        }
        error += output_error(w, &q, xtx);
    }
    Ok(error)
}

/// AWQ's scale search over the layers that read one activation: per input channel
/// `s = mean|x|^alpha / mean|w~|^(1 - alpha)` for `alpha = i / grid`, `i` in `0..grid`
/// (`|w~|` each weight's magnitude relative to the largest of its row group, averaged
/// over every row of every weight; `s` normalised by `sqrt(max s * min s)`), every weight
/// quantized round-to-nearest as `Q(W diag(s)) diag(s)^-1`, and the candidate with the
/// lowest output error on the calibration data kept. No scaling (`s = 1`, plain
/// round-to-nearest) is a candidate too, so the result is never worse than it there.
///
/// The output error `sum_rows dW^T (X^T X) dW` is computed from the captured `X^T X`, so
/// no activations are stored.
///
/// # Errors
///
/// An invalid-config error when the statistics have no Hessian or `grid` is 0; a shape
/// error for a weight whose width is not the statistics'; the errors of [`quantize_rtn`]
/// (bits, group size, non-finite weights).
pub fn awq_search(
    path: &str,
    stats: &InputStats,
    weights: &[ArrayView2<'_, f32>],
    quant: WeightQuant,
    grid: usize,
) -> Result<AwqScales, QuantError> {
    let xtx = stats.xtx.as_ref().ok_or_else(|| {
        QuantError::from(CoreError::config(
            format!("awq `{path}`"),
            "needs statistics captured with the Hessian (CaptureSpec::hessian)",
        ))
    })?;
    if grid == 0 {
        return Err(CoreError::config("grid", "must be at least 1, got 0").into());
    }
    let k = stats.features;
    let x_mean = stats.abs_mean();
    let w_mean = normalized_weight_mean(path, weights, quant, k)?;
    let ones = vec![1.0f32; k];
    let rtn_error = scaled_error(path, weights, &ones, quant, xtx)?;
    let mut best = AwqScales {
        scales: ones,
        alpha: None,
        error: rtn_error,
        rtn_error,
    };
    for step in 0..grid {
        let alpha = step as f64 / grid as f64;
        let mut s: Vec<f32> = x_mean
            .iter()
            .zip(&w_mean)
            .map(|(&x, &w)| (x.powf(alpha) / (w.powf(1.0 - alpha) + 1e-4)).max(1e-4) as f32)
            .collect();
        let (lo, hi) = s
            .iter()
            .fold((f32::MAX, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let norm = (lo * hi).sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            continue;
        }
        for v in &mut s {
            *v = (*v / norm).clamp(1e-4, 1e4);
        }
        let error = scaled_error(path, weights, &s, quant, xtx)?;
        if error < best.error {
            best = AwqScales {
                scales: s,
                alpha: Some(alpha as f32),
                error,
                rtn_error,
            };
        }
    }
    Ok(best)
}
