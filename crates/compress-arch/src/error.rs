//! The error type of compress-arch.

use compress_core::CoreError;

/// Errors from efficient blocks, cost formulas and low-rank factorization.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchError {
    /// A core error (shapes, configuration, non-finite values).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The SVD did not converge (faer reached its iteration limit).
    #[error("SVD of `{path}` ({rows}x{cols}) did not converge")]
    SvdFailed {
        /// Parameter path or argument name.
        path: String,
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
    /// A layer of a [`Sequential`](compress_nn::Sequential) was not of the expected type.
    #[error("layer {index} is a `{found}`, expected a `{expected}`")]
    WrongLayer {
        /// Index in the `Sequential`.
        index: usize,
        /// The type that was required.
        expected: &'static str,
        /// The layer's [`Layer::name`](compress_core::Layer::name).
        found: &'static str,
    },
    /// The layer at a path was not of the expected type.
    #[error("layer `{path}` is a {found}, expected {expected}")]
    WrongLayerAt {
        /// The layer's path in the model.
        path: String,
        /// The type that was required.
        expected: &'static str,
        /// The layer's [`Layer::name`](compress_core::Layer::name).
        found: &'static str,
    },
    /// A layer index past the end of a `Sequential`.
    #[error("layer index {index} is out of range for a model of {len} layers")]
    LayerIndex {
        /// The index asked for.
        index: usize,
        /// Number of layers.
        len: usize,
    },
}

/// `Result` with [`ArchError`] as the default error.
pub type Result<T, E = ArchError> = std::result::Result<T, E>;
