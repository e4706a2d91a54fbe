//! The CLI's error type: every failure becomes one readable line and a non-zero exit.

/// Anything that can go wrong in a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// Bad command-line usage or an impossible option combination.
    #[error("{0}")]
    Usage(String),
    /// A checkpoint reading, encoding or writing error.
    #[error(transparent)]
    Checkpoint(#[from] compress_checkpoint::CheckpointError),
    /// A core error.
    #[error(transparent)]
    Core(#[from] compress_core::CoreError),
    /// A layer, training or data error.
    #[error(transparent)]
    Nn(#[from] compress_nn::NnError),
    /// A pruning error.
    #[error(transparent)]
    Prune(#[from] compress_prune::PruneError),
    /// A quantization, clustering or coding error.
    #[error(transparent)]
    Quant(#[from] compress_quant::QuantError),
    /// A distillation error.
    #[error(transparent)]
    Distill(#[from] compress_distill::DistillError),
    /// An efficient-architecture or factorization error.
    #[error(transparent)]
    Arch(#[from] compress_arch::ArchError),
    /// A dynamic-computation error.
    #[error(transparent)]
    Dynamic(#[from] compress_dynamic::DynamicError),
    /// A transformer loading, tokenizing or metrics error.
    #[error(transparent)]
    Transformer(#[from] compress_transformer::TransformerError),
    /// JSON output failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`CliError`].
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;
