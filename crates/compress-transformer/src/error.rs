//! The error type of compress-transformer.

use compress_core::CoreError;

/// Errors from loading, tokenizing and running transformer models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformerError {
    /// A core error (shapes, configuration, token ids outside the vocabulary).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An I/O error on a named file.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file that could not be parsed (JSON, safetensors, tokenizer).
    #[error("bad file `{path}`: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A model configuration this crate does not support.
    #[error("unsupported config: `{key}` {reason}")]
    Unsupported {
        /// The configuration key.
        key: String,
        /// Its value and what is supported.
        reason: String,
    },
    /// A checkpoint tensor that the model has no parameter for.
    #[error("unknown tensor `{key}` in `{path}`")]
    UnknownKey {
        /// The tensor name.
        key: String,
        /// The file it is in.
        path: String,
    },
    /// A model parameter that the checkpoint does not have.
    #[error("missing tensor `{key}` in `{path}`")]
    MissingKey {
        /// The parameter path.
        key: String,
        /// The checkpoint (file or directory).
        path: String,
    },
    /// A checkpoint tensor whose shape or dtype does not fit its parameter.
    #[error("tensor `{key}`: expected {expected}, got {actual}")]
    Tensor {
        /// The tensor name.
        key: String,
        /// The expected shape or dtype.
        expected: String,
        /// What the file holds.
        actual: String,
    },
    /// A text that cannot be embedded.
    #[error("text {index} is empty")]
    EmptyText {
        /// Its index in the input.
        index: usize,
    },
    /// An input list that must not be empty.
    #[error("no input: `{what}` is empty")]
    NoInput {
        /// The argument.
        what: String,
    },
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// `Result` with [`TransformerError`].
pub type Result<T, E = TransformerError> = std::result::Result<T, E>;

impl From<ndarray::ShapeError> for TransformerError {
    fn from(e: ndarray::ShapeError) -> Self {
        Self::Core(CoreError::Shape(e))
    }
}

impl TransformerError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn format(path: &std::path::Path, reason: impl ToString) -> Self {
        Self::Format {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}
