//! [`QConv2d`]: an int8 convolution through the exact int8 GEMM (channels-last im2col of the
//! int8 codes).

use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{Conv2d, Conv2dConfig, ConvGeometry, im2col_nhwc};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::TokenQuant;
use crate::dynamic::rows::Scratch;
use crate::kernels::epilogue::{Dequant, OutLayout};
use crate::kernels::{PackedB, gemm_u8i8_dequant_par};
use crate::qlinear::{as_core, forward_only};
use crate::qtensor::effective_f32;
use crate::{IntScheme, QTensor, QuantError};

/// A 2-D convolution computing in integers: int8 weights per output channel, each input
/// image quantized to int8 with its own dynamic scale, im2col of the int8 codes and the exact
/// int8 GEMM per image and group, then one float rescale. Inference only.
///
/// # Shapes
///
/// - input: `[batch, in_channels, h, w]`; output: `[batch, out_channels, oh, ow]`.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::{Conv2d, Conv2dConfig};
/// use compress_quant::QConv2d;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(3, 4, 3).padding(1), &mut StdRng::seed_from_u64(0))?;
/// let mut q = QConv2d::from_conv(&conv)?;
/// let x = ArrayD::from_shape_fn(vec![2, 3, 6, 6], |ix| ((ix[1] * 36 + ix[2] * 6 + ix[3]) as f32 * 0.3).cos());
/// let (y, yq) = (conv.forward(&x, Mode::Eval)?, q.forward(&x, Mode::Eval)?);
/// let err = (&y - &yq).iter().fold(0.0f32, |m, e| m.max(e.abs()));
/// assert!(err < 0.03, "{err}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QConv2d {
    config: Conv2dConfig,
    /// Weights of each group as `[out / groups, kh * kw * in / groups]` in `(i, j, ch)` order
    /// (the channels-last im2col's column order).
    packed: Vec<PackedB>,
    w_scales: Vec<f32>,
    bias: Option<Vec<f32>>,
    /// The bias, or zeros.
    bias_or_zero: Vec<f32>,
    /// Image codes (NCHW), scales and accumulators reused across calls.
    scratch: Scratch,
    /// The codes of a chunk of images, channels last (`[n, h, w, c]`).
    nhwc: Vec<u8>,
    /// im2col rows of one group of a chunk of images (`u8` codes, row stride `PackedB::lda`).
    cols: Vec<u8>,
    /// Scale and zero point of each im2col row (its image's).
    row_scales: Vec<f32>,
    row_zps: Vec<i32>,
}

impl QConv2d {
    /// Quantizes a [`Conv2d`]'s effective weight to int8 per output channel.
    ///
    /// # Errors
    ///
    /// Non-finite weights, or a kernel so large that `i32` accumulation could overflow.
    pub fn from_conv<F: Float>(conv: &Conv2d<F>) -> Result<Self, QuantError> {
        let cfg = conv.config();
        let shape = cfg.weight_shape();
        let w = effective_f32(&conv.weight);
        let q = QTensor::quantize_slice(&w, &shape, IntScheme::int8_per_channel())?;
        let (cpg, taps) = (shape[1], shape[2] * shape[3]);
        let kk = cpg * taps;
        if kk > 131_071 {
            return Err(CoreError::config(
                "kernel",
                format!("(in/groups) kh kw = {kk} exceeds 131071 (i32 accumulation)"),
            )
            .into());
        }
        // `[out, c, kh, kw]` to `[out, kh, kw, c]`.
        let mut codes = vec![0i8; q.data().len()];
        for (o, src) in q.data().chunks_exact(kk.max(1)).enumerate() {
            for (ch, plane) in src.chunks_exact(taps.max(1)).enumerate() {
                for (t, &v) in plane.iter().enumerate() {
                    codes[o * kk + t * cpg + ch] = v as i8;
                }
            }
        }
        let opg = cfg.out_per_group();
        let packed = (0..cfg.groups)
            .map(|g| PackedB::from_nk(&codes[g * opg * kk..(g + 1) * opg * kk], opg, kk))
            .collect();
        let bias: Option<Vec<f32>> = conv.bias.as_ref().map(effective_f32);
        Ok(Self {
            config: cfg,
            packed,
            w_scales: q.scales().to_vec(),
            bias_or_zero: bias.clone().unwrap_or_else(|| vec![0.0; cfg.out_channels]),
            bias,
            scratch: Scratch::default(),
            nhwc: Vec::new(),
            cols: Vec::new(),
            row_scales: Vec::new(),
            row_zps: Vec::new(),
        })
    }

