//! Ghost module (GhostNet): a thin primary convolution plus cheap depthwise "ghost" features.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{Conv2dConfig, Sequential};
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn, Slice};
use rand::Rng;

use super::chain::{
    Act, SequentialExt, channels, check_channels, check_nonzero, check_odd, concat_channels,
    sum_costs,
};

/// Configuration of a [`GhostModule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GhostConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N`.
    pub out_channels: usize,
    /// Primary kernel `K` (padding `K / 2`).
    pub kernel: usize,
    /// Ratio `s`: the primary convolution makes `m = ceil(N / s)` channels, the cheap
    /// operation `m (s - 1)` more.
    pub ratio: usize,
    /// Kernel `d` of the cheap depthwise operation (padding `d / 2`).
    pub dw_kernel: usize,
    /// Stride of the primary convolution.
    pub stride: usize,
    /// Activation after both batch norms ([`Act::None`] inside a Ghost bottleneck's
    /// second module).
    pub act: Act,
}

impl GhostConfig {
    /// `M -> N`. Defaults: 1x1 primary, ratio 2, 3x3 cheap operation, stride 1, ReLU.
    pub fn new(in_channels: usize, out_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: 1,
            ratio: 2,
            dw_kernel: 3,
            stride: 1,
            act: Act::ReLU,
        }
    }

    /// Sets the ratio `s`.
    #[must_use]
    pub fn ratio(mut self, ratio: usize) -> Self {
        self.ratio = ratio;
        self
    }

    /// Sets the primary kernel.
    #[must_use]
    pub fn kernel(mut self, kernel: usize) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the cheap operation's kernel.
    #[must_use]
    pub fn dw_kernel(mut self, dw_kernel: usize) -> Self {
        self.dw_kernel = dw_kernel;
        self
    }

    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the activation.
    #[must_use]
    pub fn act(mut self, act: Act) -> Self {
        self.act = act;
        self
    }

    /// Channels of the primary convolution, `m = ceil(N / s)`.
    pub fn primary_channels(&self) -> usize {
        self.out_channels.div_ceil(self.ratio.max(1))
    }

    /// Channels made by the cheap operation, `m (s - 1)`.
    pub fn cheap_channels(&self) -> usize {
        self.primary_channels() * self.ratio.saturating_sub(1)
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for zero channels, kernels or stride, even kernels, or
    /// a ratio below 2.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel", self.kernel),
            ("dw_kernel", self.dw_kernel),
            ("stride", self.stride),
        ])?;
        check_odd(
            &[("kernel", self.kernel), ("dw_kernel", self.dw_kernel)],
            "",
        )?;
        if self.ratio < 2 {
            return Err(CoreError::config(
                "ratio",
                format!("must be at least 2, got {}", self.ratio),
            ));
        }
        Ok(())
    }
}

/// `y = concat(P, cheap(P))[:, :N]` with `P = act(BN(conv_KxK(x)))` of `m = ceil(N / s)`
/// channels and `cheap` a depthwise `d x d` convolution with channel multiplier `s - 1`
/// (+ BN + act).
///
/// Cost (per sample, output `Ho x Wo`): weights `m M K^2 + m (s - 1) d^2` instead of
/// `N M K^2`, MACs likewise times `Ho Wo`: about `s` times fewer. Batch norms add
/// `2 m s` parameters and `m s Ho Wo` MACs. See [`crate::cost::ghost_module`].
///
/// Parameter paths: `primary.conv.weight`, `primary.bn.*`, `cheap.conv.weight`,
/// `cheap.bn.*`.
#[derive(Debug, Module)]
pub struct GhostModule<F: Float> {
    #[module(skip)]
    config: GhostConfig,
    primary: Sequential<F>,
    cheap: Sequential<F>,
    /// Output shape of the last training forward (`[n, m + m (s-1), h, w]`).
    #[module(skip)]
    full_shape: Option<Vec<usize>>,
}

impl<F: Float> GhostModule<F> {
    /// A module with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`GhostConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{GhostConfig, GhostModule};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let mut g = GhostModule::<f32>::new(GhostConfig::new(8, 16), &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = g.forward(&ArrayD::zeros(vec![1, 8, 5, 5]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[1, 16, 5, 5]);
    /// assert_eq!(g.cost(&[8, 5, 5]).unwrap().macs, ((8 * 8 + 8 * 9) * 25 + 16 * 25) as u64);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: GhostConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let m = config.primary_channels();
        let mut primary = Sequential::new();
        primary.push_conv(
            ["conv", "bn", "act"],
            Conv2dConfig::new(config.in_channels, m, config.kernel)
                .stride(config.stride)
                .padding(config.kernel / 2)
                .bias(false),
            true,
            config.act,
            rng,
        )?;
        let mut cheap = Sequential::new();
        cheap.push_conv(
            ["conv", "bn", "act"],
            Conv2dConfig::new(m, config.cheap_channels(), config.dw_kernel)
                .padding(config.dw_kernel / 2)
                .groups(m)
                .bias(false),
            true,
            config.act,
            rng,
        )?;
        Ok(Self {
            config,
            primary,
            cheap,
            full_shape: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GhostConfig {
        &self.config
    }
}

impl<F: Float> Layer<F> for GhostModule<F> {
    fn name(&self) -> &'static str {
        "GhostModule"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("GhostModule", x.shape(), self.config.in_channels)?;
        let p = self.primary.forward(x, mode)?;
        let c = self.cheap.forward(&p, mode)?;
        let full = concat_channels(&[&p, &c])?;
        self.full_shape = (mode == Mode::Train).then(|| full.shape().to_vec());
        Ok(channels(&full, 0, self.config.out_channels))
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let shape = self
            .full_shape
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("GhostModule"))?;
        let n = self.config.out_channels;
        let mut expected = shape.clone();
        expected[1] = n;
        if grad.shape() != expected.as_slice() {
            return Err(CoreError::shape(
                "GhostModule grad",
                &expected,
                grad.shape(),
            ));
        }
        // Dropped channels get zero gradient.
        let mut full = ArrayD::zeros(IxDyn(shape));
        full.slice_axis_mut(Axis(1), Slice::from(..n)).assign(grad);
        let m = self.config.primary_channels();
        let g_cheap = channels(&full, m, shape[1]);
        let mut g_primary = channels(&full, 0, m);
        g_primary += &self.cheap.backward(&g_cheap)?;
        self.primary.backward(&g_primary)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let p = self.primary.cost(input_shape)?;
        let c = self.cheap.cost(&p.output_shape)?;
        let mut out = sum_costs(p, &c);
        out.output_shape[0] = self.config.out_channels;
        Ok(out)
    }
}
