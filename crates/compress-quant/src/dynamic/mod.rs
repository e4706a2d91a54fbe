//! Dynamic int8 linear layer for transformers ([`DynamicQLinear`]): int8 weights quantized
//! once per output channel, activations quantized per token (per row) at inference, exact
//! integer accumulation and one fused dequantize + bias pass.

#[cfg(test)]
mod encoder_tests;
pub(crate) mod rows;
mod share;
mod swap;
#[cfg(test)]
mod tests;
mod w4a8;

use crate::int_linear::{IntLinear, LinearShape, check_bias_len, int_linear_layer};
use compress_core::{CoreError, Float, Result};
use compress_nn::Linear;
use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::kernels::PackedB;
use crate::qlinear::as_core;
use crate::qtensor::effective_f32;
use crate::{IntScheme, QTensor, QuantError};

pub use rows::TokenQuant;
pub use share::{InputShare, share_attention_inputs};
pub use swap::quantize_dynamic;
pub use w4a8::{W4A8Linear, int4_to_w4a8};

/// A fully connected layer computing `y = x W^T + b` in integers, for transformer inference
/// (W8A8 "dynamic" quantization):
///
/// - weights: int8, symmetric, one scale per output channel, packed once at construction for
///   the `vpdpbusd` GEMM kernel ([`crate::kernels::gemm_u8i8`]);
/// - activations: each row (token) quantized at inference with its own scale, by default
///   asymmetric over `0..=255` with a zero point ([`TokenQuant::Asymmetric`]: post-GELU rows
///   are far from symmetric and keep one more bit), or symmetric `-127..=127`
///   ([`TokenQuant::Symmetric`]);
/// - exact `i32` accumulation, then `y = (acc - zp_row * colsum_w) * s_row * s_col + b` in one
///   pass. The bias stays `f32`.
///
/// Inference only: [`Layer::backward`](compress_core::Layer::backward) returns [`CoreError::InvalidState`]. The layer has no
/// float parameters to visit; [`DynamicQLinear::weight_codes`], [`weight_scales`] and
/// [`bias`] give its stored form and [`DynamicQLinear::from_parts`] rebuilds it.
///
/// [`weight_scales`]: DynamicQLinear::weight_scales
/// [`bias`]: DynamicQLinear::bias
///
/// # Shapes
///
/// - input: `[..., in_features]` (any leading dimensions, flattened into rows);
/// - output: `[..., out_features]`.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::Linear;
/// use compress_quant::DynamicQLinear;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut lin = Linear::<f32>::new(64, 16, true, &mut StdRng::seed_from_u64(1));
/// let mut q = DynamicQLinear::from_linear(&lin)?;
/// let x = ArrayD::from_shape_fn(vec![2, 3, 64], |ix| ((ix[1] * 64 + ix[2]) as f32 * 0.1).sin());
/// let yq = q.forward(&x, Mode::Eval)?;
/// assert_eq!(yq.shape(), &[2, 3, 16]);
/// let y = lin.forward(&x.to_shape(vec![6, 64])?.to_owned(), Mode::Eval)?;
/// let err = y.iter().zip(&yq).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
/// assert!(err < 0.02, "{err}");
/// assert!(q.backward(&yq).is_err()); // inference only
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamicQLinear {
    packed: PackedB,
    w_scales: Vec<f32>,
    /// The bias, zeros when the layer has none (`has_bias` tells which).
    bias: Vec<f32>,
    has_bias: bool,
    /// Non-zero weight codes plus non-zero bias values.
    nonzero: usize,
    act: TokenQuant,
    scratch: rows::Scratch,
    /// Quantized inputs shared with other layers reading the same input, if linked.
    share: Option<InputShare>,
}

impl DynamicQLinear {
    /// Largest `in_features` for which the integer sums cannot overflow `i32`
    /// (`k * 255 * 128 < 2^31` with asymmetric activations).
    pub const MAX_IN_FEATURES: usize = 65_793;

