//! 2-D convolution (NCHW) with stride, padding, dilation and groups.
//!
//! Three paths, chosen from the configuration:
//! - depthwise (`groups == in_channels`): a direct kernel, no im2col, vectorised and
//!   dispatched at run time to the widest vector unit ([`kernels`]);
//! - pointwise (1x1, stride 1, no padding): one GEMM per image and group on the input itself;
//! - everything else: im2col into a reused buffer, then one GEMM per image and group,
//!   `W[out/g, (in/g) kh kw] . cols[(in/g) kh kw, oh ow]`, written straight into the output.

mod config;
mod depthwise;
mod geom;
mod im2col;
mod kernels;

pub use config::{Conv2dConfig, IntoHw};
pub use geom::ConvGeometry;
pub use im2col::{im2col, im2col_nhwc};

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Param, ParamKind, Result, TensorExt};
use ndarray::{ArrayD, ArrayRef, ArrayView2, ArrayViewMut2, IxDyn};
use rand::Rng;
use std::ops::Range;

use self::depthwise::Dw;
use self::im2col::col2im_add;
use super::split_batch;
use crate::gemm::matmul_into;
use crate::init::kaiming_uniform;

/// A 2-D convolution over NCHW batches.
///
/// # Shapes
///
/// - input: `[batch, in_channels, h, w]`
/// - output: `[batch, out_channels, oh, ow]` (see [`Conv2dConfig::output_hw`])
/// - `weight`: `[out_channels, in_channels / groups, kh, kw]`, `bias`: `[out_channels]`
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::{Conv2d, Conv2dConfig};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(3, 8, 3).padding(1), &mut rng).unwrap();
/// let y = conv.forward(&ArrayD::zeros(vec![2, 3, 16, 16]), Mode::Eval).unwrap();
/// assert_eq!(y.shape(), &[2, 8, 16, 16]);
/// assert_eq!(conv.cost(&[3, 16, 16]).unwrap().macs, 16 * 16 * 8 * 3 * 9);
/// ```
#[derive(Debug, Clone, Module)]
pub struct Conv2d<F: Float> {
    /// Kernel `[out, in / groups, kh, kw]`.
    pub weight: Param<F>,
    /// Optional bias `[out]`.
    #[module(bias)]
    pub bias: Option<Param<F>>,
    #[module(skip)]
    config: Conv2dConfig,
    /// The last training-mode input (standard layout) and its shape.
    #[module(skip)]
    input: Option<Vec<F>>,
    #[module(skip)]
    input_shape: Vec<usize>,
    #[module(skip)]
    cols: Vec<F>,
    #[module(skip)]
    dcols: Vec<F>,
}

impl<F: Float> Conv2d<F> {
    /// A convolution with PyTorch's default initialisation (uniform in `±1/sqrt(fan_in)`,
    /// `fan_in = in / groups * kh * kw`, for weight and bias).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`Conv2dConfig::validate`].
    pub fn new<R: Rng + ?Sized>(config: Conv2dConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let shape = config.weight_shape();
        let fan_in = shape[1] * shape[2] * shape[3];
        let w = kaiming_uniform(&shape, fan_in, rng);
        let b = config
            .bias
            .then(|| kaiming_uniform(&[config.out_channels], fan_in, rng));
        Self::from_arrays(config, w, b)
    }

    /// A convolution holding the given weight and bias.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for an invalid configuration (including `bias` not
    /// matching whether a bias is given) and [`CoreError::ShapeMismatch`] when the weight
    /// is not [`Conv2dConfig::weight_shape`] or the bias not `[out_channels]`.
    pub fn from_arrays(
        config: Conv2dConfig,
        weight: ArrayD<F>,
        bias: Option<ArrayD<F>>,
    ) -> Result<Self> {
        config.validate()?;
        if weight.shape() != config.weight_shape() {
            return Err(CoreError::shape(
                "Conv2d weight",
                &config.weight_shape(),
                weight.shape(),
            ));
        }
        if config.bias != bias.is_some() {
            return Err(CoreError::config(
                "bias",
                format!(
                    "config.bias is {} but a bias was {}given",
                    config.bias,
                    if bias.is_some() { "" } else { "not " }
                ),
            ));
        }
        if let Some(b) = &bias
            && b.shape() != [config.out_channels]
        {
            return Err(CoreError::shape(
                "Conv2d bias",
                &[config.out_channels],
                b.shape(),
            ));
        }
        Ok(Self {
            weight: Param::new(weight),
            bias: bias.map(|b| Param::with_kind(b, ParamKind::Bias)),
            config,
            input: None,
            input_shape: Vec::new(),
            cols: Vec::new(),
            dcols: Vec::new(),
        })
    }

