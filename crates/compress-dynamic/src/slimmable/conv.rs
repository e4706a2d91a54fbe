//! A 2-D convolution that runs on its first `ceil(w * C)` input and output channels
//! (compress-nn's `Conv2d` run on the active slice of the kernel).

use compress_core::derive::Module;
use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module as _, Param, ParamKind, TensorExt,
};
use compress_nn::{Conv2d, Conv2dConfig};
use ndarray::{ArrayD, ArrayRef, Ix1, Ix4, IxDyn, s};
use rand::Rng;

use super::width::{SlimSides, Slimmable};
use crate::Result;

/// `Conv2d` (NCHW, one group) on the first `ceil(w * out)` filters and the first
/// `ceil(w * in)` input channels (when slimmable). Its geometry (kernel, stride, padding,
/// dilation, bias) is a compress-nn [`Conv2dConfig`] at full width. Parameter paths:
/// `weight` `[out, in, kh, kw]`, `bias` `[out]`.
///
/// # Shapes
///
/// - input: `[batch, active_in, h, w]`
/// - output: `[batch, active_out, oh, ow]` as [`Conv2dConfig::output_hw`]
///
/// ```
/// use compress_core::Layer;
/// use compress_dynamic::{Slimmable, SlimmableConv2d};
/// use compress_nn::Conv2dConfig;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let cfg = Conv2dConfig::new(8, 16, 3).padding(1);
/// let mut conv = SlimmableConv2d::<f32>::new(cfg, true, true, &mut rng)?;
/// conv.set_width(0.5)?;
/// assert_eq!(conv.cost(&[4, 8, 8])?.macs, 8 * 4 * 9 * 64);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Module)]
pub struct SlimmableConv2d<F: Float> {
    /// Kernel `[out, in, kh, kw]` at full width.
    pub weight: Param<F>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<F>>,
    #[module(skip)]
    config: Conv2dConfig,
    #[module(skip)]
    slim: SlimSides,
    /// The active-slice convolution of the last training-mode forward.
    #[module(skip)]
    cache: Option<Box<Conv2d<F>>>,
}

impl<F: Float> SlimmableConv2d<F> {
    /// The convolution `config` (one group) at full width, Kaiming-uniform initialised like
    /// PyTorch, with a bias when `config.bias`. `slim_in = false` for the first layer (fixed
    /// image channels).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for an invalid `config` (see [`Conv2dConfig::validate`])
    /// or more than one group.
    pub fn new<R: Rng + ?Sized>(
        config: Conv2dConfig,
        slim_in: bool,
        slim_out: bool,
        rng: &mut R,
    ) -> Result<Self> {
        config.validate()?;
        if config.groups != 1 {
            return Err(CoreError::config(
                "groups",
                format!("SlimmableConv2d needs one group, got {}", config.groups),
            )
            .into());
        }
        let shape = config.weight_shape();
        let fan_in = shape[1] * shape[2] * shape[3];
        let w = compress_nn::init::kaiming_uniform(&shape, fan_in, rng);
        let bias = config.bias.then(|| {
            let b = compress_nn::init::kaiming_uniform(&[shape[0]], fan_in, rng);
            Param::with_kind(b, ParamKind::Bias)
        });
        Ok(Self {
            weight: Param::new(w),
            bias,
            config,
            slim: SlimSides::new(slim_in, slim_out),
            cache: None,
        })
    }

    /// Input channels at the current width.
    pub fn active_in(&self) -> usize {
        self.slim.active_in(self.weight.shape()[1])
    }

    /// Output channels at the current width.
    pub fn active_out(&self) -> usize {
        self.slim.active_out(self.weight.shape()[0])
    }

    /// A compress-nn convolution holding the active slice of the (effective) kernel and bias.
    fn active_conv(&self) -> compress_core::Result<Conv2d<F>> {
        let (i, o) = (self.active_in(), self.active_out());
        let w = self.weight.effective();
        let w4 = w.view().into_dimensionality::<Ix4>()?;
        let ws = w4
            .slice(s![..o, ..i, .., ..])
            .as_standard_layout()
            .into_owned();
        let bias = match &self.bias {
            Some(b) => {
                let e = b.effective();
                Some(
                    e.view()
                        .into_dimensionality::<Ix1>()?
                        .slice(s![..o])
                        .to_owned()
                        .into_dyn(),
                )
            }
            None => None,
        };
        let cfg = self.config.with_channels(i, o, 1).bias(bias.is_some());
        Conv2d::from_arrays(cfg, ws.into_dyn(), bias)
    }

    fn out_shape(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let i = self.active_in();
        let bad = || CoreError::shape("SlimmableConv2d input", &[i, 0, 0], shape);
        if shape.len() != 3 || shape[0] != i {
            return Err(bad().into());
        }
        Ok(self.config.output_hw(shape[1], shape[2])?)
    }
}

impl<F: Float> Slimmable for SlimmableConv2d<F> {
    fn set_width(&mut self, w: f64) -> Result<()> {
        self.slim.set_width(w)?;
        self.cache = None;
        Ok(())
    }

    fn width(&self) -> f64 {
        self.slim.width()
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
        self.out_shape(&x.shape()[1..])
            .map_err(|e| e.into_core("SlimmableConv2d"))?;
        let mut conv = self.active_conv()?;
        let y = conv.forward(x, mode)?;
        self.cache = (mode == Mode::Train).then(|| Box::new(conv));
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let conv = self
            .cache
            .as_mut()
            .ok_or_else(|| CoreError::no_forward("SlimmableConv2d"))?;
        conv.zero_grad();
        let dx = conv.backward(grad)?;
        let (o, i) = (conv.out_channels(), conv.in_channels());
        if let Some(dw) = conv.weight.grad() {
            let mut gw = self.weight.zeros_like();
            gw.slice_mut(s![..o, ..i, .., ..])
                .assign(&dw.view().into_dimensionality::<Ix4>()?);
            self.weight.accumulate_grad(gw)?;
        }
        if let (Some(b), Some(db)) = (&mut self.bias, conv.bias.as_ref().and_then(|b| b.grad())) {
            let mut gb = b.zeros_like();
            gb.slice_mut(s![..o])
                .assign(&db.view().into_dimensionality::<Ix1>()?);
            b.accumulate_grad(gb)?;
        }
        Ok(dx)
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let (oh, ow) = self
            .out_shape(input_shape)
            .map_err(|e| e.into_core("SlimmableConv2d"))?;
        let (i, o) = (self.active_in(), self.active_out());
        let (kh, kw) = self.config.kernel;
        let per_pixel = o * i * kh * kw;
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
