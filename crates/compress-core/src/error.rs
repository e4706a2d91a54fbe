//! The error type shared by every compression crate.

/// Errors shared by every compression crate.
///
/// Each variant carries the parameter path (where there is one) and the values involved, so a
/// message like ``shape mismatch at `encoder.0.weight`: expected [64, 32], got [32, 64]`` can be
/// acted on without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A parameter or array did not have the shape an operation required.
    #[error("shape mismatch at `{path}`: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Parameter path or argument name.
        path: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was found.
        actual: Vec<usize>,
    },
    /// A configuration value was out of range.
    #[error("invalid `{name}`: {reason}")]
    InvalidConfig {
        /// Name of the configuration field.
        name: String,
        /// What was wrong with it, including the value.
        reason: String,
    },
    /// A tensor held NaN or infinity where finite values are required.
    #[error("non-finite value {value} at `{path}` (flat index {index})")]
    NonFinite {
        /// Parameter path or argument name.
        path: String,
        /// Flat (row-major) index of the first offending element.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A tensor was empty where at least one element is required.
    #[error("empty tensor at `{path}` (shape {shape:?})")]
    Empty {
        /// Parameter path or argument name.
        path: String,
        /// The shape, which has a zero-sized dimension.
        shape: Vec<usize>,
    },
    /// A named parameter was expected but not found.
    #[error("missing parameter `{path}`")]
    MissingParam {
        /// The path that was looked for.
        path: String,
    },
    /// A layer was used out of order (e.g. `backward` before `forward`).
    #[error("invalid state in `{layer}`: {reason}")]
    InvalidState {
        /// The layer type or path.
        layer: String,
        /// What went wrong.
        reason: String,
    },
    /// A technique's own error (a `PruneError`, a `QuantError`, ...) raised inside a
    /// visitor or a layer, kept with its type: [`CoreError::technique_error`] downcasts it,
    /// and each technique crate's `From<CoreError>` unwraps its own errors back.
    #[error("at `{path}`: {source}")]
    Technique {
        /// Parameter or layer path where it happened.
        path: String,
        /// The technique's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An ndarray reshape or broadcast failed.
    #[error(transparent)]
    Shape(#[from] ndarray::ShapeError),
}

impl CoreError {
    /// Builds an [`CoreError::InvalidConfig`] from a field name and a reason.
    pub fn config(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Wraps a technique's error raised at `path` so that it can pass through a visitor.
    /// A [`CoreError`] is returned as it is (it needs no wrapping).
    pub fn technique<E: std::error::Error + Send + Sync + 'static>(
        path: impl Into<String>,
        error: E,
    ) -> Self {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
        match boxed.downcast::<CoreError>() {
            Ok(core) => *core,
            Err(source) => Self::Technique {
                path: path.into(),
                source,
            },
        }
    }

    /// The technique error of type `E` inside a [`CoreError::Technique`], if that is what
    /// this is.
    pub fn technique_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Self::Technique { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// Takes the technique error of type `E` out of a [`CoreError::Technique`]; any other
    /// error is handed back unchanged.
    ///
    /// # Errors
    ///
    /// `self` when it does not hold an `E`.
    pub fn into_technique<E: std::error::Error + 'static>(self) -> Result<E, Self> {
        match self {
            Self::Technique { path, source } => match source.downcast::<E>() {
                Ok(e) => Ok(*e),
                Err(source) => Err(Self::Technique { path, source }),
            },
            other => Err(other),
        }
    }

    /// The [`CoreError::InvalidState`] of a `backward` without a cached training-mode
    /// `forward` in `layer`.
    pub fn no_forward(layer: impl Into<String>) -> Self {
        Self::InvalidState {
            layer: layer.into(),
            reason: "backward called without a preceding forward in Mode::Train".into(),
        }
    }

    /// Builds a [`CoreError::ShapeMismatch`].
    pub fn shape(path: impl Into<String>, expected: &[usize], actual: &[usize]) -> Self {
        Self::ShapeMismatch {
            path: path.into(),
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        }
    }
}

/// `Result` with [`CoreError`] as the default error.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
