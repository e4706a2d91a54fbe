//! SqueezeNet Fire module.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use compress_nn::{Conv2dConfig, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::chain::{
    Act, SequentialExt, channels, check_channels, check_nonzero, concat_channels, concat_costs,
};

/// Configuration of a [`Fire`] module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireConfig {
    /// Input channels `M`.
    pub in_channels: usize,
    /// Squeeze channels `S`.
    pub squeeze: usize,
    /// Channels of the 1x1 expand branch `E1`.
    pub expand1x1: usize,
    /// Channels of the 3x3 expand branch `E3`.
    pub expand3x3: usize,
}

impl FireConfig {
    /// `M -> S -> (E1 + E3)`.
    pub fn new(in_channels: usize, squeeze: usize, expand1x1: usize, expand3x3: usize) -> Self {
        Self {
            in_channels,
            squeeze,
            expand1x1,
            expand3x3,
        }
    }

    /// Output channels `E1 + E3`.
    pub fn out_channels(&self) -> usize {
        self.expand1x1 + self.expand3x3
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero field.
    pub fn validate(&self) -> Result<()> {
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("squeeze", self.squeeze),
            ("expand1x1", self.expand1x1),
            ("expand3x3", self.expand3x3),
        ])?;
        Ok(())
    }
}

/// Squeeze 1x1 `M -> S` + ReLU, then 1x1 `S -> E1` + ReLU and 3x3 `S -> E3` (padding 1,
/// then ReLU), concatenated to `E1 + E3` channels (all convolutions with bias, no batch
/// norm, as in SqueezeNet).
///
/// Cost (per sample, `H x W`, size kept): weights `M S + S E1 + 9 S E3`, biases
/// `S + E1 + E3`, MACs `(M S + S E1 + 9 S E3) H W`. See [`crate::cost::fire`].
///
/// Parameter paths: `squeeze.conv.*`, `expand1x1.conv.*`, `expand3x3.conv.*`.
#[derive(Debug, Module)]
pub struct Fire<F: Float> {
    #[module(skip)]
    config: FireConfig,
    squeeze: Sequential<F>,
    #[module(rename = "expand1x1")]
    expand1: Sequential<F>,
    #[module(rename = "expand3x3")]
    expand3: Sequential<F>,
}

impl<F: Float> Fire<F> {
    /// A module with seeded initialisation.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`FireConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::{Fire, FireConfig};
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let mut f = Fire::<f32>::new(FireConfig::new(96, 16, 64, 64), &mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = f.forward(&ArrayD::zeros(vec![1, 96, 6, 6]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[1, 128, 6, 6]);
    /// assert_eq!(f.cost(&[96, 6, 6]).unwrap().params, 96 * 16 + 16 * 64 + 9 * 16 * 64 + 16 + 128);
    /// ```
    pub fn new<R: Rng + ?Sized>(config: FireConfig, rng: &mut R) -> Result<Self> {
        config.validate()?;
        let s = config.squeeze;
        let mut squeeze = Sequential::new();
        squeeze.push_conv(
            ["conv", "bn", "act"],
            Conv2dConfig::new(config.in_channels, s, 1),
            false,
            Act::ReLU,
            rng,
        )?;
        let mut expand1 = Sequential::new();
        expand1.push_conv(
            ["conv", "bn", "act"],
            Conv2dConfig::new(s, config.expand1x1, 1),
            false,
            Act::ReLU,
            rng,
        )?;
        let mut expand3 = Sequential::new();
        expand3.push_conv(
            ["conv", "bn", "act"],
            Conv2dConfig::new(s, config.expand3x3, 3).padding(1),
            false,
            Act::ReLU,
            rng,
        )?;
        Ok(Self {
            config,
            squeeze,
            expand1,
            expand3,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FireConfig {
        &self.config
    }
}

impl<F: Float> Layer<F> for Fire<F> {
    fn name(&self) -> &'static str {
        "Fire"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        check_channels("Fire", x.shape(), self.config.in_channels)?;
        let s = self.squeeze.forward(x, mode)?;
        let a = self.expand1.forward(&s, mode)?;
        let b = self.expand3.forward(&s, mode)?;
        concat_channels(&[&a, &b])
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let (e1, out) = (self.config.expand1x1, self.config.out_channels());
        if grad.shape().get(1) != Some(&out) {
            return Err(CoreError::shape("Fire grad", &[0, out], grad.shape()));
        }
        let mut gs = self.expand1.backward(&channels(grad, 0, e1))?;
        gs += &self.expand3.backward(&channels(grad, e1, out))?;
        self.squeeze.backward(&gs)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let s = self.squeeze.cost(input_shape)?;
        let a = self.expand1.cost(&s.output_shape)?;
        let b = self.expand3.cost(&s.output_shape)?;
        Ok(s.then(concat_costs(&[a, b])))
    }
}
