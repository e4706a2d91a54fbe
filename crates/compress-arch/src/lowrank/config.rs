//! How to choose the rank and which SVD to run.

use compress_core::CoreError;

/// How the rank `r` of a factorization `W [m, n] ~ U_r S_r V_r^T` is chosen.
///
/// Every rule clamps `r` to `1..=min(m, n)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RankRule {
    /// The given rank.
    Fixed(usize),
    /// The smallest `r` whose singular values keep at least this fraction of the energy
    /// `sum s_i^2 = ||W||_F^2`, in `(0, 1]`.
    Energy(f64),
    /// The largest `r` whose two factors hold at most this many weights:
    /// `r * (m + n) <= params` (biases not counted).
    ParamsBudget(usize),
    /// The largest `r` whose two factors hold at most this fraction of the original weights:
    /// `r * (m + n) <= fraction * m * n`, `fraction` in `(0, 1]`.
    ParamsFraction(f64),
}

impl RankRule {
    /// Checks the rule's value.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero fixed rank or budget, or a fraction outside
    /// `(0, 1]` (NaN included).
    pub fn validate(&self) -> Result<(), CoreError> {
        match *self {
            RankRule::Fixed(0) => Err(CoreError::config("rank", "must be at least 1, got 0")),
            RankRule::ParamsBudget(0) => Err(CoreError::config(
                "params_budget",
                "must be at least 1, got 0",
            )),
            RankRule::Energy(f) if !(f > 0.0 && f <= 1.0) => Err(CoreError::config(
                "energy",
                format!("must be in (0, 1], got {f}"),
            )),
            RankRule::ParamsFraction(f) if !(f > 0.0 && f <= 1.0) => Err(CoreError::config(
                "params_fraction",
                format!("must be in (0, 1], got {f}"),
            )),
            _ => Ok(()),
        }
    }

    /// The rank this rule gives for an `m x n` matrix when it does not depend on the
    /// singular values (`None` for [`RankRule::Energy`]), clamped to `1..=min(m, n)`.
    pub fn static_rank(&self, m: usize, n: usize) -> Option<usize> {
        let full = m.min(n).max(1);
        let r = match *self {
            RankRule::Fixed(r) => r,
            RankRule::Energy(_) => return None,
            RankRule::ParamsBudget(p) => p / (m + n).max(1),
            RankRule::ParamsFraction(f) => (f * (m * n) as f64 / (m + n).max(1) as f64) as usize,
        };
        Some(r.clamp(1, full))
    }

    /// The rank for singular values `s` (descending) of a matrix with energy
    /// `total = ||W||_F^2`, clamped to `1..=min(m, n)`.
    ///
    /// For [`RankRule::Energy`], when `s` (a partial spectrum) does not reach the fraction,
    /// `s.len() + 1` is returned (clamped), meaning "more than these".
    pub fn rank_for(&self, s: &[f64], total: f64, m: usize, n: usize) -> usize {
        let full = m.min(n).max(1);
        match *self {
            RankRule::Energy(f) => {
                let target = f * total;
                let mut acc = 0.0;
                for (i, si) in s.iter().enumerate() {
                    acc += si * si;
                    // A relative tolerance so that `Energy(1.0)` is reached despite rounding.
                    if acc >= target * (1.0 - 1e-12) {
                        return (i + 1).clamp(1, full);
                    }
                }
                (s.len() + 1).clamp(1, full)
            }
            _ => self.static_rank(m, n).unwrap_or(full),
        }
    }
}

/// Which SVD computes the factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvdMethod {
    /// The full thin SVD (faer): optimal, `O(m n min(m, n))`.
    Exact,
    /// Randomized range finder with power iterations (Halko, Martinsson and Tropp 2011):
    /// `O(m n (r + oversample) (2 power_iters + 2))`.
    Randomized {
        /// Extra sketch columns beyond the rank (10 is the usual choice).
        oversample: usize,
        /// Power (subspace) iterations, each re-orthonormalized by a QR (2 is usually enough).
        power_iters: usize,
        /// Seed of the Gaussian test matrix.
        seed: u64,
    },
    /// [`SvdMethod::Exact`] when `min(m, n) <= 256` or the sketch would cover more than
    /// half of `min(m, n)`, [`SvdMethod::Randomized`] otherwise with oversample
    /// `max(10, r / 2)`, 3 power iterations and seed 0 (within 0.01% of the optimal error
    /// on a 1024x1024 matrix with the slowly decaying spectrum `s_i = 1 / (i + 1)` at rank 64).
    #[default]
    Auto,
}

/// Configuration of a low-rank factorization.
///
/// Defaults ([`LowRankConfig::new`]): [`SvdMethod::Auto`], and layers whose factorization
/// would not save parameters are left alone (`only_if_smaller = true`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowRankConfig {
    /// How the rank is chosen.
    pub rule: RankRule,
    /// Which SVD to run.
    pub method: SvdMethod,
    /// In model-level transforms, skip a layer when `r * (m + n) >= m * n`.
    pub only_if_smaller: bool,
}

impl LowRankConfig {
    /// A configuration with `rule` and the defaults above.
    pub fn new(rule: RankRule) -> Self {
        Self {
            rule,
            method: SvdMethod::Auto,
            only_if_smaller: true,
        }
    }

    /// Sets the SVD method.
    #[must_use]
    pub fn method(mut self, method: SvdMethod) -> Self {
        self.method = method;
        self
    }

    /// Sets whether layers that would not shrink are skipped.
    #[must_use]
    pub fn only_if_smaller(mut self, yes: bool) -> Self {
        self.only_if_smaller = yes;
        self
    }
}
