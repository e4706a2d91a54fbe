//! A 2-D convolution that runs on its first `ceil(w * C)` input and output channels
//! (im2col + GEMM on the active slice of the kernel).

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor,
    ParamVisitorMut, TensorExt,
};
use ndarray::{Array2, ArrayD, ArrayRef, Axis, Ix1, Ix4, IxDyn, s};
use rand::Rng;

use super::linear::to_core;
use super::width::{Slimmable, active_channels, check_width};
use crate::Result;

/// Convolution geometry (square stride and padding, no dilation, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
}

impl Geometry {
    fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (hp, wp) = (h + 2 * self.padding, w + 2 * self.padding);
        if hp < self.kh || wp < self.kw || self.stride == 0 {
            return None;
        }
        Some((
            (hp - self.kh) / self.stride + 1,
            (wp - self.kw) / self.stride + 1,
        ))
    }
}

/// Unfolds `[n, c, h, w]` (row-major slice) into `[n * oh * ow, c * kh * kw]` patches.
fn im2col<F: Float>(x: &[F], dims: [usize; 4], g: Geometry, oh: usize, ow: usize) -> Vec<F> {
    let [n, c, h, w] = dims;
    let k = c * g.kh * g.kw;
    let mut out = vec![F::zero(); n * oh * ow * k];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = ((b * oh + oy) * ow + ox) * k;
                for ci in 0..c {
                    for ky in 0..g.kh {
                        let Some(iy) = (oy * g.stride + ky)
                            .checked_sub(g.padding)
                            .filter(|&v| v < h)
                        else {
                            continue;
                        };
                        let src = ((b * c + ci) * h + iy) * w;
                        let dst = row + (ci * g.kh + ky) * g.kw;
                        for kx in 0..g.kw {
                            if let Some(ix) = (ox * g.stride + kx)
                                .checked_sub(g.padding)
                                .filter(|&v| v < w)
                            {
                                out[dst + kx] = x[src + ix];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Folds patch gradients back onto `[n, c, h, w]` (the adjoint of [`im2col`]).
fn col2im<F: Float>(cols: &[F], dims: [usize; 4], g: Geometry, oh: usize, ow: usize) -> Vec<F> {
    let [n, c, h, w] = dims;
    let k = c * g.kh * g.kw;
    let mut out = vec![F::zero(); n * c * h * w];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = ((b * oh + oy) * ow + ox) * k;
                for ci in 0..c {
                    for ky in 0..g.kh {
                        let Some(iy) = (oy * g.stride + ky)
                            .checked_sub(g.padding)
                            .filter(|&v| v < h)
                        else {
                            continue;
                        };
                        let dst = ((b * c + ci) * h + iy) * w;
                        let src = row + (ci * g.kh + ky) * g.kw;
                        for kx in 0..g.kw {
                            if let Some(ix) = (ox * g.stride + kx)
                                .checked_sub(g.padding)
                                .filter(|&v| v < w)
                            {
                                out[dst + ix] += cols[src + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct ConvCache<F: Float> {
    cols: Array2<F>,
    dims: [usize; 4],
    out: (usize, usize),
}

/// `Conv2d` (NCHW, one group) on the first `ceil(w * out)` filters and the first
/// `ceil(w * in)` input channels (when slimmable). Parameter paths: `weight`
/// `[out, in, kh, kw]`, `bias` `[out]`.
///
/// # Shapes
///
/// - input: `[batch, active_in, h, w]`
/// - output: `[batch, active_out, oh, ow]` with `oh = (h + 2p - kh) / stride + 1`
///
/// ```
/// use compress_core::Layer;
/// use compress_dynamic::{Slimmable, SlimmableConv2d};
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut conv = SlimmableConv2d::<f32>::new(8, 16, 3, 1, 1, true, true, &mut rng);
/// conv.set_width(0.5)?;
/// assert_eq!(conv.cost(&[4, 8, 8])?.macs, 8 * 4 * 9 * 64);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SlimmableConv2d<F: Float> {
    /// Kernel `[out, in, kh, kw]` at full width.
    pub weight: Param<F>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<F>>,
    geometry: Geometry,
    slim_in: bool,
    slim_out: bool,
    width: f64,
    cache: Option<ConvCache<F>>,
}

impl<F: Float> SlimmableConv2d<F> {
    /// A `kernel x kernel` convolution with bias, Kaiming-uniform initialised like PyTorch.
    /// `slim_in = false` for the first layer (fixed image channels).
    #[allow(clippy::too_many_arguments)]
    pub fn new<R: Rng + ?Sized>(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        slim_in: bool,
        slim_out: bool,
        rng: &mut R,
    ) -> Self {
        let fan_in = in_channels * kernel * kernel;
        let w = compress_nn::init::kaiming_uniform(
            &[out_channels, in_channels, kernel, kernel],
            fan_in,
            rng,
        );
        let b = compress_nn::init::kaiming_uniform(&[out_channels], fan_in, rng);
        Self {
            weight: Param::new(w),
            bias: Some(Param::with_kind(b, ParamKind::Bias)),
            geometry: Geometry {
                kh: kernel,
                kw: kernel,
                stride: stride.max(1),
                padding,
            },
            slim_in,
            slim_out,
            width: 1.0,
            cache: None,
        }
    }

    /// Input channels at the current width.
    pub fn active_in(&self) -> usize {
        let c = self.weight.shape()[1];
        if self.slim_in {
            active_channels(self.width, c)
        } else {
            c
        }
    }

    /// Output channels at the current width.
    pub fn active_out(&self) -> usize {
        let c = self.weight.shape()[0];
        if self.slim_out {
            active_channels(self.width, c)
        } else {
            c
        }
    }

    /// The active kernel as a `[o, i * kh * kw]` matrix.
    fn active_kernel(&self) -> compress_core::Result<Array2<F>> {
        let (i, o) = (self.active_in(), self.active_out());
        let g = self.geometry;
        let w = self.weight.effective();
        let w4 = w.view().into_dimensionality::<Ix4>()?;
        Ok(w4
            .slice(s![..o, ..i, .., ..])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((o, i * g.kh * g.kw))?)
    }

    fn out_shape(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let i = self.active_in();
        let bad = || CoreError::shape("SlimmableConv2d input", &[i, 0, 0], shape);
        if shape.len() != 3 || shape[0] != i {
            return Err(bad().into());
        }
        self.geometry
            .out_size(shape[1], shape[2])
            .ok_or_else(|| bad().into())
    }
}

impl<F: Float> Slimmable for SlimmableConv2d<F> {
    fn set_width(&mut self, w: f64) -> Result<()> {
        check_width(w)?;
        self.width = w.min(1.0);
        self.cache = None;
        Ok(())
    }

    fn width(&self) -> f64 {
        self.width
    }
}

impl<F: Float> Module<F> for SlimmableConv2d<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
        if let Some(b) = &self.bias {
            path.scoped("bias", |p| v.visit(p, b));
        }
    }

    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
        if let Some(b) = &mut self.bias {
            path.scoped("bias", |p| v.visit_mut(p, b))?;
        }
        Ok(())
    }
}

impl<F: Float> Layer<F> for SlimmableConv2d<F> {
    fn name(&self) -> &'static str {
        "SlimmableConv2d"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        if x.ndim() != 4 {
            return Err(CoreError::shape(
                "SlimmableConv2d input",
                &[0, self.active_in(), 0, 0],
                x.shape(),
            ));
        }
        let (oh, ow) = self.out_shape(&x.shape()[1..]).map_err(to_core)?;
        let dims = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
        let xs = x.as_standard_layout();
        let flat = xs
            .as_slice()
            .ok_or_else(|| CoreError::config("input", "not contiguous"))?;
        let g = self.geometry;
        let k = dims[1] * g.kh * g.kw;
        let cols = Array2::from_shape_vec((dims[0] * oh * ow, k), im2col(flat, dims, g, oh, ow))?;
        let wk = self.active_kernel()?;
        let o = wk.nrows();
        let mut y2 = cols.dot(&wk.t());
        if let Some(b) = &self.bias {
            let b = b.effective();
            y2 += &b.view().into_dimensionality::<Ix1>()?.slice(s![..o]);
        }
        let y = y2
            .into_shape_with_order((dims[0], oh, ow, o))?
            .permuted_axes([0, 3, 1, 2])
            .as_standard_layout()
            .into_owned();
        self.cache = (mode == Mode::Train).then_some(ConvCache {
            cols,
            dims,
            out: (oh, ow),
        });
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let wk = self.active_kernel()?;
        let cache = self.cache.as_ref().ok_or_else(|| CoreError::InvalidState {
            layer: "SlimmableConv2d".into(),
            reason: "backward called without a preceding forward in Mode::Train".into(),
        })?;
        let (o, g) = (wk.nrows(), self.geometry);
        let [n, i, _, _] = cache.dims;
        let (oh, ow) = cache.out;
        if grad.shape() != [n, o, oh, ow] {
            return Err(CoreError::shape(
                "SlimmableConv2d grad",
                &[n, o, oh, ow],
                grad.shape(),
            ));
        }
        let g2 = grad
            .view()
            .into_dimensionality::<Ix4>()?
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n * oh * ow, o))?;
        let dw = g2
            .t()
            .dot(&cache.cols)
            .into_shape_with_order((o, i, g.kh, g.kw))?;
        let dcols = g2.dot(&wk);
        let dcols = dcols.as_standard_layout();
        let dx = col2im(
            dcols
                .as_slice()
                .ok_or_else(|| CoreError::config("grad", "not contiguous"))?,
            cache.dims,
            g,
            oh,
            ow,
        );
        let dx = ArrayD::from_shape_vec(IxDyn(&cache.dims), dx)?;
        let mut gw = self.weight.zeros_like();
        gw.slice_mut(s![..o, ..i, .., ..]).assign(&dw);
        self.weight.accumulate_grad(gw)?;
        if let Some(b) = &mut self.bias {
            let mut gb = b.zeros_like();
            gb.slice_mut(s![..o]).assign(&g2.sum_axis(Axis(0)));
            b.accumulate_grad(gb)?;
        }
        Ok(dx)
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let (oh, ow) = self.out_shape(input_shape).map_err(to_core)?;
        let (i, o) = (self.active_in(), self.active_out());
        let g = self.geometry;
        let per_pixel = o * i * g.kh * g.kw;
        let w = self.weight.effective();
        let w4 = w.view().into_dimensionality::<Ix4>()?;
        let nz_w = w4.slice(s![..o, ..i, .., ..]).count_nonzero();
        let (nb, nz_b) = self.bias.as_ref().map_or((0, 0), |b| {
            let e = b.effective();
            (o, e.iter().take(o).filter(|v| **v != F::zero()).count())
        });
        Ok(Cost {
            output_shape: vec![o, oh, ow],
            params: per_pixel + nb,
            nonzero_params: nz_w + nz_b,
            macs: (per_pixel * oh * ow) as u64,
        })
    }
}
