//! Observing activations while a model runs over calibration data.

use compress_core::Walk;
use compress_core::surgery::walk_layers_mut;
use compress_core::{
    Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn};

use super::Observer;

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
        self.observer
            .observe(&v)
            .map_err(|e| e.into_core("ObserverLayer"))?;
        self.inner.forward(x, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        self.inner.backward(grad)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.inner.cost(input_shape)
    }
}

/// Wraps every layer below `model` for which `select(path, layer)` returns an observer
/// (any model that lists its children, see [`compress_core::surgery`]; in a `Sequential`
/// the paths are `"0"`, `"1"`, ...). A wrapped layer is not entered; layers stored as
/// concrete fields cannot be wrapped and are not offered to `select`. Returns how many
/// were wrapped.
pub fn attach_observers<F: Float>(
    model: &mut dyn Layer<F>,
    mut select: impl FnMut(&str, &dyn Layer<F>) -> Option<Observer>,
) -> usize {
    let mut count = 0;
    // The callback never fails: only replaceable slots are mapped.
    let _ = walk_layers_mut(model, &mut |path, slot| {
        if !slot.is_replaceable() {
            return Ok(Walk::Descend);
        }
        let Some(obs) = select(&path.to_string(), slot.layer()) else {
            return Ok(Walk::Descend);
        };
        slot.map(|inner| Box::new(ObserverLayer::new(inner, obs)))?;
        count += 1;
        Ok(Walk::Skip)
    });
    count
}

/// Removes the wrappers added by [`attach_observers`], returning `(layer path, observer)`
/// in walk order.
pub fn detach_observers<F: Float>(model: &mut dyn Layer<F>) -> Vec<(String, Observer)> {
    let mut out = Vec::new();
    let _ = walk_layers_mut(model, &mut |path, slot| {
        if !slot.layer().as_any().is::<ObserverLayer<F>>() {
            return Ok(Walk::Descend);
        }
        let mut observer = None;
        slot.map(|boxed| {
            match (boxed as Box<dyn std::any::Any>).downcast::<ObserverLayer<F>>() {
                Ok(wrapper) => {
                    let (inner, obs) = wrapper.into_parts();
                    observer = Some(obs);
                    inner
                }
                // Checked with `is` just above.
                Err(_) => unreachable!("an ObserverLayer"),
            }
        })?;
        out.extend(observer.map(|o| (path.to_string(), o)));
        Ok(Walk::Skip)
    });
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
