//! One error type for code that calls several techniques.

/// Any error a netcompress crate returns, so one function can `?` calls into several
/// techniques (`prune(..)?` and `quantize_model(..)?` in the same body).
///
/// Each variant keeps the crate's own error with its type, so a caller can still `match` on
/// it; [`std::error::Error::source`] and `Display` are the inner error's.
///
/// ```
/// # #[cfg(all(feature = "prune", feature = "quant"))] {
/// use netcompress::{Error, core::CoreError};
///
/// fn check(sparsity: f64) -> Result<(), Error> {
///     if !(0.0..1.0).contains(&sparsity) {
///         return Err(CoreError::config("sparsity", format!("{sparsity} is outside [0, 1)")).into());
///     }
///     Ok(())
/// }
/// assert!(matches!(check(1.5), Err(Error::Core(CoreError::InvalidConfig { .. }))));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From the core trait layer.
    #[error(transparent)]
    Core(#[from] compress_core::CoreError),
    /// From the reference layers and training (feature `nn`).
    #[cfg(feature = "nn")]
    #[error(transparent)]
    Nn(#[from] compress_nn::NnError),
    /// From pruning (feature `prune`).
    #[cfg(feature = "prune")]
    #[error(transparent)]
    Prune(#[from] compress_prune::PruneError),
    /// From quantization, clustering, binary and ternary weights (feature `quant`).
    #[cfg(feature = "quant")]
    #[error(transparent)]
    Quant(#[from] compress_quant::QuantError),
    /// From distillation (feature `distill`).
    #[cfg(feature = "distill")]
    #[error(transparent)]
    Distill(#[from] compress_distill::DistillError),
    /// From efficient architectures and low-rank factorization (feature `arch`).
    #[cfg(feature = "arch")]
    #[error(transparent)]
    Arch(#[from] compress_arch::ArchError),
    /// From dynamic computation (feature `dynamic`).
    #[cfg(feature = "dynamic")]
    #[error(transparent)]
    Dynamic(#[from] compress_dynamic::DynamicError),
    /// From transformer loading, tokenization and metrics (feature `transformer`).
    #[cfg(feature = "transformer")]
    #[error(transparent)]
    Transformer(#[from] compress_transformer::TransformerError),
    /// From checkpoint reading, encoding and writing (feature `checkpoint`).
    #[cfg(feature = "checkpoint")]
    #[error(transparent)]
    Checkpoint(#[from] compress_checkpoint::CheckpointError),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
