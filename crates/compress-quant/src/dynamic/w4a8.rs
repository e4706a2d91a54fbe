//! [`W4A8Linear`]: 4-bit group-wise weights (as GPTQ / AWQ / round-to-nearest write them)
//! with per-token int8 activations, on the `vpdpbusd` W4A8 kernel.

use compress_core::surgery::{Walk, walk_layers_mut};
use compress_core::{Float, Layer, Result};
use compress_nn::Linear;

use super::TokenQuant;
use super::rows::Scratch;
use crate::calibrated::InputScaled;
use crate::int_linear::{IntLinear, LinearShape, int_linear_layer, wrong_weight};
use crate::kernels::w4a8::{PackedW4, RowsU8, w4a8_gemm};
use crate::{Granularity, Int4Linear, IntScheme, QTensor, QuantError, QuantScheme};

/// A fully connected layer `y = x W^T + b` with 4-bit weights and int8 activations (W4A8),
/// the fast form of an int4 model on CPUs with int8 dot products:
///
/// - weights: 4-bit codes per group of `group_size` inputs (symmetric, or affine with a
///   zero point per group), kept 4-bit in memory in the kernel's packed layout and unpacked
///   one panel at a time into a small buffer ([`crate::kernels`]' W4A8 GEMM);
/// - activations: each row (token) quantized at inference to `u8` with its own scale and
///   zero point ([`TokenQuant::Asymmetric`]), as in [`DynamicQLinear`](crate::DynamicQLinear);
/// - per group, the exact `i32` dot product of activation and weight codes, minus the row's
///   zero point times the group's precomputed weight-code sum, converted to `f32` and
///   accumulated with the group's scale; then times the row's scale plus the bias.
///
/// Compared with the weight-only [`Int4Linear`](crate::Int4Linear) (same weights, f32
/// activations), the activations are rounded to 8 bits: a different numerical mode, whose
/// fidelity on MiniLM is in `docs/guide/transformers.md`. Inference only.
///
/// # Shapes
///
/// - input: `[..., in_features]` (leading dimensions flattened into rows);
/// - output: `[..., out_features]`.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::Linear;
/// use compress_quant::{Int4Linear, W4A8Linear};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lin = Linear::<f32>::new(64, 16, true, &mut StdRng::seed_from_u64(1));
/// let mut w4 = Int4Linear::from_linear(&lin, 32, true)?;
/// let mut q = W4A8Linear::from_int4(&w4)?; // the same weights and bias
/// let x = ArrayD::from_shape_fn(vec![3, 64], |ix| ((ix[0] * 64 + ix[1]) as f32 * 0.1).sin());
/// let (y4, y) = (w4.forward(&x, Mode::Eval)?, q.forward(&x, Mode::Eval)?);
/// let err = y4.iter().zip(&y).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
/// assert!(err < 0.05, "{err}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct W4A8Linear {
    packed: PackedW4,
    /// Whether the weight had zero points (else codes were signed, stored `+ 8`).
    affine: bool,
    /// The bias, zeros when the layer has none.
    bias: Vec<f32>,
    has_bias: bool,
    scratch: Scratch,
    unpacked: Vec<i8>,
}

impl W4A8Linear {
    /// Largest group size: the per-group `i32` sums (`group * 255 * 30` at most) cannot
    /// overflow.
    pub const MAX_GROUP: usize = 1 << 18;

    /// Quantizes a [`Linear`]'s effective weight to 4 bits with groups of `group_size` inputs
    /// (`affine` adds zero points), round to nearest.
    ///
    /// # Errors
    ///
    /// As [`Self::from_qtensor`], and non-finite weights.
    pub fn from_linear<F: Float>(
        linear: &Linear<F>,
        group_size: usize,
        affine: bool,
    ) -> Result<Self, QuantError> {
        Self::from_int4(&Int4Linear::from_linear(linear, group_size, affine)?)
    }

    /// The W4A8 form of a weight-only int4 layer: its weight and bias.
    ///
    /// # Errors
    ///
    /// As [`Self::from_qtensor`].
    pub fn from_int4(layer: &Int4Linear) -> Result<Self, QuantError> {
        Self::from_qtensor(layer.weight().clone(), layer.bias().map(<[f32]>::to_vec))
    }