    /// Quantizes a [`Linear`]'s effective weight to int8 per output channel (symmetric,
    /// round to nearest) with asymmetric per-token activations.
    ///
    /// # Errors
    ///
    /// Non-finite weights or bias, or more than [`Self::MAX_IN_FEATURES`] inputs.
    pub fn from_linear<F: Float>(linear: &Linear<F>) -> Result<Self, QuantError> {
        let w = effective_f32(&linear.weight);
        let (n, k) = (linear.out_features(), linear.in_features());
        let q = QTensor::quantize_slice(&w, &[n, k], IntScheme::int8_per_channel())?;
        let codes: Vec<i8> = q.data().iter().map(|&c| c as i8).collect();
        let scales = if q.scales().len() == 1 {
            vec![q.scales()[0]; n]
        } else {
            q.scales().to_vec()
        };
        let bias = linear.bias.as_ref().map(effective_f32);
        Self::from_parts(&codes, n, k, scales, bias)
    }

    /// Builds the layer from its stored form: `codes` the int8 weight `[out, in]` row-major,
    /// one positive scale per output channel, an optional bias of `out` values.
    ///
    /// ```
    /// use compress_quant::DynamicQLinear;
    /// let q = DynamicQLinear::from_parts(&[1, -2, 3, 4], 2, 2, vec![0.5, 0.25], None).unwrap();
    /// assert_eq!(q.weight_codes(), vec![1, -2, 3, 4]);
    /// assert!(DynamicQLinear::from_parts(&[1, 2], 2, 2, vec![1.0, 1.0], None).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A shape error when `codes`, `scales` or `bias` have the wrong length; an
    /// invalid-config error for an empty layer, a scale that is not positive and finite, a
    /// non-finite bias, or more than [`Self::MAX_IN_FEATURES`] inputs.
    pub fn from_parts(
        codes: &[i8],
        out_features: usize,
        in_features: usize,
        scales: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self, QuantError> {
        let (n, k) = (out_features, in_features);
        if n == 0 || k == 0 {
            return Err(CoreError::config(
                "features",
                format!("DynamicQLinear needs in and out features > 0, got in {k}, out {n}"),
            )
            .into());
        }
        if k > Self::MAX_IN_FEATURES {
            return Err(CoreError::config(
                "in_features",
                format!(
                    "{k} exceeds {}, where i32 accumulation could overflow",
                    Self::MAX_IN_FEATURES
                ),
            )
            .into());
        }
        if codes.len() != n * k {
            return Err(CoreError::shape("weight codes", &[n, k], &[codes.len()]).into());
        }
        if scales.len() != n {
            return Err(CoreError::shape("weight scales", &[n], &[scales.len()]).into());
        }
        if let Some((j, s)) = scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(CoreError::config(
                "weight scales",
                format!("scale {j} must be positive and finite, got {s}"),
            )
            .into());
        }
        let (bias, has_bias) = checked_bias(bias, n)?;
        let nonzero =
            codes.iter().filter(|&&c| c != 0).count() + bias.iter().filter(|&&b| b != 0.0).count();
        Ok(Self {
            packed: PackedB::from_nk(codes, n, k),
            w_scales: scales,
            bias,
            has_bias,
            nonzero,
            act: TokenQuant::default(),
            scratch: rows::Scratch::default(),
            share: None,
        })
    }

    /// The same layer with activations quantized by `act`.
    #[must_use]
    pub fn with_token_quant(mut self, act: TokenQuant) -> Self {
        self.act = act;
        self
    }

    /// How activations are quantized.
    pub fn token_quant(&self) -> TokenQuant {
        self.act
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.packed.k()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.packed.n()
    }

    /// The int8 weight codes, `[out, in]` row-major (unpacked from the kernel layout).
    pub fn weight_codes(&self) -> Vec<i8> {
        self.packed.to_nk()
    }

    /// The per-output-channel weight scales.
    pub fn weight_scales(&self) -> &[f32] {
        &self.w_scales
    }

    /// The f32 bias, if the layer has one.
    pub fn bias(&self) -> Option<&[f32]> {
        self.has_bias.then_some(self.bias.as_slice())
    }

    /// The weight as the f32 matrix the integer layer stands for (`codes * scale`, `[out, in]`).
    pub fn dequantized_weight(&self) -> Vec<f32> {
        let k = self.in_features();
        let mut w: Vec<f32> = self.weight_codes().iter().map(|&c| f32::from(c)).collect();
        for (row, &s) in w.chunks_exact_mut(k).zip(&self.w_scales) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        w
    }

    /// Bytes of the layer's stored form: one byte per weight, a f32 scale per output channel
    /// and the f32 bias if any.
    pub fn size_bytes(&self) -> usize {
        let n = self.out_features();
        self.in_features() * n + 4 * n + if self.has_bias { 4 * n } else { 0 }
    }

