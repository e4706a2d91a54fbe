//! [`CheckpointError`]: every failure names the file (or option) and the field involved.

use std::path::Path;

/// Errors of checkpoint reading, encoding and writing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file could not be read, written, renamed or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A malformed input file (or an output that would be malformed).
    #[error("{path}: {field}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// The header field, tensor or part at fault (`header`, ``tensor `w` ``, ...).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An option value out of range or an impossible combination of options.
    #[error("invalid `{name}`: {reason}")]
    InvalidOption {
        /// The option (as the command line spells it, e.g. `--bits`).
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor whose values or shape do not fit the requested encoding (non-finite values,
    /// a group size that cannot apply, an output that would not be finite).
    #[error("tensor `{name}` {shape:?}: {reason}")]
    Tensor {
        /// The tensor name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The output cannot be written where asked (it exists, is the input, or is not a
    /// regular file).
    #[error("{path}: {reason}")]
    Output {
        /// The output path.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The process received SIGINT or SIGTERM while writing; temporary files were removed.
    #[error("interrupted by a signal; no output was written")]
    Interrupted,
    /// A core error.
    #[error(transparent)]
    Core(#[from] compress_core::CoreError),
    /// A pruning error.
    #[error(transparent)]
    Prune(#[from] compress_prune::PruneError),
    /// A quantization, clustering or coding error.
    #[error(transparent)]
    Quant(#[from] compress_quant::QuantError),
    /// A factorization error.
    #[error(transparent)]
    Arch(#[from] compress_arch::ArchError),
    /// A transformer model directory error (config, tokenizer, parameters).
    #[error(transparent)]
    Transformer(#[from] compress_transformer::TransformerError),
    /// JSON serialization failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`CheckpointError`] as the default error.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

impl CheckpointError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A format error in `field` of `path`.
    pub fn format(path: &Path, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.display().to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An invalid option.
    pub fn option(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidOption {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// A refused output path.
    pub fn output(path: &Path, reason: impl Into<String>) -> Self {
        Self::Output {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// An error about one tensor.
    pub fn tensor(name: &str, shape: &[usize], reason: impl std::fmt::Display) -> Self {
        Self::Tensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            reason: reason.to_string(),
        }
    }
}