    /// The configuration, with the channel counts read from the current weight shape (so
    /// it stays right after structured shrinking replaced the weight).
    ///
    /// A layer built depthwise (`groups == in_channels > 1`, channel multiplier
    /// `m = out / in`) stays depthwise: when its weight is replaced by one of shape
    /// `[k * m, 1, kh, kw]`, the configuration reads `k` input channels in `k` groups.
    /// Other grouped layers keep their group count; to change it, rebuild the layer with
    /// [`Conv2dConfig::with_channels`] and [`Conv2d::from_arrays`].
    pub fn config(&self) -> Conv2dConfig {
        let mut c = self.config;
        let s = self.weight.shape();
        if s.len() == 4 && s != c.weight_shape() {
            let mult = c.out_per_group();
            let depthwise = c.is_depthwise() && c.groups > 1;
            if depthwise && s[1] == 1 && mult > 0 && s[0].is_multiple_of(mult) && s[0] > 0 {
                c.groups = s[0] / mult;
            }
            c.out_channels = s[0];
            c.in_channels = s[1] * c.groups;
        }
        c.bias = self.bias.is_some();
        c
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.config().in_channels
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.config().out_channels
    }

    /// Checks the configuration against the weight and bias and the input shape
    /// `[C, H, W]`; returns the configuration and the output `(oh, ow)`.
    fn plan(&self, chw: &[usize]) -> Result<(Conv2dConfig, usize, usize)> {
        let cfg = self.config();
        cfg.validate()?;
        if self.weight.shape() != cfg.weight_shape() {
            return Err(CoreError::shape(
                "Conv2d weight",
                &cfg.weight_shape(),
                self.weight.shape(),
            ));
        }
        if let Some(b) = &self.bias
            && b.shape() != [cfg.out_channels]
        {
            return Err(CoreError::shape(
                "Conv2d bias",
                &[cfg.out_channels],
                b.shape(),
            ));
        }
        if chw.len() != 3 || chw[0] != cfg.in_channels {
            let (h, w) = match chw {
                [.., h, w] => (*h, *w),
                _ => (0, 0),
            };
            return Err(CoreError::shape(
                "Conv2d input (per sample)",
                &[cfg.in_channels, h, w],
                chw,
            ));
        }
        let (oh, ow) = cfg.output_hw(chw[1], chw[2])?;
        Ok((cfg, oh, ow))
    }

    /// [`Conv2d::plan`] for an NCHW batch `shape`: the batch size, the configuration and
    /// the geometry of one image.
    fn plan_batch(&self, shape: &[usize]) -> Result<(usize, Conv2dConfig, ConvGeometry)> {
        let (n, chw) = split_batch(shape);
        let (cfg, oh, ow) = self.plan(chw)?;
        Ok((
            n,
            cfg,
            ConvGeometry::with_output(&cfg, chw[1], chw[2], oh, ow),
        ))
    }
}