    /// Bytes the layer holds in memory for inference: the packed weights (with their padding
    /// to whole panels), column sums, scales and bias.
    pub fn memory_bytes(&self) -> usize {
        self.packed.size_bytes() + 4 * self.w_scales.len() + 4 * self.bias.len()
    }

    /// `y = x W^T + b` for a row-major `[m, in]` input into a row-major `[m, out]` output.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] (path `"DynamicQLinear input"`) for NaN or infinite inputs;
    /// a shape error when `x` or `out` do not have `m` rows of the layer's widths.
    pub fn forward_f32(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.shape().check_rows("DynamicQLinear", m, x, out)?;
        let (k, lda) = (self.in_features(), self.packed.lda());
        let what = "DynamicQLinear input";
        if let Some(share) = &self.share {
            let (b, ws, bias) = (&self.packed, &self.w_scales, &self.bias);
            return share.with_codes((x, m, k, lda), self.act, what, |s| {
                s.product(m, b, ws, bias, Some(out));
            });
        }
        let s = &mut self.scratch;
        s.quantize(what, x, m, k, lda, self.act)?;
        s.product(m, &self.packed, &self.w_scales, &self.bias, Some(out));
        Ok(())
    }

    /// Links the layer to `share` (or unlinks it with `None`): layers linked to one share
    /// quantize an input they all read only once ([`InputShare`]); results are unchanged.
    pub fn set_input_share(&mut self, share: Option<InputShare>) {
        self.share = share;
    }
}

/// An optional bias of `n` finite values as `(values, present)`, zeros when absent.
pub(crate) fn checked_bias(
    bias: Option<Vec<f32>>,
    n: usize,
) -> Result<(Vec<f32>, bool), QuantError> {
    check_bias_len(bias.as_ref(), n)?;
    let has_bias = bias.is_some();
    let bias = bias.unwrap_or_else(|| vec![0.0; n]);
    if let Some(index) = bias.iter().position(|b| !b.is_finite()) {
        return Err(CoreError::NonFinite {
            path: "bias".into(),
            index,
            value: f64::from(bias[index]),
        }
        .into());
    }
    Ok((bias, has_bias))
}

/// The number of rows of an input `[..., k]` (its leading dimensions flattened).
pub(crate) fn rows_of(shape: &[usize], what: &str, k: usize) -> Result<usize> {
    match shape.split_last() {
        Some((&last, lead)) if last == k => Ok(lead.iter().product()),
        _ => {
            let rows = shape.first().copied().unwrap_or(1);
            Err(CoreError::shape(what, &[rows, k], shape))
        }
    }
}

/// Runs a row-wise f32 kernel `f(x, rows, y)` on an input `[..., k]` into an output
/// `[..., n]`, without copies when `F` is `f32`.
pub(crate) fn forward_rows<F: Float>(
    x: &ArrayRef<F, IxDyn>,
    what: &str,
    k: usize,
    n: usize,
    mut f: impl FnMut(&[f32], usize, &mut [f32]) -> Result<(), QuantError>,
) -> Result<ArrayD<F>> {
    let m = rows_of(x.shape(), what, k)?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("checked: at least one dimension") = n;
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout is contiguous");
    let mut y = vec![F::zero(); m * n];
    match (F::as_f32_slice(xs), F::as_f32_slice_mut(&mut y)) {
        (Some(xf), Some(yf)) => f(xf, m, yf).map_err(as_core)?,
        _ => {
            let xf: Vec<f32> = xs.iter().map(|v| v.as_f64() as f32).collect();
            let mut yf = vec![0.0f32; m * n];
            f(&xf, m, &mut yf).map_err(as_core)?;
            for (d, &v) in y.iter_mut().zip(&yf) {
                *d = F::lit(f64::from(v));
            }
        }
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), y)?)
}

impl IntLinear for DynamicQLinear {
    fn shape(&self) -> LinearShape {
        LinearShape {
            in_width: self.in_features(),
            out_width: self.out_features(),
            bias: self.has_bias,
        }
    }
    fn nonzero_count(&self) -> usize {
        self.nonzero
    }
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.forward_f32(x, m, out)
    }
}

int_linear_layer!(DynamicQLinear, "DynamicQLinear");
