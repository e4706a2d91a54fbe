//! What every exit of a dynamic model would do on a labelled set, and the exact
//! simulation of a threshold setting on it (accuracy, average MACs, exit fractions).

use compress_core::{CoreError, Float};
use compress_nn::loss::argmax_rows;
use ndarray::Array2;

use crate::{ExitRule, Result};

/// Thresholds of a dynamic model with `K` exits: one per exit except the last, which
/// takes every sample still running.
///
/// `None` disables an exit: nobody leaves there and its head is not even computed, so it
/// costs nothing. Values are in the rule's own units (probability for
/// [`ExitRule::MaxSoftmax`], nats for [`ExitRule::Entropy`]).
///
/// ```
/// use compress_dynamic::{ExitRule, Thresholds};
/// let t = Thresholds::uniform(ExitRule::MaxSoftmax, 3, 0.9);
/// assert_eq!(t.taus, vec![Some(0.9), Some(0.9)]);
/// assert_eq!(Thresholds::disabled(ExitRule::Entropy, 3).active(), vec![false, false, true]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The exit rule the thresholds are for.
    pub rule: ExitRule,
    /// One threshold per exit except the last (`None` = exit disabled).
    pub taus: Vec<Option<f64>>,
}

impl Thresholds {
    /// The same `tau` at every exit but the last.
    pub fn uniform(rule: ExitRule, num_exits: usize, tau: f64) -> Self {
        Self {
            rule,
            taus: vec![Some(tau); num_exits.saturating_sub(1)],
        }
    }

    /// Every early exit disabled: the model runs in full (the static network).
    pub fn disabled(rule: ExitRule, num_exits: usize) -> Self {
        Self {
            rule,
            taus: vec![None; num_exits.saturating_sub(1)],
        }
    }

    /// Number of exits these thresholds are for (`taus.len() + 1`).
    pub fn num_exits(&self) -> usize {
        self.taus.len() + 1
    }

    /// Whether each exit's head is computed (the last always is).
    pub fn active(&self) -> Vec<bool> {
        let mut a: Vec<bool> = self.taus.iter().map(Option::is_some).collect();
        a.push(true);
        a
    }

    /// The threshold of exit `k` in score units; `None` when disabled, `-inf` for the last.
    pub fn score_threshold(&self, k: usize) -> Option<f64> {
        if k + 1 >= self.num_exits() {
            return Some(f64::NEG_INFINITY);
        }
        self.taus[k].map(|t| self.rule.score_threshold(t))
    }

    /// Checks the count against a model and every threshold against the rule.
    ///
    /// # Errors
    ///
    /// A shape mismatch for the wrong count, an invalid threshold value.
    pub fn check(&self, num_exits: usize) -> Result<()> {
        if self.num_exits() != num_exits {
            return Err(CoreError::shape(
                "thresholds",
                &[num_exits.saturating_sub(1)],
                &[self.taus.len()],
            )
            .into());
        }
        for t in self.taus.iter().flatten() {
            self.rule.check_tau(*t)?;
        }
        Ok(())
    }
}

/// Per-sample MAC accounting of a `K`-exit model.
///
/// Leaving at exit `k` costs `shared[k]` (the trunk up to that exit) plus `own[j]` of
/// every *active* exit `j <= k` that was tried on the way. For an early-exit network
/// `own` is a head; for a cascade of separate models `shared` is zero and `own` is a whole
/// model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitCosts {
    /// Trunk MACs per sample up to each exit.
    pub shared: Vec<u64>,
    /// MACs per sample of each exit's own computation.
    pub own: Vec<u64>,
}

impl ExitCosts {
    /// MACs per sample of leaving at exit `k` when the exits flagged in `active` were tried
    /// before it (exit `k` itself is always counted).
    ///
    /// # Panics
    ///
    /// If `k` is out of range.
    #[track_caller]
    pub fn path_macs(&self, k: usize, active: &[bool]) -> u64 {
        let tried: u64 = (0..k)
            .filter(|&j| active.get(j).copied().unwrap_or(false))
            .map(|j| self.own[j])
            .sum();
        self.shared[k] + tried + self.own[k]
    }

    /// MACs of the static network: the last exit with no other exit tried.
    pub fn full(&self) -> u64 {
        let k = self.own.len().saturating_sub(1);
        self.shared.get(k).copied().unwrap_or(0) + self.own.get(k).copied().unwrap_or(0)
    }

    /// MACs of running exit `k` alone (a forced exit, no other exit tried).
    ///
    /// # Panics
    ///
    /// If `k` is out of range.
    #[track_caller]
    pub fn forced(&self, k: usize) -> u64 {
        self.shared[k] + self.own[k]
    }
}

/// The behaviour of every exit on a labelled set: confidence scores and correctness of
/// each exit for each sample (all exits computed), with the exits' costs.
///
/// Built by [`EarlyExitNet::profile`](crate::EarlyExitNet::profile),
/// [`Cascade::profile`](crate::Cascade::profile) or
/// [`SlimmableNet::profile_widths`](crate::SlimmableNet::profile_widths); used for
/// calibration ([`calibrate`](crate::calibrate)) and accuracy-vs-MACs curves.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitProfile {
    /// The rule the scores were computed with.
    pub rule: ExitRule,
    /// `scores[k][i]`: confidence score of sample `i` at exit `k` (higher = more confident).
    pub scores: Vec<Vec<f64>>,
    /// `correct[k][i]`: whether exit `k` classifies sample `i` correctly.
    pub correct: Vec<Vec<bool>>,
    /// The exits' costs.
    pub costs: ExitCosts,
}

