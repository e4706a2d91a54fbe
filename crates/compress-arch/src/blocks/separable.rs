//! Depthwise separable convolution (MobileNet v1).

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{BatchNorm2d, Conv2dConfig, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::chain::{Act, SequentialExt, check_channels, check_nonzero, check_odd};
use super::ghost::{GhostConfig, GhostModule};

/// What follows the depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pointwise {
    /// A 1x1 convolution `M -> N` (MobileNet).
    #[default]
    Conv,
    /// A [`GhostModule`] `M -> N` with ratio `s` (1x1 primary, 3x3 cheap operation).
    Ghost(usize),
}

/// Configuration of a [`DepthwiseSeparableConv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparableConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N`.
    pub out_channels: usize,
    /// Depthwise kernel `K` (padding `K / 2`).
    pub kernel: usize,
    /// Stride of the depthwise convolution.
    pub stride: usize,
    /// Batch norm + activation after the pointwise convolution too (MobileNet: yes).
    pub pointwise_bn_act: bool,
    /// The activation after each batch norm.
    pub act: Act,
    /// The pointwise stage.
    pub pointwise: Pointwise,
}

impl SeparableConfig {
    /// `M -> N` with a `K x K` depthwise kernel.
    ///
    /// Defaults: stride 1, batch norm and ReLU after both convolutions, a 1x1 pointwise
    /// convolution.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            pointwise_bn_act: true,
            act: Act::ReLU,
            pointwise: Pointwise::Conv,
        }
    }

    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets whether batch norm and activation follow the pointwise convolution.
    #[must_use]
    pub fn pointwise_bn_act(mut self, yes: bool) -> Self {
        self.pointwise_bn_act = yes;
        self
    }

    /// Sets the activation.
    #[must_use]
    pub fn act(mut self, act: Act) -> Self {
        self.act = act;
        self
    }

    /// Sets the pointwise stage.
    #[must_use]
    pub fn pointwise(mut self, pointwise: Pointwise) -> Self {
        self.pointwise = pointwise;
        self
    }

    /// The depthwise convolution's configuration (`groups = M`, no bias).
    pub fn depthwise_config(&self) -> Conv2dConfig {
        Conv2dConfig::new(self.in_channels, self.in_channels, self.kernel)
            .stride(self.stride)
            .padding(self.kernel / 2)
            .groups(self.in_channels)
            .bias(false)
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for zero channels, kernel or stride, an even kernel, or
    /// a Ghost ratio below 2.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel", self.kernel),
            ("stride", self.stride),
        ])?;
        check_odd(
            &[("kernel", self.kernel)],
            " (padding K / 2 keeps the size)",
        )?;
        if let Pointwise::Ghost(s) = self.pointwise
            && s < 2
        {
            return Err(CoreError::config(
                "ghost ratio",
                format!("must be >= 2, got {s}"),
            ));
        }
        Ok(())
    }
}

/// Depthwise `K x K` conv (stride `s`) + BN + act, then pointwise 1x1 conv `M -> N`
/// [+ BN + act].
///
/// Cost (per sample, output `Ho x Wo`): weights `M K^2 + M N` instead of a standard
/// convolution's `N M K^2`; MACs `(M K^2 + M N) Ho Wo`; ratio `1/N + 1/K^2`. Batch norms add
/// `2M + 2N` parameters and `(M + N) Ho Wo` MACs; convolutions have no bias. See
/// [`crate::cost::depthwise_separable`].
///
/// Parameter paths: `depthwise.weight`, `bn1.*`, `pointwise.weight` (or `pointwise.*` of a
/// Ghost module), `bn2.*`.
///
/// # Shapes
///
/// - input: `[batch, M, H, W]`, output: `[batch, N, Ho, Wo]`, `Ho = ceil(H / s)`
#[derive(Debug, Module)]
pub struct DepthwiseSeparableConv<F: Float> {
    #[module(skip)]
    config: SeparableConfig,
    #[module(flatten)]
    body: Sequential<F>,
}

impl<F: Float> DepthwiseSeparableConv<F> {
    /// A block with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`SeparableConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{DepthwiseSeparableConv, SeparableConfig};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let cfg = SeparableConfig::new(16, 32, 3).stride(2);
    /// let mut b = DepthwiseSeparableConv::<f32>::new(cfg, &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = b.forward(&ArrayD::zeros(vec![2, 16, 8, 8]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[2, 32, 4, 4]);
    /// let c = b.cost(&[16, 8, 8]).unwrap();
    /// assert_eq!(c.params, 16 * 9 + 16 * 32 + 2 * 16 + 2 * 32);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: SeparableConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let mut body = Sequential::new();
        body.push_conv(
            ["depthwise", "bn1", "act1"],
            config.depthwise_config(),
            true,
            config.act,
            rng,
        )?;
        let (m, n) = (config.in_channels, config.out_channels);
        match config.pointwise {
            Pointwise::Conv => body.push_conv(
                ["pointwise", "bn2", "act2"],
                Conv2dConfig::new(m, n, 1).bias(false),
                config.pointwise_bn_act,
                if config.pointwise_bn_act {
                    config.act
                } else {
                    Act::None
                },
                rng,
            )?,
            Pointwise::Ghost(s) => {
                let g = GhostConfig::new(m, n)
                    .ratio(s)
                    .act(if config.pointwise_bn_act {
                        config.act
                    } else {
                        Act::None
                    });
                body.push_named("pointwise", GhostModule::new(g, rng)?)?;
            }
        }
        Ok(Self { config, body })
    }

    /// The configuration.
    pub fn config(&self) -> &SeparableConfig {
        &self.config
    }

    /// The layers (`depthwise`, `bn1`, `act1`, `pointwise`, `bn2`, `act2`).
    pub fn body(&self) -> &Sequential<F> {
        &self.body
    }

    /// The first batch norm.
    pub fn bn1(&self) -> Option<&BatchNorm2d<F>> {
        self.body.get_named("bn1")
    }
}

impl<F: Float> Layer<F> for DepthwiseSeparableConv<F> {
    fn name(&self) -> &'static str {
        "DepthwiseSeparableConv"
    }
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("DepthwiseSeparableConv", x.shape(), self.config.in_channels)?;
        self.body.forward(x, mode)
    }
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        self.body.backward(grad)
    }
    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.body.cost(input_shape)
    }
}
