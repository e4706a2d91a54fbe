//! MobileNet v1 builder with width and resolution multipliers.

use compress_core::{CoreError, Float, Result};
use compress_nn::{BatchNorm2d, Conv2d, Conv2dConfig, GlobalAvgPool, Linear, ReLU, Sequential};
use rand::Rng;

use super::chain::check_nonzero;
use super::separable::{DepthwiseSeparableConv, Pointwise, SeparableConfig};

/// A MobileNet v1 description: a 3x3 stem, depthwise separable blocks, global average pool
/// and a classifier, with width multiplier `alpha` and resolution multiplier `rho`.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileNetConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Classes of the classifier.
    pub classes: usize,
    /// Width multiplier `alpha` in `(0, 1]` (every layer's channels times `alpha`, rounded,
    /// at least 1).
    pub alpha: f64,
    /// Base input side (224 for ImageNet).
    pub resolution: usize,
    /// Resolution multiplier `rho` in `(0, 1]`: the network is fed `round(rho * resolution)`
    /// pixels a side (the layers accept any size; this sets [`MobileNetConfig::input_shape`]).
    pub resolution_multiplier: f64,
    /// Stem channels before `alpha` (32).
    pub stem_channels: usize,
    /// Stem stride (2 for ImageNet).
    pub stem_stride: usize,
    /// `(output channels before alpha, depthwise stride)` of each separable block.
    pub blocks: Vec<(usize, usize)>,
    /// The pointwise stage of every block (a 1x1 conv, or a Ghost module for the Ghost
    /// variant).
    pub pointwise: Pointwise,
}

impl MobileNetConfig {
    /// The ImageNet network of Howard et al. (2017): 224x224x3, stem 32/2, 13 blocks,
    /// 1000 classes; `alpha = rho = 1`.
    pub fn imagenet() -> Self {
        Self {
            in_channels: 3,
            classes: 1000,
            alpha: 1.0,
            resolution: 224,
            resolution_multiplier: 1.0,
            stem_channels: 32,
            stem_stride: 2,
            blocks: vec![
                (64, 1),
                (128, 2),
                (128, 1),
                (256, 2),
                (256, 1),
                (512, 2),
                (512, 1),
                (512, 1),
                (512, 1),
                (512, 1),
                (512, 1),
                (1024, 2),
                (1024, 1),
            ],
            pointwise: Pointwise::Conv,
        }
    }

    /// A small variant for `side x side` images (digits: 8, MNIST: 28): stem 32/1 and the
    /// first four ImageNet blocks `64/1, 128/2, 128/1, 256/2`.
    pub fn small(in_channels: usize, side: usize, classes: usize) -> Self {
        Self {
            in_channels,
            classes,
            resolution: side,
            stem_stride: 1,
            blocks: vec![(64, 1), (128, 2), (128, 1), (256, 2)],
            ..Self::imagenet()
        }
    }

    /// Sets the width multiplier.
    #[must_use]
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the resolution multiplier.
    #[must_use]
    pub fn resolution_multiplier(mut self, rho: f64) -> Self {
        self.resolution_multiplier = rho;
        self
    }

    /// Sets the pointwise stage.
    #[must_use]
    pub fn pointwise(mut self, pointwise: Pointwise) -> Self {
        self.pointwise = pointwise;
        self
    }

    /// Channels after the width multiplier: `max(1, round(alpha * c))`.
    pub fn width(&self, c: usize) -> usize {
        ((self.alpha * c as f64).round() as usize).max(1)
    }

    /// Input side after the resolution multiplier: `max(1, round(rho * resolution))`.
    pub fn input_side(&self) -> usize {
        ((self.resolution_multiplier * self.resolution as f64).round() as usize).max(1)
    }

    /// Per-sample input shape `[in_channels, side, side]`.
    pub fn input_shape(&self) -> [usize; 3] {
        let s = self.input_side();
        [self.in_channels, s, s]
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for `alpha` or `rho` outside `(0, 1]` (NaN included),
    /// zero channels, classes, strides or stem channels.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("alpha", self.alpha),
            ("resolution_multiplier", self.resolution_multiplier),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(CoreError::config(
                    name,
                    format!("must be in (0, 1], got {v}"),
                ));
            }
        }
        check_nonzero(&[
            ("in_channels", self.in_channels),
            ("classes", self.classes),
            ("resolution", self.resolution),
            ("stem_channels", self.stem_channels),
            ("stem_stride", self.stem_stride),
        ])?;
        for (i, &(c, s)) in self.blocks.iter().enumerate() {
            if c == 0 || s == 0 {
                return Err(CoreError::config(
                    format!("blocks[{i}]"),
                    format!("channels and stride must be at least 1, got ({c}, {s})"),
                ));
            }
        }
        Ok(())
    }

    /// Builds the network: `[stem conv, BN, ReLU, blocks..., GlobalAvgPool, Linear]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] from [`MobileNetConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use compress_arch::blocks::MobileNetConfig;
    /// use compress_core::{Layer, Mode};
    /// use ndarray::ArrayD;
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// let cfg = MobileNetConfig::small(1, 8, 10).alpha(0.5);
    /// let mut net = cfg.build::<f32, _>(&mut StdRng::seed_from_u64(0)).unwrap();
    /// let y = net.forward(&ArrayD::zeros(vec![2, 1, 8, 8]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[2, 10]);
    /// ```
    pub fn build<F: Float, R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Sequential<F>> {
        self.validate()?;
        let mut net = Sequential::new();
        let stem = self.width(self.stem_channels);
        net.push(Conv2d::new(
            Conv2dConfig::new(self.in_channels, stem, 3)
                .stride(self.stem_stride)
                .padding(1)
                .bias(false),
            rng,
        )?);
        net.push(BatchNorm2d::new(stem));
        net.push(ReLU::new());
        let mut c = stem;
        for &(out, stride) in &self.blocks {
            let n = self.width(out);
            let cfg = SeparableConfig::new(c, n, 3)
                .stride(stride)
                .pointwise(self.pointwise);
            net.push(DepthwiseSeparableConv::new(cfg, rng)?);
            c = n;
        }
        net.push(GlobalAvgPool::new());
        net.push(Linear::new(c, self.classes, true, rng));
        Ok(net)
    }
}
