//! The error type of compress-quant.

use compress_core::CoreError;

/// Errors from quantization, calibration, clustering and coding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// A core error (shapes, configuration, non-finite values).
    #[error(transparent)]
    Core(CoreError),
    /// A layer error from compress-nn.
    #[error(transparent)]
    Nn(#[from] compress_nn::NnError),
    /// A bit width the operation does not support.
    #[error("unsupported bit width {bits} for {what}: supported are {supported}")]
    UnsupportedBits {
        /// The requested width.
        bits: u32,
        /// What was being built (`"QTensor"`, `"FakeQuant"`, ...).
        what: &'static str,
        /// The supported widths, e.g. `"2..=8"`.
        supported: &'static str,
    },
    /// A quantization group size that does not divide the grouped dimension.
    #[error(
        "group size {group_size} does not divide dimension {dim} (of length {len}) at `{path}`"
    )]
    GroupSize {
        /// Parameter path or argument name.
        path: String,
        /// The group size.
        group_size: usize,
        /// The grouped dimension.
        dim: usize,
        /// Its length.
        len: usize,
    },
    /// A layer's Hessian that is not positive definite even after dampening (GPTQ).
    #[error(
        "the Hessian of `{path}` is not positive definite after dampening {damp:e} \
         (pivot {pivot}); raise percdamp or calibrate on more data"
    )]
    SingularHessian {
        /// The layer.
        path: String,
        /// The dampening that was added to the diagonal.
        damp: f64,
        /// The first non-positive pivot of the Cholesky factorisation.
        pivot: usize,
    },
    /// A quantized-model file that cannot be read back.
    #[error("bad quantized model file `{path}`: {reason}")]
    Format {
        /// The file (or `"<bytes>"` for in-memory data).
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// [`CoreError::NonFinite`] at `path` for the first value of `x` that is NaN or infinite
/// (index 0 and NaN if there is none).
pub(crate) fn non_finite(x: &[f32], path: &str) -> QuantError {
    let index = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
    CoreError::NonFinite {
        path: path.to_string(),
        index,
        value: x.get(index).map_or(f64::NAN, |v| f64::from(*v)),
    }
    .into()
}

/// `Ok` when every value of `x` is finite (one vectorised pass), else [`non_finite`].
pub(crate) fn check_finite(x: &[f32], path: &str) -> Result<(), QuantError> {
    let (_, _, finite) = crate::kernels::quantize::min_max(x);
    if finite {
        Ok(())
    } else {
        Err(non_finite(x, path))
    }
}

/// A [`CoreError::Technique`] holding a `QuantError` (raised inside a visitor or a layer)
/// becomes that `QuantError` again; every other core error is wrapped in [`QuantError::Core`].
impl From<CoreError> for QuantError {
    fn from(e: CoreError) -> Self {
        match e.into_technique::<QuantError>() {
            Ok(q) => q,
            Err(core) => QuantError::Core(core),
        }
    }
}

impl QuantError {
    /// The same error with `path` as the tensor's name where it names one (non-finite
    /// values, empty tensors, group sizes), for a function that quantized an anonymous slice
    /// on behalf of a named parameter or argument.
    #[must_use]
    pub fn at_path(self, path: &str) -> Self {
        match self {
            QuantError::GroupSize {
                group_size,
                dim,
                len,
                ..
            } => QuantError::GroupSize {
                path: path.to_string(),
                group_size,
                dim,
                len,
            },
            QuantError::Core(CoreError::NonFinite { index, value, .. }) => CoreError::NonFinite {
                path: path.to_string(),
                index,
                value,
            }
            .into(),
            QuantError::Core(CoreError::Empty { shape, .. }) => CoreError::Empty {
                path: path.to_string(),
                shape,
            }
            .into(),
            other => other,
        }
    }

    /// This error as a [`CoreError`] raised at `path`: a core error as it is, any other kept
    /// with its type in [`CoreError::Technique`] (so it can pass through a visitor).
    pub fn into_core(self, path: &str) -> CoreError {
        match self {
            QuantError::Core(c) => c,
            other => CoreError::technique(path, other),
        }
    }
}
