//! Xception-style stack of separable convolutions with a residual connection.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{Conv2dConfig, MaxPool2d, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::chain::{Act, SequentialExt, check_channels, check_nonzero, sum_costs};

/// Configuration of an [`XceptionBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XceptionConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Output channels `N`.
    pub out_channels: usize,
    /// Separable convolutions in the stack (Xception: 2 or 3).
    pub reps: usize,
    /// Stride: with `s > 1` the stack ends with a 3x3 max pool of stride `s` (padding 1)
    /// and the shortcut is a strided 1x1 convolution.
    pub stride: usize,
    /// Whether the stack starts with a ReLU (Xception: all blocks but the first).
    pub start_with_relu: bool,
}

impl XceptionConfig {
    /// `M -> N` with `reps` separable convolutions. Defaults: stride 1, starts with ReLU.
    pub fn new(in_channels: usize, out_channels: usize, reps: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            reps,
            stride: 1,
            start_with_relu: true,
        }
    }

    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets whether the stack starts with a ReLU.
    #[must_use]
    pub fn start_with_relu(mut self, yes: bool) -> Self {
        self.start_with_relu = yes;
        self
    }

    /// Whether the shortcut is a projection (`M != N` or `s > 1`) rather than the identity.
    pub fn projects(&self) -> bool {
        self.in_channels != self.out_channels || self.stride != 1
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero field.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("reps", self.reps),
            ("stride", self.stride),
        ])?;
        Ok(())
    }
}

/// `reps` times [ReLU, separable 3x3 conv (depthwise 3x3 then pointwise 1x1, nothing in
/// between), BN] (the first ReLU optional, the first separable convolution `M -> N`, the
/// others `N -> N`), then a 3x3 max pool of stride `s` when `s > 1`; plus a shortcut
/// (identity, or 1x1 conv of stride `s` + BN when the shape changes).
///
/// Cost (per sample, `H x W`, output `Ho x Wo`): weights `9 M + M N + (reps - 1)(9 N + N^2)`
/// plus `M N` for a projecting shortcut; MACs `(9 M + M N + (reps - 1)(9 N + N^2)) H W
/// (+ M N Ho Wo)`; batch norms `2 N` parameters and `N H W` MACs each (`N Ho Wo` for the
/// shortcut's). See [`crate::cost::xception_block`].
///
/// Parameter paths: `stack.sep{i}_dw.weight`, `stack.sep{i}_pw.weight`, `stack.bn{i}.*`
/// (`i` from 1), `skip.conv.weight`, `skip.bn.*`.
#[derive(Debug, Module)]
pub struct XceptionBlock<F: Float> {
    #[module(skip)]
    config: XceptionConfig,
    stack: Sequential<F>,
    skip: Sequential<F>,
}

impl<F: Float> XceptionBlock<F> {
    /// A block with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`XceptionConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{XceptionBlock, XceptionConfig};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let cfg = XceptionConfig::new(8, 16, 2).stride(2);
    /// let mut b = XceptionBlock::<f32>::new(cfg, &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = b.forward(&ArrayD::zeros(vec![1, 8, 8, 8]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[1, 16, 4, 4]);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: XceptionConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let (m, n) = (config.in_channels, config.out_channels);
        let mut stack = Sequential::new();
        for i in 0..config.reps {
            let c_in = if i == 0 { m } else { n };
            if i > 0 || config.start_with_relu {
                stack.push_act(format!("relu{}", i + 1), Act::ReLU)?;
            }
            stack.push_conv(
                [&format!("sep{}_dw", i + 1), "", ""],
                Conv2dConfig::new(c_in, c_in, 3)
                    .padding(1)
                    .groups(c_in)
                    .bias(false),
                false,
                Act::None,
                rng,
            )?;
            stack.push_conv(
                [&format!("sep{}_pw", i + 1), &format!("bn{}", i + 1), ""],
                Conv2dConfig::new(c_in, n, 1).bias(false),
                true,
                Act::None,
                rng,
            )?;
        }
        if config.stride > 1 {
            stack.push_named("pool", MaxPool2d::new(3).stride(config.stride).padding(1))?;
        }
        let mut skip = Sequential::new();
        if config.projects() {
            skip.push_conv(
                ["conv", "bn", ""],
                Conv2dConfig::new(m, n, 1).stride(config.stride).bias(false),
                true,
                Act::None,
                rng,
            )?;
        }
        Ok(Self {
            config,
            stack,
            skip,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &XceptionConfig {
        &self.config
    }
}

impl<F: Float> Layer<F> for XceptionBlock<F> {
    fn name(&self) -> &'static str {
        "XceptionBlock"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("XceptionBlock", x.shape(), self.config.in_channels)?;
        let mut y = self.stack.forward(x, mode)?;
        let s = self.skip.forward(x, mode)?;
        if y.shape() != s.shape() {
            return Err(CoreError::shape(
                "XceptionBlock shortcut",
                y.shape(),
                s.shape(),
            ));
        }
        y += &s;
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mut g = self.stack.backward(grad)?;
        g += &self.skip.backward(grad)?;
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let a = self.stack.cost(input_shape)?;
        let b = self.skip.cost(input_shape)?;
        Ok(sum_costs(a, &b))
    }
}
