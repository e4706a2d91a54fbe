//! The error type of compress-prune.

use compress_core::CoreError;
use compress_nn::NnError;

/// Errors from pruning, shrinking and sparse storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// A core error (shapes, configuration, non-finite values).
    #[error(transparent)]
    Core(CoreError),
    /// An error from training or evaluation (lottery tickets, fine-tuning).
    #[error(transparent)]
    Nn(NnError),
    /// A target sparsity outside `[0, 1)`.
    #[error("invalid sparsity {value} for `{name}`: must be in [0, 1)")]
    Sparsity {
        /// Which setting (`"sparsity"`, `"fraction"`, ...).
        name: String,
        /// The value given.
        value: f64,
    },
    /// Taylor importance needs a gradient that the parameter does not have.
    #[error("parameter `{path}` has no gradient (run forward + backward before Taylor scoring)")]
    NoGradient {
        /// Parameter path.
        path: String,
    },
    /// An N:M group size that does not divide the grouped dimension.
    #[error("N:M sparsity at `{path}`: group size {m} does not divide {len} (shape {shape:?})")]
    NotDivisible {
        /// Parameter path.
        path: String,
        /// The length of the grouped dimension.
        len: usize,
        /// The group size.
        m: usize,
        /// The parameter's shape.
        shape: Vec<usize>,
    },
    /// A group of a matrix has more non-zeros than its N:M pattern allows.
    #[error("`{path}` is not {n}:{m} sparse: row {row}, group {group} has {nonzeros} non-zeros")]
    NotNmSparse {
        /// Parameter path.
        path: String,
        /// The row.
        row: usize,
        /// The group within the row (inputs `group * m ..`).
        group: usize,
        /// Non-zeros found in the group.
        nonzeros: usize,
        /// Kept values per group.
        n: usize,
        /// Group size.
        m: usize,
    },
    /// The dampened Hessian of a layer is not positive definite.
    #[error(
        "the Hessian of `{path}` is singular even with dampening {damp:e} on its diagonal \
         (Cholesky pivot {pivot}); raise the dampening or add calibration data"
    )]
    SingularHessian {
        /// Layer path.
        path: String,
        /// Dampening added to the diagonal.
        damp: f64,
        /// The first non-positive pivot.
        pivot: usize,
    },
    /// A layer saw no calibration input.
    #[error("layer `{path}` saw no calibration input (empty calibration data?)")]
    NoCalibration {
        /// Layer path.
        path: String,
    },
    /// Running the model on the calibration data failed.
    #[error("calibration run failed: {source}")]
    Calibration {
        /// The caller's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A column index does not fit the chosen CSR index type.
    #[error("CSR column index {index} does not fit in {bits} bits (matrix has {cols} columns)")]
    IndexOverflow {
        /// The first index that does not fit.
        index: usize,
        /// Bits of the index type.
        bits: u32,
        /// Columns of the matrix.
        cols: usize,
    },
    /// A layer that structured shrinking cannot handle at this position.
    #[error("structured shrinking: layer {index} ({layer}) {reason}")]
    Unsupported {
        /// Index of the layer in the `Sequential`.
        index: usize,
        /// The layer's type name.
        layer: String,
        /// Why.
        reason: String,
    },
}

/// A [`CoreError::Technique`] holding a `PruneError` (raised inside a visitor) becomes that
/// `PruneError` again; every other core error is wrapped in [`PruneError::Core`].
impl From<CoreError> for PruneError {
    fn from(e: CoreError) -> Self {
        match e.into_technique::<PruneError>() {
            Ok(p) => p,
            Err(core) => PruneError::Core(core),
        }
    }
}

/// A `PruneError` that travelled through training code inside
/// [`NnError::Core`]`(`[`CoreError::Technique`]`)` comes back as itself.
impl From<NnError> for PruneError {
    fn from(e: NnError) -> Self {
        match e {
            NnError::Core(core) => core.into(),
            other => PruneError::Nn(other),
        }
    }
}

/// `Result` with [`PruneError`] as the default error.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;

/// Checks that `value` is a sparsity in `[0, 1)`.
pub(crate) fn check_sparsity(name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(PruneError::Sparsity {
            name: name.to_string(),
            value,
        })
    }
}
