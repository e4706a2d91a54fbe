//! ShuffleNet (v1) unit: grouped 1x1 convolutions, channel shuffle and a depthwise 3x3.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{AvgPool2d, Conv2dConfig, ReLU, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::chain::{
    Act, SequentialExt, channels, check_channels, check_nonzero, concat_channels, sum_costs,
};

/// Permutes channels so that grouped convolutions exchange information: with `g` groups of
/// `c / g` channels, output channel `i g + j` is input channel `j (c / g) + i`.
#[derive(Debug, Clone, Default, Module)]
pub struct ChannelShuffle {
    #[module(skip)]
    groups: usize,
    #[module(skip)]
    channels: Option<usize>,
}

impl ChannelShuffle {
    /// A shuffle over `groups` groups.
    pub fn new(groups: usize) -> Self {
        Self {
            groups,
            channels: None,
        }
    }

    fn permute<F: Float>(x: &ArrayRef<F, IxDyn>, a: usize, b: usize) -> Result<ArrayD<F>> {
        // [n, a, b, rest] -> [n, b, a, rest]
        let s = x.shape();
        let (n, rest) = (s[0], s[2..].iter().product::<usize>());
        let v = x.to_shape(IxDyn(&[n, a, b, rest]))?;
        let t = v.permuted_axes(IxDyn(&[0, 2, 1, 3]));
        let t = t.as_standard_layout().into_owned();
        Ok(t.into_shape_with_order(IxDyn(s))?)
    }
}

impl<F: Float> Layer<F> for ChannelShuffle {
    fn name(&self) -> &'static str {
        "ChannelShuffle"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let c = x.shape().get(1).copied().unwrap_or(0);
        if x.ndim() < 2 || self.groups == 0 || c % self.groups != 0 {
            return Err(CoreError::config(
                "groups",
                format!(
                    "{} does not divide the {c} channels of {:?}",
                    self.groups,
                    x.shape()
                ),
            ));
        }
        self.channels = (mode == Mode::Train).then_some(c);
        Self::permute(x, self.groups, c / self.groups)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let c = self
            .channels
            .ok_or_else(|| CoreError::no_forward("ChannelShuffle"))?;
        if grad.shape().get(1) != Some(&c) {
            return Err(CoreError::shape(
                "ChannelShuffle grad",
                &[0, c],
                grad.shape(),
            ));
        }
        Self::permute(grad, c / self.groups, self.groups)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}

/// Configuration of a [`ShuffleUnit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuffleConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N` (stride 1: `N = M`; stride 2: the branch makes `N - M`).
    pub out_channels: usize,
    /// Groups `g` of the 1x1 convolutions.
    pub groups: usize,
    /// Stride 1 (residual add) or 2 (3x3 average-pool shortcut, concatenated).
    pub stride: usize,
    /// Bottleneck channels `B` (ShuffleNet: `N / 4`).
    pub bottleneck: usize,
}

impl ShuffleConfig {
    /// `M -> N` with `g` groups. Defaults: stride 1, bottleneck `N / 4` (at least `g`).
    pub fn new(in_channels: usize, out_channels: usize, groups: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            groups,
            stride: 1,
            bottleneck: (out_channels / 4).max(groups),
        }
    }

    /// Sets the stride (1 or 2).
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the bottleneck width.
    #[must_use]
    pub fn bottleneck(mut self, bottleneck: usize) -> Self {
        self.bottleneck = bottleneck;
        self
    }

    /// Channels the branch makes: `N` at stride 1, `N - M` at stride 2.
    pub fn branch_channels(&self) -> usize {
        if self.stride == 1 {
            self.out_channels
        } else {
            self.out_channels.saturating_sub(self.in_channels)
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero field, a stride other than 1 or 2, `N != M`
    /// at stride 1, `N <= M` at stride 2, or `g` not dividing `M`, `B` and the branch
    /// channels.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("groups", self.groups),
            ("bottleneck", self.bottleneck),
        ])?;
        match self.stride {
            1 if self.in_channels != self.out_channels => Err(CoreError::config(
                "out_channels",
                format!(
                    "must equal in_channels ({}) at stride 1 for the residual, got {}",
                    self.in_channels, self.out_channels
                ),
            )),
            2 if self.out_channels <= self.in_channels => Err(CoreError::config(
                "out_channels",
                format!(
                    "must exceed in_channels ({}) at stride 2 (concatenation), got {}",
                    self.in_channels, self.out_channels
                ),
            )),
            1 | 2 => {
                for (name, v) in [
                    ("in_channels", self.in_channels),
                    ("bottleneck", self.bottleneck),
                    ("branch channels", self.branch_channels()),
                ] {
                    if v % self.groups != 0 {
                        return Err(CoreError::config(
                            name,
                            format!("{v} is not divisible by groups = {}", self.groups),
                        ));
                    }
                }
                Ok(())
            }
            s => Err(CoreError::config(
                "stride",
                format!("must be 1 or 2, got {s}"),
            )),
        }
    }
}