/// The outcome of a threshold setting on a profile (exact, per sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Fraction of samples classified correctly.
    pub accuracy: f64,
    /// Average MACs per sample.
    pub avg_macs: f64,
    /// Fraction of samples leaving at each exit.
    pub exit_fractions: Vec<f64>,
}

impl ExitProfile {
    /// A profile from its parts, checked for consistent sizes.
    ///
    /// # Errors
    ///
    /// A shape mismatch when the exits or samples disagree in count, an empty profile.
    pub fn new(
        rule: ExitRule,
        scores: Vec<Vec<f64>>,
        correct: Vec<Vec<bool>>,
        costs: ExitCosts,
    ) -> Result<Self> {
        let k = scores.len();
        if k == 0 {
            return Err(CoreError::Empty {
                path: "profile scores".into(),
                shape: vec![0],
            }
            .into());
        }
        let n = scores[0].len();
        for (name, len) in [
            ("profile correct", correct.len()),
            ("profile shared costs", costs.shared.len()),
            ("profile own costs", costs.own.len()),
        ] {
            if len != k {
                return Err(CoreError::shape(name, &[k], &[len]).into());
            }
        }
        for j in 0..k {
            if scores[j].len() != n || correct[j].len() != n {
                return Err(CoreError::shape(
                    format!("profile exit {j}"),
                    &[n],
                    &[scores[j].len().min(correct[j].len())],
                )
                .into());
            }
        }
        Ok(Self {
            rule,
            scores,
            correct,
            costs,
        })
    }

    /// A profile from each exit's logits `[n, classes]` on a labelled set: the exit's
    /// scores under `rule` and whether its arg-max is the label (the one way every
    /// dynamic model profiles itself).
    ///
    /// # Errors
    ///
    /// As [`ExitProfile::new`]; a label count that differs from the logits' rows.
    pub fn from_logits<F: Float>(
        rule: ExitRule,
        logits: &[Array2<F>],
        labels: &[usize],
        costs: ExitCosts,
    ) -> Result<Self> {
        let mut scores = Vec::with_capacity(logits.len());
        let mut correct = Vec::with_capacity(logits.len());
        for (j, l) in logits.iter().enumerate() {
            if l.nrows() != labels.len() {
                return Err(CoreError::shape(
                    format!("profile exit {j} logits"),
                    &[labels.len(), l.ncols()],
                    l.shape(),
                )
                .into());
            }
            scores.push(rule.scores(l));
            correct.push(
                argmax_rows(l)
                    .iter()
                    .zip(labels)
                    .map(|(p, y)| p == y)
                    .collect(),
            );
        }
        Self::new(rule, scores, correct, costs)
    }

    /// Number of exits.
    pub fn num_exits(&self) -> usize {
        self.scores.len()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.scores.first().map_or(0, Vec::len)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accuracy of each exit alone (every sample forced there).
    pub fn exit_accuracies(&self) -> Vec<f64> {
        let n = self.len().max(1) as f64;
        self.correct
            .iter()
            .map(|c| c.iter().filter(|&&b| b).count() as f64 / n)
            .collect()
    }

    /// Accuracy, average MACs and exit fractions under `thresholds`.
    ///
    /// # Errors
    ///
    /// As [`Thresholds::check`].
    pub fn simulate(&self, thresholds: &Thresholds) -> Result<Simulation> {
        thresholds.check(self.num_exits())?;
        let thr: Vec<Option<f64>> = (0..self.num_exits())
            .map(|k| thresholds.score_threshold(k))
            .collect();
        Ok(self.simulate_scores(&thr))
    }

    /// [`ExitProfile::simulate`] with thresholds already in score units
    /// (`None` = disabled; the last exit's entry is ignored).
    pub(crate) fn simulate_scores(&self, thr: &[Option<f64>]) -> Simulation {
        let k_all = self.num_exits();
        let mut active: Vec<bool> = thr.iter().map(Option::is_some).collect();
        active[k_all - 1] = true;
        let path: Vec<u64> = (0..k_all)
            .map(|k| self.costs.path_macs(k, &active))
            .collect();
        let n = self.len();
        let mut counts = vec![0usize; k_all];
        let (mut correct, mut macs) = (0usize, 0u128);
        for i in 0..n {
            let k = (0..k_all - 1)
                .find(|&k| thr[k].is_some_and(|t| self.scores[k][i] >= t))
                .unwrap_or(k_all - 1);
            counts[k] += 1;
            correct += usize::from(self.correct[k][i]);
            macs += u128::from(path[k]);
        }
        let nf = n.max(1) as f64;
        Simulation {
            accuracy: correct as f64 / nf,
            avg_macs: macs as f64 / nf,
            exit_fractions: counts.iter().map(|&c| c as f64 / nf).collect(),
        }
    }
}
