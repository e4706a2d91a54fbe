//! Parametrizations: the one mechanism behind every training-time technique.

use std::fmt;

use ndarray::ArrayD;

use crate::{AsAny, Float, Param, Result};

/// Maps a parameter's stored value to the effective value used in forward, and the gradient
/// of the effective value back to the stored one (PyTorch's `parametrize`).
///
/// A pruning mask (`w * m`, gradient `g * m`), fake quantization with a straight-through
/// estimator, BinaryConnect (`sign(w)` forward, clipped STE backward) and trained clustering
/// (centroids forward, gradients summed per cluster) are all parametrizations. Layers never
/// know which are attached: they call [`Param::effective`](crate::Param::effective) in forward
/// and [`Param::accumulate_grad`](crate::Param::accumulate_grad) in backward.
///
/// Several may be stacked on one parameter; they apply in the order they were pushed
/// (the first pushed sees the stored value, the last produces the effective value) and
/// gradients flow back through them in reverse.
///
/// Implementors derive (or implement) `Clone`; cloning into a box and downcasting
/// ([`AsAny`]) come for free through blanket impls.
pub trait Parametrization<F: Float>:
    fmt::Debug + Send + Sync + AsAny + CloneParametrization<F> + 'static
{
    /// A short name (`"mask"`, `"fake_quant"`, ...) used in reports and for lookups.
    fn name(&self) -> &'static str;

    /// Checks that this parametrization fits a parameter of `shape` (called when attached).
    ///
    /// # Errors
    ///
    /// A [`CoreError`](crate::CoreError) describing the mismatch.
    fn validate(&self, shape: &[usize]) -> Result<()> {
        let _ = shape;
        Ok(())
    }

    /// Input value -> output value: a function of `input` and of this parametrization's own
    /// state only, state that changes through `&mut self` (never interior mutability), so
    /// that [`Param::version`](crate::Param::version) tracks every change of the effective
    /// value.
    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F>;

    /// Gradient with respect to the output -> gradient with respect to the input.
    ///
    /// `input` is the value this parametrization saw in forward.
    fn backward(&self, input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F>;

    /// Adds the gradient of this parametrization's own trainable tensors (see
    /// [`Parametrization::params`]) with [`Param::accumulate_grad`] on them. Called by
    /// [`Param::accumulate_grad`] before `backward`.
    fn accumulate_own_grad(&mut self, input: &ArrayD<F>, grad_output: &ArrayD<F>) {
        let _ = (input, grad_output);
    }

    /// This parametrization's own trainable tensors by name (LSQ scales, cluster
    /// centroids). They are nested parameters of the parameter it is attached to, visited
    /// at `<param path>.<Parametrization::name>.<tensor name>` (`0.weight.fake_quant.scale`)
    /// with kind [`ParamKind::Parametrization`](crate::ParamKind::Parametrization), so every
    /// optimizer, statistic and checkpoint handles them like any parameter.
    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        Vec::new()
    }

    /// Mutable access to the tensors of [`Parametrization::params`], same order and names.
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        Vec::new()
    }

    /// Called after each optimizer update of the parameter (e.g. to advance the step of a
    /// stochastic binarization). Trainable state is not stepped here: it is a nested
    /// [`Param`] the optimizer updates.
    fn after_update(&mut self) {}

    /// Projects the stored value after an optimizer step (e.g. BinaryConnect clips the
    /// real-valued shadow weights to `[-1, 1]`; a mask may re-zero pruned entries).
    fn project(&self, stored: &mut ArrayD<F>) {
        let _ = stored;
    }
}

impl<F: Float> Clone for Box<dyn Parametrization<F>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Boxed cloning of parametrizations (implemented for every `Parametrization + Clone`).
pub trait CloneParametrization<F: Float> {
    /// A boxed clone (parametrizations are cloned with their parameter).
    fn clone_box(&self) -> Box<dyn Parametrization<F>>;
}

impl<F: Float, T: Parametrization<F> + Clone> CloneParametrization<F> for T {
    fn clone_box(&self) -> Box<dyn Parametrization<F>> {
        Box::new(self.clone())
    }
}
