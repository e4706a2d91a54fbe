//! Inverted residual with linear bottleneck (MobileNetV2).

use compress_core::derive::Module;
use compress_core::{Cost, Float, Layer, Mode, Result};
use compress_nn::{Conv2dConfig, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::chain::{Act, SequentialExt, check_channels, check_nonzero, check_odd};

/// Configuration of an [`InvertedResidual`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvertedConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N`.
    pub out_channels: usize,
    /// Expansion factor `t` (1 skips the expansion convolution).
    pub expansion: usize,
    /// Depthwise kernel `K` (padding `K / 2`).
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Activation after the expansion and depthwise batch norms (MobileNetV2: ReLU6).
    pub act: Act,
}

impl InvertedConfig {
    /// `M -> N` with expansion `t`. Defaults: 3x3, stride 1, ReLU6.
    pub fn new(in_channels: usize, out_channels: usize, expansion: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            expansion,
            kernel: 3,
            stride: 1,
            act: Act::ReLU6,
        }
    }

    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the depthwise kernel.
    #[must_use]
    pub fn kernel(mut self, kernel: usize) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the activation.
    #[must_use]
    pub fn act(mut self, act: Act) -> Self {
        self.act = act;
        self
    }

    /// Hidden channels `t M`.
    pub fn hidden(&self) -> usize {
        self.in_channels * self.expansion
    }

    /// Whether the input is added to the output (stride 1 and `M == N`).
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`](compress_core::CoreError::InvalidConfig) for a zero field or an even kernel.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("expansion", self.expansion),
            ("kernel", self.kernel),
            ("stride", self.stride),
        ])?;
        check_odd(&[("kernel", self.kernel)], "")
    }
}

/// 1x1 expansion `M -> tM` + BN + act, depthwise `K x K` (stride `s`) + BN + act, 1x1
/// projection `tM -> N` + BN (linear: no activation), plus the input when `s = 1` and
/// `M = N`.
///
/// Cost (per sample, input `H x W`, output `Ho x Wo`): weights `t M^2 + t M K^2 + t M N`
/// (no expansion term when `t = 1`), MACs `t M^2 H W + (t M K^2 + t M N) Ho Wo`; batch norms
/// add `2 (tM [t > 1] + tM + N)` parameters and their element counts in MACs. The residual
/// addition is not a MAC. See [`crate::cost::inverted_residual`].
///
/// Parameter paths: `expand.weight`, `expand_bn.*`, `depthwise.weight`, `depthwise_bn.*`,
/// `project.weight`, `project_bn.*`.
#[derive(Debug, Module)]
pub struct InvertedResidual<F: Float> {
    #[module(skip)]
    config: InvertedConfig,
    #[module(flatten)]
    body: Sequential<F>,
}

impl<F: Float> InvertedResidual<F> {
    /// A block with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`](compress_core::CoreError::InvalidConfig) from [`InvertedConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{InvertedConfig, InvertedResidual};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let cfg = InvertedConfig::new(8, 8, 6);
    /// assert!(cfg.residual());
    /// let mut b = InvertedResidual::<f32>::new(cfg, &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = b.forward(&ArrayD::ones(vec![2, 8, 4, 4]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[2, 8, 4, 4]);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: InvertedConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let (m, n, h) = (config.in_channels, config.out_channels, config.hidden());
        let mut body = Sequential::new();
        if config.expansion != 1 {
            body.push_conv(
                ["expand", "expand_bn", "expand_act"],
                Conv2dConfig::new(m, h, 1).bias(false),
                true,
                config.act,
                rng,
            )?;
        }
        body.push_conv(
            ["depthwise", "depthwise_bn", "depthwise_act"],
            Conv2dConfig::new(h, h, config.kernel)
                .stride(config.stride)
                .padding(config.kernel / 2)
                .groups(h)
                .bias(false),
            true,
            config.act,
            rng,
        )?;
        body.push_conv(
            ["project", "project_bn", "project_act"],
            Conv2dConfig::new(h, n, 1).bias(false),
            true,
            Act::None,
            rng,
        )?;
        Ok(Self { config, body })
    }

    /// The configuration.
    pub fn config(&self) -> &InvertedConfig {
        &self.config
    }

    /// The layers of the residual branch.
    pub fn body(&self) -> &Sequential<F> {
        &self.body
    }
}

impl<F: Float> Layer<F> for InvertedResidual<F> {
    fn name(&self) -> &'static str {
        "InvertedResidual"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("InvertedResidual", x.shape(), self.config.in_channels)?;
        let mut y = self.body.forward(x, mode)?;
        if self.config.residual() {
            y += &x.view();
        }
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mut g = self.body.backward(grad)?;
        if self.config.residual() {
            g += &grad.view();
        }
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.body.cost(input_shape)
    }
}
