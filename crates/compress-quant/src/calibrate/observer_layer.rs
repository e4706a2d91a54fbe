//! Observing activations while a model runs over calibration data.

use compress_core::{
    Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use compress_nn::Sequential;
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn};

use super::Observer;
use crate::QuantError;

/// Wraps a layer and records the range of its inputs with an [`Observer`] on every forward
/// pass (in both modes). Parameter paths are unchanged (the wrapper adds no segment).
#[derive(Debug)]
pub struct ObserverLayer<F: Float> {
    inner: Box<dyn Layer<F>>,
    /// The observer of this layer's inputs.
    pub observer: Observer,
}

impl<F: Float> ObserverLayer<F> {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Layer<F>>, observer: Observer) -> Self {
        Self { inner, observer }
    }

    /// The wrapped layer.
    pub fn inner(&self) -> &dyn Layer<F> {
        self.inner.as_ref()
    }

    /// Unwraps into the layer and its observer.
    pub fn into_parts(self) -> (Box<dyn Layer<F>>, Observer) {
        (self.inner, self.observer)
    }
}

impl<F: Float> Module<F> for ObserverLayer<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        self.inner.visit(path, v);
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        self.inner.visit_mut(path, v)
    }
}

impl<F: Float> Layer<F> for ObserverLayer<F> {
    fn name(&self) -> &'static str {
        "ObserverLayer"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let v: Vec<f32> = x.iter().map(|a| a.as_f64() as f32).collect();
        self.observer.observe(&v).map_err(|e| match e {
            QuantError::Core(c) => c,
            other => compress_core::CoreError::InvalidState {
                layer: "ObserverLayer".into(),
                reason: other.to_string(),
            },
        })?;
        self.inner.forward(x, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        self.inner.backward(grad)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.inner.cost(input_shape)
    }
}

/// Wraps every layer `i` of `model` for which `select(i, layer)` returns an observer.
/// Returns how many were wrapped. Nested [`Sequential`]s are not entered.
pub fn attach_observers<F: Float>(
    model: &mut Sequential<F>,
    mut select: impl FnMut(usize, &dyn Layer<F>) -> Option<Observer>,
) -> usize {
    let mut count = 0;
    let layers = model.layers_mut();
    for (i, slot) in layers.iter_mut().enumerate() {
        if let Some(obs) = select(i, slot.as_ref()) {
            let placeholder: Box<dyn Layer<F>> = Box::new(Sequential::<F>::new());
            let inner = std::mem::replace(slot, placeholder);
            *slot = Box::new(ObserverLayer::new(inner, obs));
            count += 1;
        }
    }
    count
}

/// Removes the wrappers added by [`attach_observers`], returning `(layer index, observer)`.
pub fn detach_observers<F: Float>(model: &mut Sequential<F>) -> Vec<(usize, Observer)> {
    let mut out = Vec::new();
    let layers = model.layers_mut();
    for (i, slot) in layers.iter_mut().enumerate() {
        if (**slot).as_any().is::<ObserverLayer<F>>() {
            let placeholder: Box<dyn Layer<F>> = Box::new(Sequential::<F>::new());
            let boxed = std::mem::replace(slot, placeholder);
            // Checked with `is` just above.
            if let Ok(wrapper) = (boxed as Box<dyn std::any::Any>).downcast::<ObserverLayer<F>>() {
                let (inner, obs) = wrapper.into_parts();
                *slot = inner;
                out.push((i, obs));
            }
        }
    }
    out
}

/// Runs `model` in eval mode over `x` (first axis = sample) in batches of `batch`, so that
/// attached observers see the calibration data.
///
/// # Errors
///
/// Any layer error (including non-finite activations reported by an observer).
pub fn calibrate<F: Float>(
    model: &mut dyn Layer<F>,
    x: &ArrayRef<F, IxDyn>,
    batch: usize,
) -> Result<()> {
    let n = x.shape().first().copied().unwrap_or(0);
    let batch = batch.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        model.forward(&x.slice_axis(Axis(0), (start..end).into()), Mode::Eval)?;
        start = end;
    }
    Ok(())
}