    /// The convolution's configuration.
    pub fn config(&self) -> Conv2dConfig {
        self.config
    }

    /// Bytes of weight codes, scales and bias.
    pub fn size_bytes(&self) -> usize {
        let s = self.config.weight_shape();
        s.iter().product::<usize>()
            + 4 * self.w_scales.len()
            + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// The convolution of `n` images `xs` (`[n, c, h, w]`) into `y` (`[n, out, oh, ow]`).
    fn run(&mut self, xs: &[f32], n: usize, g: &ConvGeometry, y: &mut [f32]) -> Result<()> {
        let cfg = self.config;
        let (c, hw, p) = (cfg.in_channels, g.h * g.w, g.out_len());
        let chw = c * hw;
        let (cpg, opg, oc) = (cfg.in_per_group(), cfg.out_per_group(), cfg.out_channels);
        // Each image with its own symmetric scale (codes stored + 128, so code 128 is zero).
        let s = &mut self.scratch;
        s.quantize("QConv2d input", xs, n, chw, chw, TokenQuant::Symmetric)
            .map_err(as_core)?;
        let lda = self.packed[0].lda();
        // A pointwise convolution over all channels multiplies the channels-last image itself.
        let direct = cfg.kernel == (1, 1)
            && cfg.stride == (1, 1)
            && cfg.padding == (0, 0)
            && cfg.groups == 1
            && lda == c;
        // Images per GEMM: as many as keep the im2col buffer near COLS_BYTES, so that small
        // images make one large product instead of one tiny call each.
        let chunk = (COLS_BYTES / (p * lda).max(1)).clamp(1, n);
        grow(&mut self.nhwc, chunk * chw);
        if !direct {
            grow(&mut self.cols, chunk * p * lda);
        }
        for b0 in (0..n).step_by(chunk) {
            let nb = chunk.min(n - b0);
            let rows = nb * p;
            // Every output position of an image has the image's scale and zero point.
            self.row_scales.clear();
            self.row_zps.clear();
            for i in b0..b0 + nb {
                self.row_scales
                    .extend(std::iter::repeat_n(s.row_scales[i], p));
                self.row_zps.extend(std::iter::repeat_n(s.row_zps[i], p));
            }
            let codes = &s.codes[b0 * chw..(b0 + nb) * chw];
            for (img, dst) in codes.chunks_exact(chw).zip(self.nhwc.chunks_exact_mut(chw)) {
                to_channels_last(img, c, hw, dst);
            }
            for grp in 0..cfg.groups {
                let a: &[u8] = if direct {
                    &self.nhwc[..rows * lda]
                } else {
                    let imgs = self.nhwc.chunks_exact(chw).take(nb);
                    for (img, dst) in imgs.zip(self.cols.chunks_exact_mut(p * lda)) {
                        im2col_nhwc(img, c, (grp * cpg, cpg), g, 128, lda, dst);
                    }
                    &self.cols[..rows * lda]
                };
                let packed = &self.packed[grp];
                let dq = Dequant {
                    row_scales: &self.row_scales[..rows],
                    row_zps: &self.row_zps[..rows],
                    col_sums: packed.col_sums(),
                    col_scales: &self.w_scales[grp * opg..(grp + 1) * opg],
                    bias: &self.bias_or_zero[grp * opg..(grp + 1) * opg],
                    layout: OutLayout::Nchw {
                        positions: p,
                        channels: oc,
                        first: grp * opg,
                    },
                };
                let y = &mut y[b0 * oc * p..(b0 + nb) * oc * p];
                gemm_u8i8_dequant_par(a, lda, rows, packed, dq, y, &mut s.acc);
            }
        }
        Ok(())
    }
}

/// Bytes of the im2col buffer one batched GEMM covers.
const COLS_BYTES: usize = 4 << 20;

/// Grows a code buffer to `len` bytes with code 128 (zero), so that the bytes of each row
/// beyond `k`, which the kernel reads against zero weights, are initialised.
fn grow(v: &mut Vec<u8>, len: usize) {
    if v.len() < len {
        v.resize(len, 128);
    }
}

/// One image's codes from `[c, hw]` to `[hw, c]` (channels last).
fn to_channels_last(img: &[u8], c: usize, hw: usize, out: &mut [u8]) {
    if c == 1 {
        out[..hw].copy_from_slice(&img[..hw]);
        return;
    }
    for (ch, plane) in img.chunks_exact(hw).enumerate().take(c) {
        for (px, &v) in plane.iter().enumerate() {
            out[px * c + ch] = v;
        }
    }
}

crate::int_linear::no_params!(QConv2d);

impl<F: Float> Layer<F> for QConv2d {
    fn name(&self) -> &'static str {
        "QConv2d"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, _mode: Mode) -> Result<ArrayD<F>> {
        let cfg = self.config;
        if x.ndim() != 4 || x.shape()[1] != cfg.in_channels {
            let n = x.shape().first().copied().unwrap_or(0);
            return Err(CoreError::shape(
                "QConv2d input",
                &[n, cfg.in_channels, 0, 0],
                x.shape(),
            ));
        }
        let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let (oh, ow) = cfg.output_hw(h, w)?;
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let converted: Vec<f32>;
        let xs = match F::as_f32_slice(xs) {
            Some(xf) => xf,
            None => {
                converted = xs.iter().map(|v| v.as_f64() as f32).collect();
                &converted
            }
        };
        let total = n * cfg.out_channels * oh * ow;
        let mut out = vec![F::zero(); total];
        if c * h * w == 0 || n == 0 || oh * ow == 0 {
            return Ok(ArrayD::from_shape_vec(
                IxDyn(&[n, cfg.out_channels, oh, ow]),
                out,
            )?);
        }
        let mut converted_out = Vec::new();
        let y: &mut [f32] = if let Some(yf) = F::as_f32_slice_mut(&mut out) {
            yf
        } else {
            converted_out.resize(total, 0.0f32);
            &mut converted_out
        };
        let g = ConvGeometry::new(&cfg, h, w)?;
        self.run(xs, n, &g, y)?;
        for (d, &v) in out.iter_mut().zip(&converted_out) {
            *d = F::lit(f64::from(v));
        }
        Ok(ArrayD::from_shape_vec(
            IxDyn(&[n, cfg.out_channels, oh, ow]),
            out,
        )?)
    }

    fn backward(&mut self, _grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        Err(forward_only("QConv2d"))
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let cfg = self.config;
        if input_shape.len() != 3 || input_shape[0] != cfg.in_channels {
            return Err(CoreError::shape(
                "QConv2d input",
                &[cfg.in_channels, 0, 0],
                input_shape,
            ));
        }
        let (oh, ow) = cfg.output_hw(input_shape[1], input_shape[2])?;
        let wn: usize = cfg.weight_shape().iter().product();
        let params = wn + self.bias.as_ref().map_or(0, Vec::len);
        Ok(Cost {
            output_shape: vec![cfg.out_channels, oh, ow],
            params,
            nonzero_params: params,
            macs: (oh * ow * wn) as u64,
        })
    }
}
