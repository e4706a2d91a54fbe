//! What to prune, how much, and by which score.

use compress_core::ParamFilter;

use crate::Result;
use crate::error::check_sparsity;

/// Over which set of weights the sparsity target is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Each selected parameter reaches the target on its own.
    PerParam,
    /// Parameters sharing a parent path (`0.weight` and `0.bias` are layer `0`) share
    /// one threshold.
    PerLayer,
    /// One threshold across every selected parameter of the model (Han et al.'s choice
    /// for fine-tuned pruning; layers end up with different sparsities).
    #[default]
    Global,
}

/// How an individual weight's importance is scored (lowest scores are pruned first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Importance {
    /// `|w|` of the effective weight.
    #[default]
    Magnitude,
    /// Uniform random scores from this seed (the baseline every criterion must beat).
    Random {
        /// Seed of the scores.
        seed: u64,
    },
    /// First-order Taylor estimate of the loss change, `|g * w|` (Molchanov et al.); needs
    /// gradients accumulated by a backward pass.
    Taylor,
}

/// An unstructured pruning step: target sparsity, scope, importance and parameter filter.
///
/// ```
/// use compress_core::ParamFilter;
/// use compress_prune::{Importance, PruneConfig, Scope};
/// let cfg = PruneConfig::new(0.9)
///     .scope(Scope::PerLayer)
///     .importance(Importance::Magnitude)
///     .filter(ParamFilter::new().exclude("4.*"));
/// assert_eq!(cfg.sparsity, 0.9);
/// assert!(PruneConfig::new(1.0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PruneConfig {
    /// Fraction of the selected weights that are zero afterwards, in `[0, 1)` (counting
    /// weights pruned before: masks only grow).
    pub sparsity: f64,
    /// Where the threshold applies.
    pub scope: Scope,
    /// The score.
    pub importance: Importance,
    /// Which parameters (default: all weights, no biases or norms).
    pub filter: ParamFilter,
}

impl PruneConfig {
    /// Global magnitude pruning of all weights to `sparsity`.
    pub fn new(sparsity: f64) -> Self {
        Self {
            sparsity,
            scope: Scope::Global,
            importance: Importance::Magnitude,
            filter: ParamFilter::new(),
        }
    }

    /// Sets the scope.
    #[must_use]
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the importance score.
    #[must_use]
    pub fn importance(mut self, importance: Importance) -> Self {
        self.importance = importance;
        self
    }

    /// Sets the parameter filter.
    #[must_use]
    pub fn filter(mut self, filter: ParamFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the sparsity.
    #[must_use]
    pub fn with_sparsity(mut self, sparsity: f64) -> Self {
        self.sparsity = sparsity;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`PruneError::Sparsity`](crate::PruneError::Sparsity) unless `0 <= sparsity < 1`.
    pub fn validate(&self) -> Result<()> {
        check_sparsity("sparsity", self.sparsity)
    }
}
