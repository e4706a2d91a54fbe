//! Reference layers. All implement [`compress_core::Layer`].

mod activation;
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

use compress_core::{CoreError, Float};
use ndarray::{ArrayRef, ArrayView2, Ix2, IxDyn};

/// Views `x` as a 2-D batch `[N, features]`, naming `layer` in the error.
pub(crate) fn as_2d<'a, F: Float>(
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

/// The error for `backward` without a cached training-mode `forward`.
pub(crate) fn no_forward(layer: &str) -> CoreError {
    CoreError::InvalidState {
        layer: layer.to_string(),
        reason: "backward called without a preceding forward in Mode::Train".to_string(),
    }
}
