//! Flattens every sample to one dimension.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use ndarray::{ArrayD, ArrayRef, IxDyn};

/// `[N, d1, d2, ...] -> [N, d1 * d2 * ...]`.
#[derive(Debug, Clone, Default, Module)]
pub struct Flatten {
    #[module(skip)]
    shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A new flatten layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<F: Float> Layer<F> for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        if x.ndim() == 0 {
            return Err(CoreError::shape("Flatten input", &[0, 0], x.shape()));
        }
        let n = x.shape()[0];
        let rest: usize = x.shape()[1..].iter().product();
        self.shape = (mode == Mode::Train).then(|| x.shape().to_vec());
        Ok(x.to_owned().into_shape_with_order(IxDyn(&[n, rest]))?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let shape = self
            .shape
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Flatten"))?;
        grad.to_owned()
            .into_shape_with_order(IxDyn(shape))
            .map_err(|_| CoreError::shape("Flatten grad", shape, grad.shape()))
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(&[input_shape.iter().product()]))
    }
}
