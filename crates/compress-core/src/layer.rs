//! Layers: modules with forward, backward and an exact cost.

use std::any::Any;

use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::surgery::{CouplingGroup, LayerSlot};
use crate::{Float, Module, Result};

/// Training or inference behaviour (dropout, batch-norm statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Training: dropout active, batch statistics used and running statistics updated,
    /// inputs cached for `backward`.
    Train,
    /// Inference: deterministic, nothing cached.
    #[default]
    Eval,
}

/// What one forward pass of a layer costs, per sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cost {
    /// Output shape per sample (no batch dimension).
    pub output_shape: Vec<usize>,
    /// Parameters (weights, biases and normalisation scales/shifts; not buffers).
    pub params: usize,
    /// Parameters whose effective value is not zero.
    pub nonzero_params: usize,
    /// Multiply-accumulates per sample.
    pub macs: u64,
}

impl Cost {
    /// A cost with no parameters and no MACs that outputs `shape`.
    pub fn passthrough(shape: &[usize]) -> Self {
        Self {
            output_shape: shape.to_vec(),
            ..Self::default()
        }
    }

    /// Adds another layer's cost run after this one (its output shape wins).
    #[must_use]
    pub fn then(self, next: Cost) -> Cost {
        Cost {
            output_shape: next.output_shape,
            params: self.params + next.params,
            nonzero_params: self.nonzero_params + next.nonzero_params,
            macs: self.macs + next.macs,
        }
    }
}

/// Downcasting for trait objects (`Box<dyn Layer<F>>` to a concrete layer).
///
/// Call it on the layer, not the box: `(**boxed).as_any()` or `boxed.as_ref().as_any()`,
/// since `Box<dyn Layer<F>>` is itself `Any`.
pub trait AsAny: Any {
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A differentiable layer: a [`Module`] with forward, backward and cost.
///
/// Contract:
/// - `forward(x, Mode::Train)` caches what `backward` needs; `Mode::Eval` caches nothing.
/// - `backward(grad_out)` adds parameter gradients with
///   [`Param::accumulate_grad`](crate::Param::accumulate_grad) and returns the gradient
///   with respect to the last training-mode input.
/// - Parameters are read through [`Param::effective`](crate::Param::effective), never the
///   stored value, so every [`Parametrization`](crate::Parametrization) applies.
/// - The first axis of every input is the batch.
pub trait Layer<F: Float>: Module<F> + AsAny + Send + Sync + std::fmt::Debug {
    /// A short type name for reports (`"Linear"`, `"Conv2d"`, ...).
    fn name(&self) -> &'static str;

    /// Computes the output for a batch.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`](crate::CoreError::ShapeMismatch) when `x` does not fit.
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>>;

    /// [`Layer::forward`] on an input the caller gives away, so that element-wise layers
    /// can write their output over it (no allocation) or keep it as their training cache
    /// (no copy). Same result and contract as `forward`; containers such as `Sequential`
    /// pass each intermediate output on this way. The default calls `forward`.
    ///
    /// # Errors
    ///
    /// As [`Layer::forward`].
    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.forward(&x, mode)
    }

    /// Back-propagates `grad` (gradient of the loss with respect to the last output).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`](crate::CoreError::InvalidState) without a preceding
    /// training-mode forward, or a shape mismatch.
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>>;

    /// Output shape, parameter counts and MACs for one sample of `input_shape`
    /// (no batch dimension).
    ///
    /// # Errors
    ///
    /// A shape mismatch when the layer cannot take `input_shape`.
    fn cost(&self, input_shape: &[usize]) -> Result<Cost>;

    /// The direct child layers with their path segments, for layer surgery
    /// ([`crate::surgery`]). A child named `n` must visit its parameters under `n.`
    /// (the segment `Module::visit` pushes for it). Leaves return nothing (the default).
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        Vec::new()
    }

    /// The direct child layers, mutably, in the order and with the names of
    /// [`Layer::children`]: [`LayerSlot::Boxed`] for children stored as
    /// `Box<dyn Layer<F>>` (replaceable), [`LayerSlot::Fixed`] for concrete fields.
    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        Vec::new()
    }

    /// The groups of parameter axes that must shrink together for structured pruning,
    /// declared by the layer (paths relative to it) for one sample of `input_shape`.
    /// The default declares none: nothing in the layer can shrink.
    ///
    /// # Errors
    ///
    /// A shape error when the layer cannot take `input_shape`.
    fn coupling_groups(&self, input_shape: &[usize]) -> Result<Vec<CouplingGroup>> {
        let _ = input_shape;
        Ok(Vec::new())
    }
}

impl<F: Float> Layer<F> for Box<dyn Layer<F>> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        (**self).forward(x, mode)
    }
    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        (**self).forward_owned(x, mode)
    }
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        (**self).backward(grad)
    }
    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        (**self).cost(input_shape)
    }
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        (**self).children()
    }
    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        (**self).children_mut()
    }
    fn coupling_groups(&self, input_shape: &[usize]) -> Result<Vec<CouplingGroup>> {
        (**self).coupling_groups(input_shape)
    }
}

impl<F: Float> dyn Layer<F> {
    /// The layer as concrete type `T`, if it is one (`model.query.downcast_ref::<Linear<f32>>()`
    /// on a `Box<dyn Layer<F>>` field looks through the box).
    pub fn downcast_ref<T: Layer<F>>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }

    /// The layer as concrete type `T`, mutably, if it is one.
    pub fn downcast_mut<T: Layer<F>>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut::<T>()
    }

    /// Whether the layer is of concrete type `T`.
    pub fn is<T: Layer<F>>(&self) -> bool {
        self.as_any().is::<T>()
    }
}