impl<F: Float> Layer<F> for Conv2d<F> {
    fn name(&self) -> &'static str {
        "Conv2d"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let (n, cfg, g) = self.plan_batch(x.shape())?;
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let weight = self.weight.effective();
        let weight = weight.as_standard_layout();
        let ws = weight.as_slice().expect("standard layout is contiguous");
        let bias = self.bias.as_ref().map(|b| b.effective().into_owned());
        let bs = bias.as_ref().map(|b| b.as_slice().expect("1-D owned"));
        let oc = cfg.out_channels;
        let mut out = Vec::with_capacity(n * oc * g.out_len());
        if cfg.is_depthwise() {
            kernels::depthwise_forward(Dw::new(n, &cfg, xs, ws, &g), bs, &mut out);
        } else {
            let z = GemmPlan::new(&cfg, &g);
            gemm_forward(&z, n, (xs, ws, bs), &mut self.cols, &mut out)?;
        }
        self.input = (mode == Mode::Train).then(|| xs.to_vec());
        if mode == Mode::Train {
            self.input_shape = x.shape().to_vec();
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&[n, oc, g.oh, g.ow]), out)?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let xs = self
            .input
            .as_deref()
            .ok_or_else(|| CoreError::no_forward("Conv2d"))?;
        let (n, cfg, g) = self.plan_batch(&self.input_shape)?;
        let oc = cfg.out_channels;
        if grad.shape() != [n, oc, g.oh, g.ow] {
            return Err(CoreError::shape(
                "Conv2d grad",
                &[n, oc, g.oh, g.ow],
                grad.shape(),
            ));
        }
        let gs = grad.as_standard_layout();
        let gs = gs.as_slice().expect("standard layout is contiguous");
        let weight = self.weight.effective();
        let weight = weight.as_standard_layout();
        let ws = weight.as_slice().expect("standard layout is contiguous");
        let mut dx = vec![F::zero(); xs.len()];
        let mut dw = vec![F::zero(); ws.len()];
        if cfg.is_depthwise() {
            kernels::depthwise_backward(Dw::new(n, &cfg, xs, ws, &g), gs, &mut dx, &mut dw);
        } else {
            let bufs = (&mut self.cols, &mut self.dcols);
            let z = GemmPlan::new(&cfg, &g);
            gemm_backward(&z, n, (xs, ws, gs), bufs, &mut dx, &mut dw)?;
        }
        drop(weight);
        let dw = ArrayD::from_shape_vec(IxDyn(&cfg.weight_shape()), dw)?;
        self.weight.accumulate_grad(dw)?;
        if let Some(b) = &mut self.bias {
            let l = g.out_len();
            let mut db = vec![F::zero(); oc];
            for (k, chunk) in gs.chunks_exact(l.max(1)).enumerate() {
                db[k % oc] += lane_sum(chunk);
            }
            b.accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[oc]), db)?)?;
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&self.input_shape), dx)?)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let (cfg, oh, ow) = self.plan(input_shape)?;
        let w = self.weight.effective();
        let (bias_n, bias_nz) = self
            .bias
            .as_ref()
            .map_or((0, 0), |b| (b.len(), b.effective().count_nonzero()));
        let (kh, kw) = cfg.kernel;
        let macs = (oh * ow * cfg.out_channels * cfg.in_per_group() * kh * kw) as u64;
        Ok(Cost {
            output_shape: vec![cfg.out_channels, oh, ow],
            params: self.weight.len() + bias_n,
            nonzero_params: w.count_nonzero() + bias_nz,
            macs,
        })
    }
}

/// The sum of `xs` in eight interleaved lanes (vectorisable, unlike a sequential fold),
/// then the lanes and the tail in order.
fn lane_sum<F: Float>(xs: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in lanes.iter_mut().zip(c) {
            *a += v;
        }
    }
    let head = lanes.iter().fold(F::zero(), |a, &v| a + v);
    chunks.remainder().iter().fold(head, |a, &v| a + v)
}

/// The sizes and operands of the GEMM paths, per image and group: the group's input
/// planes, its weight matrix `[out / groups, ckk]` and the matrix the weight multiplies
/// (the input itself when pointwise, else its im2col columns `[ckk, oh * ow]`, with
/// `ckk = in / groups * kh * kw`).
struct GemmPlan {
    g: ConvGeometry,
    c: usize,
    oc: usize,
    groups: usize,
    cg: usize,
    og: usize,
    l: usize,
    ckk: usize,
    pointwise: bool,
}

impl GemmPlan {
    fn new(cfg: &Conv2dConfig, g: &ConvGeometry) -> Self {
        let cg = cfg.in_per_group();
        Self {
            g: *g,
            c: cfg.in_channels,
            oc: cfg.out_channels,
            groups: cfg.groups,
            cg,
            og: cfg.out_per_group(),
            l: g.out_len(),
            ckk: cg * g.kh * g.kw,
            pointwise: cfg.is_pointwise(),
        }
    }

    /// The length of the im2col buffer (none when pointwise).
    fn cols_len(&self) -> usize {
        if self.pointwise { 0 } else { self.ckk * self.l }
    }

    /// The range of image `b`'s group `grp` in the input (and input gradient).
    fn input(&self, b: usize, grp: usize) -> Range<usize> {
        let plane = self.g.h * self.g.w;
        let start = (b * self.c + grp * self.cg) * plane;
        start..start + self.cg * plane
    }

