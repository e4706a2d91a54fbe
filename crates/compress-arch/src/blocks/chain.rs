//! Named chains of layers and the small helpers the blocks share.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use compress_nn::{BatchNorm2d, Conv2d, Conv2dConfig, ReLU, ReLU6};
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

/// Layers applied in order, each with a name that becomes its parameter-path segment
/// (`depthwise.weight`, `bn1.running_mean`, ...).
#[derive(Debug, Default)]
pub struct Chain<F: Float> {
    layers: Vec<(String, Box<dyn Layer<F>>)>,
}

impl<F: Float> Chain<F> {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self { layers: Vec::new() }
    }

    /// Appends a named layer.
    pub fn push(&mut self, name: impl Into<String>, layer: impl Layer<F> + 'static) {
        self.layers.push((name.into(), Box::new(layer)));
    }

    /// Appends an already boxed named layer.
    pub fn push_boxed(&mut self, name: impl Into<String>, layer: Box<dyn Layer<F>>) {
        self.layers.push((name.into(), layer));
    }

    /// Appends the activation `act` (nothing for [`Act::None`]) under `name`.
    pub fn push_act(&mut self, name: impl Into<String>, act: Act) {
        match act {
            Act::None => {}
            Act::ReLU => self.push(name, ReLU::new()),
            Act::ReLU6 => self.push(name, ReLU6::new()),
        }
    }

    /// Appends `conv` named `conv_name`, then optionally a batch norm named `bn_name`
    /// and the activation named `act_name`.
    ///
    /// # Errors
    ///
    /// The convolution's configuration errors.
    pub fn push_conv<R: Rng + ?Sized>(
        &mut self,
        names: [&str; 3],
        config: Conv2dConfig,
        bn: bool,
        act: Act,
        rng: &mut R,
    ) -> Result<()> {
        let out = config.out_channels;
        self.push(names[0], Conv2d::new(config, rng)?);
        if bn {
            self.push(names[1], BatchNorm2d::new(out));
        }
        self.push_act(names[2], act);
        Ok(())
    }

    /// The named layers.
    pub fn layers(&self) -> &[(String, Box<dyn Layer<F>>)] {
        &self.layers
    }

    /// The layer called `name` as concrete type `T`.
    pub fn get<T: Layer<F>>(&self, name: &str) -> Option<&T> {
        self.layers
            .iter()
            .find(|(n, _)| n == name)?
            .1
            .as_ref()
            .as_any()
            .downcast_ref::<T>()
    }

    /// Per-layer `(name, cost)` for one sample of `input_shape`.
    ///
    /// # Errors
    ///
    /// The first layer that cannot take its input shape.
    pub fn layer_costs(&self, input_shape: &[usize]) -> Result<Vec<(String, Cost)>> {
        let mut shape = input_shape.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for (n, l) in &self.layers {
            let c = l.cost(&shape)?;
            shape.clone_from(&c.output_shape);
            out.push((n.clone(), c));
        }
        Ok(out)
    }
}

impl<F: Float> Module<F> for Chain<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        for (n, l) in &self.layers {
            path.scoped(n, |p| l.visit(p, v));
        }
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        for (n, l) in &mut self.layers {
            path.scoped(n, |p| l.visit_mut(p, v))?;
        }
        Ok(())
    }
}

impl<F: Float> Layer<F> for Chain<F> {
    fn name(&self) -> &'static str {
        "Chain"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let mut it = self.layers.iter_mut();
        let Some((_, first)) = it.next() else {
            return Ok(x.to_owned());
        };
        let mut h = first.forward(x, mode)?;
        for (_, l) in it {
            h = l.forward(&h, mode)?;
        }
        Ok(h)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mut g = grad.to_owned();
        for (_, l) in self.layers.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(self
            .layer_costs(input_shape)?
            .into_iter()
            .map(|(_, c)| c)
            .fold(Cost::passthrough(input_shape), Cost::then))
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

/// The error for `backward` without a training-mode `forward`.
pub(crate) fn no_forward(layer: &str) -> CoreError {
    CoreError::InvalidState {
        layer: layer.to_string(),
        reason: "backward called without a preceding forward in Mode::Train".to_string(),
    }
}
