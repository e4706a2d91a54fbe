//! Reference layers. All implement [`compress_core::Layer`].

mod activation;
mod augment;
mod conv;
mod coupling;
mod dropout;
mod flatten;
mod linear;
mod norm;
mod pool;
mod sequential;
pub mod transformer;

pub use activation::{HardSwish, ReLU, ReLU6, Sigmoid, Tanh};
pub use augment::RandomShift;
pub use conv::{Conv2d, Conv2dConfig, ConvGeometry, IntoHw, im2col, im2col_nhwc};
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use linear::Linear;
pub use norm::{BatchNorm1d, BatchNorm2d};
pub use pool::{AvgPool2d, GlobalAvgPool, MaxPool2d};
pub use sequential::Sequential;
pub use transformer::{
    Embedding, Gelu, GeluKind, LayerNorm, MultiHeadAttention, PaddingMask, Pooling, PoolingKind,
    TransformerConfig, TransformerEncoder, TransformerEncoderLayer,
};

use compress_core::{CoreError, Float, Layer, Mode};
use ndarray::{ArrayD, ArrayRef, ArrayView2, Ix2, IxDyn};

/// Runs `x` through `layers` in order, each taking the previous output by value
/// ([`Layer::forward_owned`]): the forward pass of a chain of layers.
pub(crate) fn forward_chain<'a, F: Float, L: Layer<F> + ?Sized + 'a>(
    layers: impl IntoIterator<Item = &'a mut L>,
    x: ArrayD<F>,
    mode: Mode,
) -> Result<ArrayD<F>, CoreError> {
    let mut h = x;
    for l in layers {
        h = l.forward_owned(h, mode)?;
    }
    Ok(h)
}

/// Back-propagates `grad` through a chain of `layers` (given first to last; walked last to
/// first).
pub(crate) fn backward_chain<'a, F: Float, L: Layer<F> + ?Sized + 'a>(
    layers: impl IntoIterator<Item = &'a mut L, IntoIter: DoubleEndedIterator>,
    grad: &ArrayRef<F, IxDyn>,
) -> Result<ArrayD<F>, CoreError> {
    let mut g = grad.to_owned();
    for l in layers.into_iter().rev() {
        g = l.backward(&g)?;
    }
    Ok(g)
}

/// Batch size and the per-sample shape of a batched input shape (`(0, [])` for a scalar).
pub(crate) fn split_batch(shape: &[usize]) -> (usize, &[usize]) {
    match shape.split_first() {
        Some((n, rest)) => (*n, rest),
        None => (0, shape),
    }
}

/// Views `x` as a 2-D batch `[N, features]`: the input check of a dense layer.
///
/// ```
/// use compress_nn::layers::as_2d;
/// use ndarray::ArrayD;
/// let x = ArrayD::<f32>::zeros(vec![3, 4]);
/// assert_eq!(as_2d(&x, "Linear", 4).unwrap().dim(), (3, 4));
/// assert!(as_2d(&x, "Linear", 5).is_err());
/// ```
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] for `"{layer} input"`, expecting `[N, features]`, when `x`
/// is not 2-D or its rows do not have `features` elements.
pub fn as_2d<'a, F: Float>(
    x: &'a ArrayRef<F, IxDyn>,
    layer: &str,
    features: usize,
) -> Result<ArrayView2<'a, F>, CoreError> {
    if x.ndim() != 2 || x.shape()[1] != features {
        let n = x.shape().first().copied().unwrap_or(0);
        return Err(CoreError::shape(
            format!("{layer} input"),
            &[n, features],
            x.shape(),
        ));
    }
    Ok(x.view().into_dimensionality::<Ix2>()?)
}