    /// Builds from a 2-D 4-bit per-group tensor `[out, in]` (groups along `in`) and an
    /// optional bias `[out]`.
    ///
    /// # Errors
    ///
    /// An invalid-config error for another scheme or shape, [`QuantError::GroupSize`] for a
    /// group size that is not a multiple of 8 or above [`Self::MAX_GROUP`], a bias of the
    /// wrong length or with non-finite values.
    pub fn from_qtensor(weight: QTensor, bias: Option<Vec<f32>>) -> Result<Self, QuantError> {
        let (group, affine) = match weight.scheme() {
            QuantScheme::Int(IntScheme {
                bits: 4,
                granularity: Granularity::PerGroup { group_size },
                affine,
                ..
            }) if weight.shape().len() == 2 => (group_size, affine),
            _ => return Err(wrong_weight("W4A8Linear", "2-D 4-bit per-group", &weight)),
        };
        let (n, k) = (weight.shape()[0], weight.shape()[1]);
        if !group.is_multiple_of(8) || group > Self::MAX_GROUP {
            return Err(QuantError::GroupSize {
                path: "W4A8Linear weight (a multiple of 8 is needed)".into(),
                group_size: group,
                dim: 1,
                len: k,
            });
        }
        let (bias, has_bias) = super::checked_bias(bias, n)?;
        // Codes in 0..=15: affine codes as they are, signed codes shifted by 8 (zero point 8).
        let off = if affine { 0 } else { 8 };
        let q: Vec<u8> = weight.codes().iter().map(|&c| (c + off) as u8).collect();
        let zps: Vec<u8> = if affine {
            weight.zero_points().iter().map(|&z| z as u8).collect()
        } else {
            vec![8; weight.scales().len()]
        };
        Ok(Self {
            packed: PackedW4::new(&q, &zps, weight.scales(), n, k, group),
            affine,
            bias,
            has_bias,
            scratch: Scratch::default(),
            unpacked: Vec::new(),
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.packed.k()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.packed.n()
    }

    /// Inputs per group.
    pub fn group_size(&self) -> usize {
        self.packed.group()
    }

    /// The weight back as a [`QTensor`] (the scheme and codes it was built from).
    ///
    /// # Errors
    ///
    /// None in practice (the parts come from a valid tensor); a [`QTensor::from_parts`]
    /// error otherwise.
    pub fn weight(&self) -> Result<QTensor, QuantError> {
        let (n, k, group) = (self.out_features(), self.in_features(), self.group_size());
        let groups = k / group;
        let mut codes = Vec::with_capacity(n * k);
        let (mut scales, mut zps) = (Vec::with_capacity(n * groups), Vec::new());
        for j in 0..n {
            for g in 0..groups {
                let (_, z, s) = self.packed.get(j, g * group);
                scales.push(s);
                if self.affine {
                    zps.push(i32::from(z));
                }
            }
            for t in 0..k {
                let q = self.packed.get(j, t).0;
                codes.push(if self.affine {
                    q
                } else {
                    q.wrapping_sub(8) & 0x0F
                });
            }
        }
        let mut scheme = IntScheme::new(4).per_group(group);
        if self.affine {
            scheme = scheme.affine();
        }
        let data = crate::pack::pack_bits(&codes, 4);
        QTensor::from_parts(vec![n, k], QuantScheme::Int(scheme), data, scales, zps)
    }

    /// The f32 bias, if the layer has one.
    pub fn bias(&self) -> Option<&[f32]> {
        self.has_bias.then_some(self.bias.as_slice())
    }

    /// Bytes of the stored arrays: the packed 4-bit codes, a byte per zero point (affine), a
    /// f32 scale per group and the f32 bias if any.
    pub fn size_bytes(&self) -> usize {
        let groups = self.out_features() * self.in_features() / self.group_size();
        self.packed.size_bytes() - if self.affine { 0 } else { groups }
            + if self.has_bias {
                4 * self.bias.len()
            } else {
                0
            }
    }

    /// Bytes the layer holds for inference: [`Self::size_bytes`] with the panels' padding,
    /// the per-group weight sums and the bias.
    pub fn memory_bytes(&self) -> usize {
        self.packed.memory_bytes() + 4 * self.bias.len()
    }

    /// `y = x W^T + b` for a row-major `[m, in]` input into a row-major `[m, out]` output.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`](compress_core::CoreError::NonFinite) (path `"W4A8Linear input"`) for NaN or infinite inputs; a
    /// shape error when `x` or `out` do not have `m` rows of the layer's widths.
    pub fn forward_f32(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.shape().check_rows("W4A8Linear", m, x, out)?;
        let k = self.in_features();
        let s = &mut self.scratch;
        s.quantize("W4A8Linear input", x, m, k, k, TokenQuant::Asymmetric)?;
        let a = RowsU8 {
            codes: &s.codes[..m * k],
            lda: k,
            scales: &s.row_scales[..m],
            zps: &s.row_zps[..m],
        };
        w4a8_gemm(a, m, &self.packed, &self.bias, out, &mut self.unpacked);
        Ok(())
    }
}

impl IntLinear for W4A8Linear {
    fn shape(&self) -> LinearShape {
        LinearShape {
            in_width: self.in_features(),
            out_width: self.out_features(),
            bias: self.has_bias,
        }
    }
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.forward_f32(x, m, out)
    }
}

int_linear_layer!(W4A8Linear, "W4A8Linear");

/// Runs every [`Int4Linear`] below `model` (also inside an
/// [`InputScaled`](crate::calibrated::InputScaled)) as a [`W4A8Linear`] with the same
/// weights and bias: the W4A8 mode of an int4 model (activations rounded to int8 per token).
/// Layers whose group size is not a multiple of 8, and layers in slots that cannot be
/// replaced, stay weight-only. Returns the paths switched, in walk order.
///
/// # Errors
///
/// None in practice (the weights come from valid layers).
pub fn int4_to_w4a8(model: &mut dyn Layer<f32>) -> Result<Vec<String>, QuantError> {
    fn convert(l: &dyn Layer<f32>) -> Option<W4A8Linear> {
        W4A8Linear::from_int4(l.as_any().downcast_ref::<Int4Linear>()?).ok()
    }
    let mut done = Vec::new();
    walk_layers_mut(model, &mut |path, slot| {
        if let Some(s) = slot.downcast_mut::<InputScaled>() {
            if let Some(w) = convert(s.inner()) {
                *s.inner_mut() = Box::new(w);
                done.push(path.to_string());
            }
            return Ok(Walk::Skip);
        }
        match convert(slot.layer()) {
            Some(w) if slot.is_replaceable() => {
                slot.replace(Box::new(w))?;
                done.push(path.to_string());
                Ok(Walk::Skip)
            }
            _ => Ok(Walk::Descend),
        }
    })?;
    Ok(done)
}

#[cfg(test)]
#[path = "w4a8_tests.rs"]
mod tests;
