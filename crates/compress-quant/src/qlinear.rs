//! Integer inference: [`QLinear`] (int8 weights and activations, exact int8 GEMM) and
//! [`Int4Linear`] (weight-only group-wise int4, dequantized tile by tile inside the kernel).

use crate::int_linear::{IntLinear, LinearShape, check_bias_len, int_linear_layer, wrong_weight};
use compress_core::{CoreError, Float, Result};
use compress_nn::Linear;

use crate::TokenQuant;
use crate::dynamic::rows::Scratch;
use crate::error::check_finite;
use crate::kernels::{self, PackedB};
use crate::qtensor::effective_f32;
use crate::{Granularity, IntScheme, QTensor, QuantError, QuantScheme};

/// How [`QLinear`] quantizes its input activations (symmetric int8, codes in `-127..=127`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ActQuant {
    /// One scale per input row (sample), computed at inference: `absmax(row) / 127`.
    #[default]
    DynamicPerRow,
    /// One scale for the whole batch, computed at inference.
    DynamicPerTensor,
    /// A fixed scale from calibration (values beyond `127 * scale` are clipped).
    Static {
        /// The activation scale.
        scale: f32,
    },
}

pub(crate) fn as_core(e: QuantError) -> CoreError {
    match e {
        QuantError::Core(c) => c,
        other => CoreError::technique("quantized layer", other),
    }
}

pub(crate) fn forward_only(layer: &str) -> CoreError {
    CoreError::InvalidState {
        layer: layer.to_string(),
        reason: "integer layers are inference-only: backward is not supported (train with \
                 fake quantization, then convert)"
            .to_string(),
    }
}

/// Quantizes a row-major `[m, k]` activation matrix into `scratch` as symmetric int8 codes
/// (stored `+ 128` for the `u8 x i8` kernel), one scale per row.
fn quantize_activations(
    x: &[f32],
    m: usize,
    k: usize,
    lda: usize,
    act: ActQuant,
    scratch: &mut Scratch,
) -> std::result::Result<(), QuantError> {
    let scale = match act {
        ActQuant::DynamicPerRow => {
            return scratch.quantize("x", x, m, k, lda, TokenQuant::Symmetric);
        }
        ActQuant::DynamicPerTensor => {
            check_finite(x, "x")?;
            let (lo, hi, _) = kernels::quantize::min_max(x);
            let amax = lo.abs().max(hi.abs());
            if amax > 0.0 && (127.0 / amax).is_finite() {
                amax / 127.0
            } else {
                1.0
            }
        }
        ActQuant::Static { scale } => {
            check_finite(x, "x")?;
            if !(scale > 0.0 && scale.is_finite() && (1.0 / scale).is_finite()) {
                return Err(CoreError::config("scale", format!("bad static scale {scale}")).into());
            }
            scale
        }
    };
    scratch.quantize_shared(x, m, k, lda, scale);
    Ok(())
}

/// A fully connected layer computing in integers: int8 per-output-channel symmetric
/// weights (packed once for the GEMM kernel), int8 activations quantized on the fly,
/// exact `i32` accumulation, and one float rescale (`acc * s_x[row] * s_w[col] + bias`) at the
/// end. Inference only: `backward` returns [`CoreError::InvalidState`].
///
/// # Shapes
///
/// - input: `[batch, in_features]`; output: `[batch, out_features]`.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::Linear;
/// use compress_quant::{ActQuant, QLinear};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut lin = Linear::<f32>::new(64, 16, true, &mut StdRng::seed_from_u64(1));
/// let mut q = QLinear::from_linear(&lin, ActQuant::DynamicPerRow)?;
/// let x = ArrayD::from_shape_fn(vec![3, 64], |ix| ((ix[0] * 64 + ix[1]) as f32 * 0.1).sin());
/// let (y, yq) = (lin.forward(&x, Mode::Eval)?, q.forward(&x, Mode::Eval)?);
/// let err = (&y - &yq).iter().fold(0.0f32, |m, e| m.max(e.abs()));
/// assert!(err < 0.02, "{err}");
/// assert!(q.backward(&yq).is_err()); // inference only
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QLinear {
    in_features: usize,
    out_features: usize,
    packed: PackedB,
    w_scales: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// The bias, or zeros.
    bias_or_zero: Vec<f32>,
    act: ActQuant,
    scratch: Scratch,
}

