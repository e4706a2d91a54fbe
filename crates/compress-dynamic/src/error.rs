//! The error type of compress-dynamic.

use compress_core::CoreError;
use compress_nn::NnError;

/// Errors from early-exit networks, budgets, slimmable layers and calibration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DynamicError {
    /// A core error (shapes, configuration, non-finite values).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error from the reference layers, losses or data sets.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// A width multiplier that the layer or network was not configured for.
    #[error("width {width} is not configured in `{layer}` (configured: {available:?})")]
    UnknownWidth {
        /// The layer or network.
        layer: String,
        /// The requested width multiplier.
        width: f64,
        /// The configured widths.
        available: Vec<f64>,
    },
    /// No exit (or width) satisfies a per-sample MAC budget.
    #[error("budget of {cap} MACs per sample is below the cheapest exit ({cheapest} MACs)")]
    BudgetTooSmall {
        /// The requested cap.
        cap: f64,
        /// MACs of the cheapest way to produce a prediction.
        cheapest: u64,
    },
    /// Calibration found no thresholds that meet the target.
    #[error("calibration cannot meet {target}: {reason}")]
    Infeasible {
        /// The target, spelled out.
        target: String,
        /// Why (best value reached).
        reason: String,
    },
}

impl DynamicError {
    /// Shorthand for a [`CoreError::InvalidConfig`].
    pub(crate) fn config(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Core(CoreError::config(name, reason))
    }

    /// This error as the [`CoreError`] a `Layer` method of `layer` returns: a core error as
    /// it is, any other as [`CoreError::InvalidState`] with this error's message.
    pub(crate) fn into_core(self, layer: &str) -> CoreError {
        match self {
            Self::Core(c) => c,
            other => CoreError::InvalidState {
                layer: layer.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// `Result` with [`DynamicError`] as the default error.
pub type Result<T, E = DynamicError> = std::result::Result<T, E>;
