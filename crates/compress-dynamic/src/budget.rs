//! Dynamic depth by budget: the deepest exit that fits a MAC cap per sample, or a battery
//! level mapped to one.

use compress_core::{CoreError, Float};
use ndarray::ArrayD;

use crate::profile::{ExitCosts, Thresholds};
use crate::{DynamicError, DynamicOutput, EarlyExitNet, ExitRule, Result};

/// A compute budget for one sample (or a whole batch).
///
/// ```
/// use compress_dynamic::{Budget, ExitCosts};
/// # fn main() -> compress_dynamic::Result<()> {
/// let costs = ExitCosts { shared: vec![100, 300, 600], own: vec![10, 10, 10] };
/// let forced: Vec<u64> = (0..3).map(|k| costs.forced(k)).collect(); // 110, 310, 610
/// assert_eq!(Budget::Macs(400.0).deepest_exit(&costs, &[false, false, true])?, 1);
/// // Battery 0 maps to the cheapest exit, 1 to the full network, linearly between.
/// assert_eq!(Budget::Battery(0.0).cap(&forced)?, 110.0);
/// assert_eq!(Budget::Battery(1.0).cap(&forced)?, 610.0);
/// assert_eq!(Budget::Battery(0.5).deepest_exit(&costs, &[false, false, true])?, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// At most this many MACs per sample.
    Macs(f64),
    /// A battery level in `[0, 1]`: `0` allows only the cheapest exit, `1` the full
    /// network, and levels between map linearly onto the MACs in between.
    Battery(f64),
}

impl Budget {
    /// The MAC cap per sample, given the costs of running each exit alone (`forced`,
    /// ascending from the cheapest exit to the full network).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a battery level outside `[0, 1]`, a NaN or negative
    /// MAC cap, or no exits.
    pub fn cap(&self, forced: &[u64]) -> Result<f64> {
        let (Some(&lo), Some(&hi)) = (forced.iter().min(), forced.iter().max()) else {
            return Err(CoreError::config("exits", "no exit to budget for").into());
        };
        match *self {
            Self::Macs(m) if m.is_nan() || m < 0.0 => {
                Err(CoreError::config("budget", format!("MAC cap {m} must be non-negative")).into())
            }
            Self::Macs(m) => Ok(m),
            Self::Battery(b) if !(0.0..=1.0).contains(&b) => {
                Err(CoreError::config("battery", format!("level {b} is not in [0, 1]")).into())
            }
            Self::Battery(b) => Ok(lo as f64 + b * (hi - lo) as f64),
        }
    }

    /// The deepest exit whose per-sample cost fits the cap, when the exits flagged in
    /// `active` are tried on the way (all `false` except the last = forced exits).
    ///
    /// # Errors
    ///
    /// As [`Budget::cap`], and [`DynamicError::BudgetTooSmall`] when even exit 0 does not
    /// fit.
    pub fn deepest_exit(&self, costs: &ExitCosts, active: &[bool]) -> Result<usize> {
        let forced: Vec<u64> = (0..costs.own.len()).map(|k| costs.forced(k)).collect();
        let cap = self.cap(&forced)?;
        (0..costs.own.len())
            .rev()
            .find(|&k| costs.path_macs(k, active) as f64 <= cap + 1e-9)
            .ok_or(DynamicError::BudgetTooSmall {
                cap,
                cheapest: costs.path_macs(0, active),
            })
    }
}

impl<F: Float> EarlyExitNet<F> {
    /// Inference of a batch under one budget: every sample leaves at the deepest exit that
    /// fits, and no other head is computed.
    ///
    /// # Errors
    ///
    /// As [`Budget::deepest_exit`] and [`EarlyExitNet::infer`].
    pub fn infer_budget(&mut self, x: &ArrayD<F>, budget: Budget) -> Result<DynamicOutput<F>> {
        let n = x.shape().first().copied().unwrap_or(0);
        self.infer_budgets(x, &vec![budget; n], None)
    }

    /// Inference where each sample has its own budget (`budgets[i]`): it leaves at the
    /// deepest exit that fits, or earlier when `thresholds` are given and it is confident
    /// (the cost of the active heads tried on the way counts against its budget).
    ///
    /// # Errors
    ///
    /// A shape mismatch when `budgets` has not one entry per sample, a budget below the
    /// cheapest exit, and any error of [`EarlyExitNet::infer_limited`].
    pub fn infer_budgets(
        &mut self,
        x: &ArrayD<F>,
        budgets: &[Budget],
        thresholds: Option<&Thresholds>,
    ) -> Result<DynamicOutput<F>> {
        let n = x.shape().first().copied().unwrap_or(0);
        if budgets.len() != n {
            return Err(CoreError::shape("budgets", &[n], &[budgets.len()]).into());
        }
        let costs = self.exit_costs()?;
        let k = self.num_exits();
        let t = thresholds
            .cloned()
            .unwrap_or_else(|| Thresholds::disabled(ExitRule::MaxSoftmax, k));
        t.check(k)?;
        let active = t.active();
        let max_exit = budgets
            .iter()
            .map(|b| b.deepest_exit(&costs, &active))
            .collect::<Result<Vec<usize>>>()?;
        self.infer_limited(x, &t, Some(&max_exit))
    }
}
