//! The error type of compress-nn.

use compress_core::CoreError;

/// Errors from layers, training, data loading and model files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// A core error (shapes, configuration, non-finite values).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A class label outside `0..classes`.
    #[error("label {label} at sample {index} is outside 0..{classes}")]
    Label {
        /// Sample index.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A data or model file was malformed.
    #[error("bad file `{path}`: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// An I/O error on a named file.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Training diverged (the loss became NaN or infinite).
    #[error("training diverged at epoch {epoch}, step {step}: loss {loss}")]
    Diverged {
        /// Epoch index.
        epoch: usize,
        /// Step within the run.
        step: usize,
        /// The non-finite loss.
        loss: f64,
    },
    /// Training diverged: a parameter holds a NaN or infinite value at the end of an epoch
    /// (checked even when the loss stayed finite, e.g. behind a mask or a saturated unit).
    #[error("training diverged at epoch {epoch}, step {step}: `{path}`[{index}] = {value}")]
    DivergedParam {
        /// Epoch index.
        epoch: usize,
        /// Steps taken so far.
        step: usize,
        /// Parameter path.
        path: String,
        /// Flat index of the first non-finite value in the stored value.
        index: usize,
        /// That value.
        value: f64,
    },
}

/// `Result` with [`NnError`] as the default error.
pub type Result<T, E = NnError> = std::result::Result<T, E>;
