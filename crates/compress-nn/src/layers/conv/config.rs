//! Hyperparameters of [`Conv2d`](super::Conv2d).

use compress_core::{CoreError, Result};

/// A `(height, width)` pair given as one number (square) or a tuple.
pub trait IntoHw {
    /// The `(height, width)` pair.
    fn into_hw(self) -> (usize, usize);
}

impl IntoHw for usize {
    fn into_hw(self) -> (usize, usize) {
        (self, self)
    }
}

impl IntoHw for (usize, usize) {
    fn into_hw(self) -> (usize, usize) {
        self
    }
}

/// Configuration of a 2-D convolution (NCHW), as in PyTorch's `nn.Conv2d`.
///
/// Built with [`Conv2dConfig::new`] and the builder methods; checked by
/// [`Conv2dConfig::validate`] when the layer is made.
///
/// ```
/// use compress_nn::Conv2dConfig;
/// let c = Conv2dConfig::new(64, 64, 3).padding(1).groups(64).bias(false);
/// assert_eq!(c.kernel, (3, 3));
/// assert_eq!(c.output_hw(32, 32).unwrap(), (32, 32));
/// assert!(c.is_depthwise());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dConfig {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels `O`.
    pub out_channels: usize,
    /// Kernel `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Zero padding on each side `(ph, pw)`.
    pub padding: (usize, usize),
    /// Dilation `(dh, dw)`.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels are split into `groups` independent parts
    /// (`groups == in_channels` is depthwise).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Conv2dConfig {
    /// A `kernel`-sized convolution from `in_channels` to `out_channels`.
    ///
    /// Defaults: stride 1, padding 0, dilation 1, groups 1, with bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: impl IntoHw) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel: kernel.into_hw(),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            bias: true,
        }
    }

    /// Sets the stride.
    #[must_use]
    pub fn stride(mut self, stride: impl IntoHw) -> Self {
        self.stride = stride.into_hw();
        self
    }

    /// Sets the zero padding on each side.
    #[must_use]
    pub fn padding(mut self, padding: impl IntoHw) -> Self {
        self.padding = padding.into_hw();
        self
    }

    /// Sets the dilation.
    #[must_use]
    pub fn dilation(mut self, dilation: impl IntoHw) -> Self {
        self.dilation = dilation.into_hw();
        self
    }

    /// Sets the number of groups.
    #[must_use]
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets whether there is a bias.
    #[must_use]
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// The same configuration with new channel and group counts (builder style): what
    /// structured pruning needs to rebuild a layer with fewer channels, including a
    /// grouped or depthwise one, whose `groups` must shrink with its channels.
    ///
    /// Nothing is checked here; [`Conv2d::from_arrays`](super::Conv2d::from_arrays) (or
    /// [`Conv2dConfig::validate`]) rejects counts that `groups` does not divide.
    ///
    /// ```
    /// use compress_core::{Layer, Mode};
    /// use compress_nn::{Conv2d, Conv2dConfig};
    /// use ndarray::{ArrayD, Axis};
    /// use rand::{SeedableRng, rngs::StdRng};
    ///
    /// // A depthwise 3x3 over 4 channels; keep channels 0, 2 and 3.
    /// let mut rng = StdRng::seed_from_u64(0);
    /// let dw = Conv2d::<f32>::new(Conv2dConfig::new(4, 4, 3).padding(1).groups(4), &mut rng)
    ///     .unwrap();
    /// let keep = [0, 2, 3];
    /// let w = dw.weight.value().select(Axis(0), &keep);
    /// let b = dw.bias.as_ref().map(|b| b.value().select(Axis(0), &keep));
    /// let cfg = dw.config().with_channels(3, 3, 3);
    /// let mut small = Conv2d::from_arrays(cfg, w, b).unwrap();
    /// assert!(small.config().is_depthwise());
    /// let y = small.forward(&ArrayD::zeros(vec![1, 3, 5, 5]), Mode::Eval).unwrap();
    /// assert_eq!(y.shape(), &[1, 3, 5, 5]);
    /// ```
    #[must_use]
    pub fn with_channels(mut self, in_channels: usize, out_channels: usize, groups: usize) -> Self {
        self.in_channels = in_channels;
        self.out_channels = out_channels;
        self.groups = groups;
        self
    }

    /// Input channels per group.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups.max(1)
    }

    /// Output channels per group.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups.max(1)
    }

    /// Weight shape `[out, in / groups, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_per_group(),
            self.kernel.0,
            self.kernel.1,
        ]
    }

    /// Whether every input channel is its own group (a depthwise convolution, possibly
    /// with a channel multiplier `out / in`).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups > 0
    }

    /// Whether this is a 1x1 convolution with stride 1, no padding and no dilation
    /// (a plain matrix product per image).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == (1, 1) && self.padding == (0, 0)
    }

    /// Checks every field.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the field for a zero channel count, kernel,
    /// stride, dilation or group count, or channels that `groups` does not divide.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("kernel.0", self.kernel.0),
            ("kernel.1", self.kernel.1),
            ("stride.0", self.stride.0),
            ("stride.1", self.stride.1),
            ("dilation.0", self.dilation.0),
            ("dilation.1", self.dilation.1),
            ("groups", self.groups),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(CoreError::config(name, "must be at least 1, got 0"));
            }
        }
        for (name, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
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

    /// Output `(height, width)` for an input of `(h, w)`:
    /// `(h + 2 p - d (k - 1) - 1) / s + 1` per axis.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (field `input`) when the dilated kernel does not fit in
    /// the padded input, or the configuration is invalid.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        self.validate()?;
        let axis = |n: usize, k: usize, s: usize, p: usize, d: usize| {
            let span = d * (k - 1) + 1;
            let padded = n + 2 * p;
            (padded >= span).then(|| (padded - span) / s + 1)
        };
        let (kh, kw) = self.kernel;
        match (
            axis(h, kh, self.stride.0, self.padding.0, self.dilation.0),
            axis(w, kw, self.stride.1, self.padding.1, self.dilation.1),
        ) {
            (Some(oh), Some(ow)) => Ok((oh, ow)),
            _ => Err(CoreError::config(
                "input",
                format!(
                    "{h}x{w} input with padding {:?} is smaller than the dilated {kh}x{kw} \
                     kernel (dilation {:?})",
                    self.padding, self.dilation
                ),
            )),
        }
    }
}
