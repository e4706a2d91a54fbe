//! The error type of compress-distill.

use compress_core::CoreError;
use compress_nn::NnError;

/// Errors from the distillation losses and the [`Distiller`](crate::Distiller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistillError {
    /// A core error: shapes, configuration values, non-finite inputs.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error from compress-nn (layers, training, data).
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A class label outside `0..classes`.
    #[error("label {label} at sample {index} is outside 0..{classes}")]
    Label {
        /// Row of the batch.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
}

/// `Result` with [`DistillError`] as the default error.
pub type Result<T, E = DistillError> = std::result::Result<T, E>;

impl From<DistillError> for NnError {
    /// Lets a distillation loss run inside [`compress_nn::Trainer`], whose
    /// [`Loss`](compress_nn::train::Loss) trait reports [`NnError`].
    fn from(e: DistillError) -> Self {
        match e {
            DistillError::Core(c) => NnError::Core(c),
            DistillError::Nn(n) => n,
            DistillError::Label {
                index,
                label,
                classes,
            } => NnError::Label {
                index,
                label,
                classes,
            },
        }
    }
}