impl QLinear {
    /// Quantizes a [`Linear`]'s effective weight to int8 per output channel.
    ///
    /// # Errors
    ///
    /// Non-finite or empty weights.
    pub fn from_linear<F: Float>(linear: &Linear<F>, act: ActQuant) -> Result<Self, QuantError> {
        let w = effective_f32(&linear.weight);
        let (n, k) = (linear.out_features(), linear.in_features());
        let q = QTensor::quantize_slice(&w, &[n, k], IntScheme::int8_per_channel())?;
        let bias = linear.bias.as_ref().map(effective_f32);
        Self::from_qtensor(&q, bias, act)
    }

    /// Builds from an int8 symmetric `[out, in]` tensor quantized per tensor or per output
    /// channel (axis 0), and an optional f32 bias.
    ///
    /// # Errors
    ///
    /// An invalid-config error for any other scheme or shape, or a bias of the wrong length.
    pub fn from_qtensor(
        weight: &QTensor,
        bias: Option<Vec<f32>>,
        act: ActQuant,
    ) -> Result<Self, QuantError> {
        let ok = matches!(weight.scheme(), QuantScheme::Int(s) if s.bits == 8 && !s.affine
            && matches!(s.granularity, Granularity::PerTensor | Granularity::PerChannel { axis: 0 }));
        if !ok || weight.shape().len() != 2 {
            return Err(wrong_weight(
                "QLinear",
                "2-D int8 symmetric per-tensor or per-channel(0)",
                weight,
            ));
        }
        let (n, k) = (weight.shape()[0], weight.shape()[1]);
        if k > 131_071 {
            return Err(CoreError::config(
                "in_features",
                format!("{k} exceeds 131071, where i32 accumulation could overflow"),
            )
            .into());
        }
        check_bias_len(bias.as_ref(), n)?;
        let codes: Vec<i8> = weight.data().iter().map(|&c| c as i8).collect();
        let w_scales = if weight.scales().len() == 1 {
            vec![weight.scales()[0]; n]
        } else {
            weight.scales().to_vec()
        };
        Ok(Self {
            in_features: k,
            out_features: n,
            packed: PackedB::from_nk(&codes, n, k),
            w_scales,
            bias_or_zero: bias.clone().unwrap_or_else(|| vec![0.0; n]),
            bias,
            act,
            scratch: Scratch::default(),
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The per-output-channel weight scales.
    pub fn weight_scales(&self) -> &[f32] {
        &self.w_scales
    }

    /// Bytes of weight codes, scales and bias (the kernel layout's padding is not counted).
    pub fn size_bytes(&self) -> usize {
        self.in_features * self.out_features
            + 4 * self.w_scales.len()
            + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// `y = x W^T + b` for a row-major `[m, in]` input into a row-major `[m, out]` output.
    /// Reuses the layer's buffers: only the caller's output is written.
    ///
    /// # Errors
    ///
    /// Non-finite inputs.
    ///
    /// # Panics
    ///
    /// If `x.len() != m * in_features` or `out.len() != m * out_features`.
    #[track_caller]
    pub fn forward_f32(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let (k, n) = (self.in_features, self.out_features);
        assert_eq!(x.len(), m * k, "QLinear input length");
        assert_eq!(out.len(), m * n, "QLinear output length");
        let (k, lda) = (self.in_features, self.packed.lda());
        quantize_activations(x, m, k, lda, self.act, &mut self.scratch)?;
        let (b, ws, bias) = (&self.packed, &self.w_scales, &self.bias_or_zero);
        self.scratch.product(m, b, ws, bias, Some(out));
        Ok(())
    }
}

impl IntLinear for QLinear {
    fn shape(&self) -> LinearShape {
        LinearShape {
            in_width: self.in_features,
            out_width: self.out_features,
            bias: self.bias.is_some(),
        }
    }
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        self.forward_f32(x, m, out)
    }
}

int_linear_layer!(QLinear, "QLinear");

/// Weight-only int4 linear layer: group-wise 4-bit weights (symmetric or affine, groups along
/// the input dimension) and f32 activations; the f32 weight matrix is never materialised. Up
/// to 4 input rows, each output is one fused dequantize-and-dot over its packed weight row
/// ([`kernels::int4_row_dot`]); on more rows the kernel dequantizes one small tile of weights
/// at a time into a cache-resident buffer and multiplies it with a float GEMM. Inference only.
///
/// # Shapes
///
/// - input: `[batch, in_features]`; output: `[batch, out_features]`.
#[derive(Debug, Clone)]
pub struct Int4Linear {
    weight: QTensor,
    bias: Option<Vec<f32>>,
    group: usize,
}

/// Output features per dequantized tile.
const TILE_N: usize = 128;
/// Up to this many input rows, [`Int4Linear`] runs dequantize-and-dot (GEMV) instead of
/// tiles through a GEMM.
const GEMV_ROWS: usize = 4;
/// Input features per dequantized tile (rounded to a multiple of the group size).
const TILE_K: usize = 256;

impl Int4Linear {
    /// Quantizes a [`Linear`]'s effective weight to 4 bits with groups of `group_size` along
    /// the input dimension (`affine` adds zero points).
    ///
    /// # Errors
    ///
    /// [`QuantError::GroupSize`] if the group does not divide the input features (or is odd),
    /// non-finite weights.
    pub fn from_linear<F: Float>(
        linear: &Linear<F>,
        group_size: usize,
        affine: bool,
    ) -> Result<Self, QuantError> {
        let w = effective_f32(&linear.weight);
        let mut s = IntScheme::new(4).per_group(group_size);
        if affine {
            s = s.affine();
        }
        let q = QTensor::quantize_slice(&w, &[linear.out_features(), linear.in_features()], s)?;
        let bias = linear.bias.as_ref().map(effective_f32);
        Self::from_qtensor(q, bias)
    }

    /// Builds from a 2-D 4-bit per-group tensor with an even group size.
    ///
    /// # Errors
    ///
    /// An invalid-config error for another scheme or shape; [`QuantError::GroupSize`] for
    /// an odd group size; a bias of the wrong length.
    pub fn from_qtensor(weight: QTensor, bias: Option<Vec<f32>>) -> Result<Self, QuantError> {
        let group = match weight.scheme() {
            QuantScheme::Int(IntScheme {
                bits: 4,
                granularity: Granularity::PerGroup { group_size },
                ..
            }) if weight.shape().len() == 2 => group_size,
            _ => return Err(wrong_weight("Int4Linear", "2-D 4-bit per-group", &weight)),
        };
        if group % 2 != 0 {
            return Err(QuantError::GroupSize {
                path: "Int4Linear weight".into(),
                group_size: group,
                dim: 1,
                len: weight.shape()[1],
            });
        }
        check_bias_len(bias.as_ref(), weight.shape()[0])?;
        Ok(Self {
            weight,
            bias,
            group,
        })
    }

    /// `y = x W^T + b` for a row-major `[m, in]` input into a row-major `[m, out]` output.
    ///
    /// # Panics
    ///
    /// If `x.len() != m * in` or `out.len() != m * out`.
    #[track_caller]
    pub fn forward_f32(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.weight.shape()[0], self.weight.shape()[1]);
        assert_eq!(x.len(), m * k, "Int4Linear input length");
        assert_eq!(out.len(), m * n, "Int4Linear output length");
        if m <= GEMV_ROWS {
            self.forward_few_rows(x, m, out);
            return;
        }
        let tile_k = TILE_K.div_ceil(self.group) * self.group;
        let mut scratch = vec![0.0f32; TILE_N * tile_k];
        let xv = ndarray::ArrayView2::from_shape((m, k), x).expect("length checked above");
        let mut yv = ndarray::ArrayViewMut2::from_shape((m, n), out).expect("length checked above");
        yv.fill(0.0);
        let groups_per_row = k / self.group;
        let zps = self.weight.zero_points();
        for j0 in (0..n).step_by(TILE_N) {
            let nc = TILE_N.min(n - j0);
            for k0 in (0..k).step_by(tile_k) {
                let kc = tile_k.min(k - k0);
                for jj in 0..nc {
                    let row = j0 + jj;
                    let start = row * k + k0;
                    let bytes = &self.weight.data()[start / 2..(start + kc) / 2];
                    let dst = &mut scratch[jj * kc..(jj + 1) * kc];
                    for g in 0..kc / self.group {
                        let p = row * groups_per_row + (k0 / self.group) + g;
                        let z = zps.get(p).copied();
                        let gb = &bytes[g * self.group / 2..(g + 1) * self.group / 2];
                        let gd = &mut dst[g * self.group..(g + 1) * self.group];
                        kernels::dequantize_nibbles(gb, self.weight.scales()[p], z, gd);
                    }
                }
                let w = ndarray::ArrayView2::from_shape((nc, kc), &scratch[..nc * kc])
                    .expect("tile fits the scratch buffer");
                let xs = xv.slice(ndarray::s![.., k0..k0 + kc]);
                let mut ys = yv.slice_mut(ndarray::s![.., j0..j0 + nc]);
                ndarray::linalg::general_mat_mul(1.0, &xs, &w.t(), 1.0, &mut ys);
            }
        }
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(n) {
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
    }
}

impl Int4Linear {
    /// [`Int4Linear::forward_f32`] for at most [`GEMV_ROWS`] rows: one fused
    /// dequantize-and-dot per output ([`kernels::int4_row_dot`]), so the packed 4-bit
    /// weights are streamed once and never expanded to `f32`, and nothing is packed for a
    /// GEMM.
    fn forward_few_rows(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.weight.shape()[0], self.weight.shape()[1]);
        let groups_per_row = k / self.group;
        let zps = self.weight.zero_points();
        let (data, scales) = (self.weight.data(), self.weight.scales());
        // Each input row split into its even and odd elements.
        let split: Vec<(Vec<f32>, Vec<f32>)> = x
            .chunks_exact(k)
            .map(|r| {
                (
                    r.iter().step_by(2).copied().collect(),
                    r.iter().skip(1).step_by(2).copied().collect(),
                )
            })
            .collect();
        for j in 0..n {
            let groups = j * groups_per_row..(j + 1) * groups_per_row;
            let bytes = &data[j * k / 2..(j + 1) * k / 2];
            let (s, z) = (&scales[groups.clone()], zps.get(groups).unwrap_or_default());
            let b = self.bias.as_ref().map_or(0.0, |b| b[j]);
            for (i, (xe, xo)) in split.iter().enumerate().take(m) {
                out[i * n + j] = kernels::int4_row_dot(bytes, self.group, s, z, xe, xo) + b;
            }
        }
    }
}

impl IntLinear for Int4Linear {
    fn shape(&self) -> LinearShape {
        LinearShape::of(&self.weight, self.bias.as_ref())
    }
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        check_finite(x, "Int4Linear input")?;
        self.forward_f32(x, m, out);
        Ok(())
    }
}

int_linear_layer!(Int4Linear, "Int4Linear", qtensor);
