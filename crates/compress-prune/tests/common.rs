//! Shared helpers.

use compress_core::{Float, Layer, Mode};
use ndarray::ArrayD;

/// Eval-mode outputs.
pub(crate) fn out<F: Float>(m: &mut dyn Layer<F>, x: &ArrayD<F>) -> ArrayD<F> {
    m.forward(x, Mode::Eval).unwrap()
}
