//! The helpers the blocks share: building their named [`Sequential`] bodies, channel
//! slicing and concatenation, cost arithmetic.

use compress_core::{CoreError, Cost, Float, Result};
use compress_nn::{BatchNorm2d, Conv2d, Conv2dConfig, ReLU, ReLU6, Sequential};
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn, Slice, concatenate};
use rand::Rng;

/// The activation after a convolution in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    /// No activation (a linear bottleneck).
    None,
    /// `max(0, x)`.
    #[default]
    ReLU,
    /// `min(max(0, x), 6)` (MobileNetV2).
    ReLU6,
}

/// Block-building helpers on compress-nn's named [`Sequential`] (the chain every block's
/// body is: parameter paths such as `depthwise.weight`, `bn1.running_mean`).
pub trait SequentialExt<F: Float> {
    /// Appends the activation `act` (nothing for [`Act::None`]) under `name`.
    ///
    /// # Errors
    ///
    /// As [`Sequential::push_named`] (a bad or taken name).
    fn push_act(&mut self, name: impl Into<String>, act: Act) -> Result<()>;

    /// Appends `conv` named `names[0]`, then optionally a batch norm named `names[1]` and
    /// the activation named `names[2]`.
    ///
    /// # Errors
    ///
    /// The convolution's configuration errors; a bad or taken name.
    fn push_conv<R: Rng + ?Sized>(
        &mut self,
        names: [&str; 3],
        config: Conv2dConfig,
        bn: bool,
        act: Act,
        rng: &mut R,
    ) -> Result<()>;
}

impl<F: Float> SequentialExt<F> for Sequential<F> {
    fn push_act(&mut self, name: impl Into<String>, act: Act) -> Result<()> {
        match act {
            Act::None => Ok(()),
            Act::ReLU => self.push_named(name, ReLU::new()),
            Act::ReLU6 => self.push_named(name, ReLU6::new()),
        }
    }

    fn push_conv<R: Rng + ?Sized>(
        &mut self,
        names: [&str; 3],
        config: Conv2dConfig,
        bn: bool,
        act: Act,
        rng: &mut R,
    ) -> Result<()> {
        let out = config.out_channels;
        self.push_named(names[0], Conv2d::new(config, rng)?)?;
        if bn {
            self.push_named(names[1], BatchNorm2d::new(out))?;
        }
        self.push_act(names[2], act)
    }
}

/// Checks that every named size of a configuration is at least 1.
pub(crate) fn check_nonzero(fields: &[(&str, usize)]) -> Result<()> {
    match fields.iter().find(|&&(_, v)| v == 0) {
        Some(&(name, _)) => Err(CoreError::config(name, "must be at least 1, got 0")),
        None => Ok(()),
    }
}

/// Checks that every named kernel size is odd; `why` follows "must be odd" in the message.
pub(crate) fn check_odd(fields: &[(&str, usize)], why: &str) -> Result<()> {
    match fields.iter().find(|&&(_, v)| v.is_multiple_of(2)) {
        Some(&(name, v)) => Err(CoreError::config(
            name,
            format!("must be odd{why}, got {v}"),
        )),
        None => Ok(()),
    }
}

/// Concatenates NCHW (or `[N, C]`) arrays along the channel axis, in standard layout
/// (`ndarray::concatenate` puts the joined axis outermost in memory, which layers that
/// cache their input as a flat slice do not accept).
pub(crate) fn concat_channels<F: Float>(parts: &[&ArrayRef<F, IxDyn>]) -> Result<ArrayD<F>> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let joined = concatenate(Axis(1), &views)?;
    Ok(standard(joined))
}

/// `x` in standard (row-major) layout, copying only when it is not.
pub(crate) fn standard<F: Float>(x: ArrayD<F>) -> ArrayD<F> {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// Channels `[start, end)` of an NCHW (or `[N, C]`) array, in standard layout.
pub(crate) fn channels<F: Float>(x: &ArrayRef<F, IxDyn>, start: usize, end: usize) -> ArrayD<F> {
    x.slice_axis(Axis(1), Slice::from(start..end))
        .as_standard_layout()
        .into_owned()
}

/// Combines the per-sample costs of parallel branches whose outputs are concatenated along
/// the channel axis (parameters and MACs add; channels add).
pub(crate) fn concat_costs(parts: &[Cost]) -> Cost {
    let mut out = Cost::default();
    for (i, c) in parts.iter().enumerate() {
        if i == 0 {
            out.output_shape.clone_from(&c.output_shape);
        } else if let (Some(a), Some(b)) = (out.output_shape.first_mut(), c.output_shape.first()) {
            *a += b;
        }
        out.params += c.params;
        out.nonzero_params += c.nonzero_params;
        out.macs += c.macs;
    }
    out
}

/// Adds the costs of parallel branches whose outputs are summed (the output shape is the
/// first branch's).
pub(crate) fn sum_costs(a: Cost, b: &Cost) -> Cost {
    Cost {
        output_shape: a.output_shape,
        params: a.params + b.params,
        nonzero_params: a.nonzero_params + b.nonzero_params,
        macs: a.macs + b.macs,
    }
}

/// Checks that an NCHW input has `channels` channels.
pub(crate) fn check_channels(layer: &str, shape: &[usize], channels: usize) -> Result<()> {
    if shape.len() != 4 || shape[1] != channels {
        let mut expected = shape.to_vec();
        if expected.len() >= 2 {
            expected[1] = channels;
        } else {
            expected = vec![shape.first().copied().unwrap_or(0), channels, 0, 0];
        }
        return Err(CoreError::shape(format!("{layer} input"), &expected, shape));
    }
    Ok(())
}