    /// Group `grp`'s weight matrix `[out / groups, ckk]`.
    fn weight<'a, F: Float>(&self, ws: &'a [F], grp: usize) -> Result<ArrayView2<'a, F>> {
        let len = self.og * self.ckk;
        Ok(ArrayView2::from_shape(
            (self.og, self.ckk),
            &ws[grp * len..][..len],
        )?)
    }

    /// The matrix group `grp`'s weight multiplies for the input planes `x`: `x` itself
    /// (`[in / groups, oh * ow]`) when pointwise, else its im2col columns, written to
    /// `cols`.
    fn columns<'a, F: Float>(&self, x: &'a [F], cols: &'a mut [F]) -> Result<ArrayView2<'a, F>> {
        if self.pointwise {
            return Ok(ArrayView2::from_shape((self.cg, self.l), x)?);
        }
        im2col(x, self.cg, &self.g, F::zero(), cols);
        Ok(ArrayView2::from_shape((self.ckk, self.l), &*cols)?)
    }
}

/// Grows `buf` to at least `len` elements (reused across calls; contents are overwritten).
fn scratch<F: Float>(buf: &mut Vec<F>, len: usize) -> &mut [F] {
    if buf.len() < len {
        buf.resize(len, F::zero());
    }
    &mut buf[..len]
}

/// The GEMM path of the forward pass (pointwise or im2col).
fn gemm_forward<F: Float>(
    z: &GemmPlan,
    n: usize,
    (xs, ws, bs): (&[F], &[F], Option<&[F]>),
    cols_buf: &mut Vec<F>,
    out: &mut Vec<F>,
) -> Result<()> {
    let cols = scratch(cols_buf, z.cols_len());
    let (l, og) = (z.l, z.og);
    for b in 0..n {
        // Each image's output is initialised (to the bias) right before its GEMMs.
        let start = out.len();
        match bs {
            Some(bs) => bs
                .iter()
                .for_each(|&bv| out.extend(std::iter::repeat_n(bv, l))),
            None => out.resize(start + z.oc * l, F::zero()),
        }
        let out_img = &mut out[start..];
        let beta = if bs.is_some() { F::one() } else { F::zero() };
        for grp in 0..z.groups {
            let wg = z.weight(ws, grp)?;
            let xv = z.columns(&xs[z.input(b, grp)], &mut *cols)?;
            let mut yg =
                ArrayViewMut2::from_shape((og, l), &mut out_img[grp * og * l..][..og * l])?;
            matmul_into(F::one(), &wg, &xv, beta, &mut yg);
        }
    }
    Ok(())
}

/// The GEMM path of the backward pass: adds `dx` and `dw`.
fn gemm_backward<F: Float>(
    z: &GemmPlan,
    n: usize,
    (xs, ws, gs): (&[F], &[F], &[F]),
    (cols_buf, dcols_buf): (&mut Vec<F>, &mut Vec<F>),
    dx: &mut [F],
    dw: &mut [F],
) -> Result<()> {
    let (cols, dcols) = (
        scratch(cols_buf, z.cols_len()),
        scratch(dcols_buf, z.cols_len()),
    );
    let (l, og, ckk) = (z.l, z.og, z.ckk);
    for b in 0..n {
        for grp in 0..z.groups {
            let wg = z.weight(ws, grp)?;
            let gg = ArrayView2::from_shape((og, l), &gs[(b * z.oc + grp * og) * l..][..og * l])?;
            let mut dwg =
                ArrayViewMut2::from_shape((og, ckk), &mut dw[grp * og * ckk..][..og * ckk])?;
            let xv = z.columns(&xs[z.input(b, grp)], &mut *cols)?;
            matmul_into(F::one(), &gg, &xv.t(), F::one(), &mut dwg);
            let dx_grp = &mut dx[z.input(b, grp)];
            if z.pointwise {
                let mut dxv = ArrayViewMut2::from_shape((z.cg, l), dx_grp)?;
                matmul_into(F::one(), &wg.t(), &gg, F::one(), &mut dxv);
            } else {
                let mut dcv = ArrayViewMut2::from_shape((ckk, l), &mut *dcols)?;
                matmul_into(F::one(), &wg.t(), &gg, F::zero(), &mut dcv);
                col2im_add(dcols, z.cg, &z.g, dx_grp);
            }
        }
    }
    Ok(())
}