/// Grouped 1x1 `M -> B` + BN + ReLU, channel shuffle, depthwise 3x3 (stride `s`) + BN,
/// grouped 1x1 `B -> N'` + BN; then `ReLU(x + branch)` at stride 1 or
/// `ReLU(concat(avgpool3x3/2(x), branch))` at stride 2.
///
/// Cost (per sample, input `H x W`, output `Ho x Wo`): weights `M B / g + 9 B + B N' / g`,
/// MACs `(M B / g) H W + (9 B + B N' / g) Ho Wo`; batch norms add `2 (2B + N')` parameters
/// and `B H W + (B + N') Ho Wo` MACs. See [`crate::cost::shuffle_unit`].
///
/// Parameter paths: `branch.gconv1.weight`, `branch.bn1.*`, `branch.depthwise.weight`,
/// `branch.bn2.*`, `branch.gconv2.weight`, `branch.bn3.*`.
#[derive(Debug, Module)]
pub struct ShuffleUnit<F: Float> {
    #[module(skip)]
    config: ShuffleConfig,
    branch: Sequential<F>,
    #[module(skip)]
    pool: AvgPool2d,
    #[module(skip)]
    relu: ReLU<F>,
}

impl<F: Float> ShuffleUnit<F> {
    /// A unit with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`ShuffleConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{ShuffleConfig, ShuffleUnit};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let cfg = ShuffleConfig::new(24, 48, 3).stride(2).bottleneck(12);
    /// let mut u = ShuffleUnit::<f32>::new(cfg, &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = u.forward(&ArrayD::zeros(vec![1, 24, 8, 8]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[1, 48, 4, 4]);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: ShuffleConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let (m, b, g) = (config.in_channels, config.bottleneck, config.groups);
        let mut branch = Sequential::new();
        branch.push_conv(
            ["gconv1", "bn1", "act1"],
            Conv2dConfig::new(m, b, 1).groups(g).bias(false),
            true,
            Act::ReLU,
            rng,
        )?;
        branch.push_named("shuffle", ChannelShuffle::new(g))?;
        branch.push_conv(
            ["depthwise", "bn2", "act2"],
            Conv2dConfig::new(b, b, 3)
                .stride(config.stride)
                .padding(1)
                .groups(b)
                .bias(false),
            true,
            Act::None,
            rng,
        )?;
        branch.push_conv(
            ["gconv2", "bn3", "act3"],
            Conv2dConfig::new(b, config.branch_channels(), 1)
                .groups(g)
                .bias(false),
            true,
            Act::None,
            rng,
        )?;
        Ok(Self {
            config,
            branch,
            pool: AvgPool2d::new(3).stride(2).padding(1),
            relu: ReLU::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ShuffleConfig {
        &self.config
    }
}

impl<F: Float> Layer<F> for ShuffleUnit<F> {
    fn name(&self) -> &'static str {
        "ShuffleUnit"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("ShuffleUnit", x.shape(), self.config.in_channels)?;
        let b = self.branch.forward(x, mode)?;
        let pre = if self.config.stride == 1 {
            b + x
        } else {
            let s = Layer::<F>::forward(&mut self.pool, x, mode)?;
            concat_channels(&[&s, &b])?
        };
        self.relu.forward(&pre, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let g = self.relu.backward(grad)?;
        if self.config.stride == 1 {
            let mut dx = self.branch.backward(&g)?;
            dx += &g;
            Ok(dx)
        } else {
            let m = self.config.in_channels;
            let gs = channels(&g, 0, m);
            let gb = channels(&g, m, self.config.out_channels);
            let mut dx = self.branch.backward(&gb)?;
            dx += &Layer::<F>::backward(&mut self.pool, &gs)?;
            Ok(dx)
        }
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let b = self.branch.cost(input_shape)?;
        if self.config.stride == 1 {
            return Ok(b);
        }
        let s = Layer::<F>::cost(&self.pool, input_shape)?;
        let mut c = sum_costs(b, &s);
        c.output_shape[0] = self.config.out_channels;
        Ok(c)
    }
}
