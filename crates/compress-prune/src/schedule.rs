//! Pruning schedules: one-shot, iterative (a fraction of what remains per round, with
//! fine-tuning between rounds) and gradual polynomial (Zhu & Gupta 2017) stepped by the
//! training loop.

use compress_core::{CoreError, Float, Layer, Module};
use compress_nn::NnError;
use compress_nn::train::TrainHooks;

use crate::error::check_sparsity;
use crate::{PruneConfig, PruneError, PruneReport, Result, prune};

/// Sparsity after each of `rounds` rounds that each prune the same fraction of the
/// remaining weights, ending at `final_sparsity`: `1 - (1 - s_f)^(r / rounds)`.
///
/// # Errors
///
/// [`PruneError::Sparsity`] unless `0 <= final_sparsity < 1`; [`CoreError::InvalidConfig`]
/// for zero rounds.
///
/// ```
/// let s = compress_prune::iterative_sparsities(0.875, 3).unwrap();
/// assert!((s[0] - 0.5).abs() < 1e-12 && (s[1] - 0.75).abs() < 1e-12 && (s[2] - 0.875).abs() < 1e-12);
/// ```
pub fn iterative_sparsities(final_sparsity: f64, rounds: usize) -> Result<Vec<f64>> {
    check_sparsity("final_sparsity", final_sparsity)?;
    if rounds == 0 {
        return Err(CoreError::config("rounds", "must be at least 1, got 0").into());
    }
    let keep = 1.0 - final_sparsity;
    Ok((1..=rounds)
        .map(|r| {
            if r == rounds {
                final_sparsity
            } else {
                1.0 - keep.powf(r as f64 / rounds as f64)
            }
        })
        .collect())
}

/// Sparsity after pruning `fraction` of the weights that survive at `current` sparsity:
/// `1 - (1 - current)(1 - fraction)` (the lottery ticket's "20% per round").
pub fn prune_remaining(current: f64, fraction: f64) -> f64 {
    1.0 - (1.0 - current) * (1.0 - fraction)
}

/// Iterative pruning: for each round, prune to the next sparsity of
/// [`iterative_sparsities`] (with `config`'s scope, score and filter) and then call
/// `fine_tune(model, round)`. Returns one report per round.
///
/// # Errors
///
/// As [`prune`] and [`iterative_sparsities`], and whatever `fine_tune` returns.
pub fn prune_iteratively<F, M, T>(
    model: &mut M,
    config: &PruneConfig,
    rounds: usize,
    mut fine_tune: T,
) -> Result<Vec<PruneReport>>
where
    F: Float,
    M: Module<F> + ?Sized,
    T: FnMut(&mut M, usize) -> Result<()>,
{
    let targets = iterative_sparsities(config.sparsity, rounds)?;
    let mut out = Vec::with_capacity(rounds);
    for (r, s) in targets.into_iter().enumerate() {
        out.push(prune(model, &config.clone().with_sparsity(s))?);
        fine_tune(model, r)?;
    }
    Ok(out)
}

/// Zhu & Gupta's polynomial schedule:
/// `s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^power` for `t0 <= t <= t0 + n dt`,
/// pruning every `dt` steps; `power` is 3 in the paper.
///
/// ```
/// use compress_prune::PolynomialSchedule;
/// let s = PolynomialSchedule::new(0.0, 0.9, 0, 10, 100);
/// assert_eq!(s.sparsity_at(0), 0.0);
/// assert!((s.sparsity_at(1000) - 0.9).abs() < 1e-12);
/// assert!(s.sparsity_at(500) > 0.78); // fast at first, slow at the end
/// assert!(s.is_pruning_step(990) && !s.is_pruning_step(995) && !s.is_pruning_step(1010));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialSchedule {
    /// Initial sparsity `s_i`.
    pub initial: f64,
    /// Final sparsity `s_f`.
    pub final_sparsity: f64,
    /// First pruning step `t0`.
    pub begin: usize,
    /// Steps between pruning events `dt` (at least 1).
    pub every: usize,
    /// Number of pruning intervals `n`.
    pub intervals: usize,
    /// Exponent (3 in the paper).
    pub power: i32,
}

impl PolynomialSchedule {
    /// A cubic schedule from `initial` to `final_sparsity` starting at step `begin`, pruning
    /// every `every` steps for `intervals` intervals.
    pub fn new(
        initial: f64,
        final_sparsity: f64,
        begin: usize,
        every: usize,
        intervals: usize,
    ) -> Self {
        Self {
            initial,
            final_sparsity,
            begin,
            every,
            intervals,
            power: 3,
        }
    }

    /// Checks the schedule.
    ///
    /// # Errors
    ///
    /// [`PruneError::Sparsity`] for sparsities outside `[0, 1)`,
    /// [`CoreError::InvalidConfig`] for `every == 0`.
    pub fn validate(&self) -> Result<()> {
        check_sparsity("initial", self.initial)?;
        check_sparsity("final_sparsity", self.final_sparsity)?;
        if self.every == 0 {
            return Err(CoreError::config("every", "must be at least 1, got 0").into());
        }
        Ok(())
    }

    /// The last step at which the schedule prunes.
    pub fn end(&self) -> usize {
        self.begin + self.intervals * self.every
    }

    /// The target sparsity at step `t` (clamped to `s_i` before `t0` and `s_f` after the end).
    pub fn sparsity_at(&self, t: usize) -> f64 {
        if t <= self.begin {
            return self.initial;
        }
        let span = (self.intervals * self.every.max(1)) as f64;
        if span == 0.0 || t >= self.end() {
            return self.final_sparsity;
        }
        let frac = 1.0 - (t - self.begin) as f64 / span;
        self.final_sparsity + (self.initial - self.final_sparsity) * frac.powi(self.power)
    }

    /// Whether the schedule prunes at step `t`.
    pub fn is_pruning_step(&self, t: usize) -> bool {
        t >= self.begin && t <= self.end() && (t - self.begin).is_multiple_of(self.every.max(1))
    }
}

/// Gradual pruning as a training hook: plug it into
/// [`Trainer::fit_with`](compress_nn::Trainer::fit_with) and it prunes the model to
/// [`PolynomialSchedule::sparsity_at`] after every pruning step.
///
/// ```
/// use compress_nn::{Sgd, TrainConfig, Trainer, models::mlp, train::CrossEntropy};
/// use compress_prune::{GradualPruning, PolynomialSchedule, PruneConfig};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let (train, _) = compress_nn::data::digits::<f32>().unwrap();
/// let train = train.subset(&(0..256).collect::<Vec<_>>());
/// let mut net = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
/// // 256 samples / batch 32 = 8 steps per epoch; prune every 4 steps over 4 epochs.
/// let schedule = PolynomialSchedule::new(0.0, 0.8, 0, 4, 8);
/// let mut hooks = GradualPruning::new(schedule, PruneConfig::new(0.8));
/// let trainer = Trainer::new(TrainConfig { epochs: 5, ..TrainConfig::default() });
/// trainer
///     .fit_with(&mut net, &mut Sgd::new(0.1), &train, None, &mut CrossEntropy, &mut hooks)
///     .unwrap();
/// assert!((hooks.current_sparsity() - 0.8).abs() < 1e-3);
/// ```
#[derive(Debug, Clone)]
pub struct GradualPruning {
    schedule: PolynomialSchedule,
    config: PruneConfig,
    history: Vec<(usize, f64)>,
}

impl GradualPruning {
    /// Prunes with `config`'s scope, score and filter (its `sparsity` is ignored) on
    /// `schedule`.
    pub fn new(schedule: PolynomialSchedule, config: PruneConfig) -> Self {
        Self {
            schedule,
            config,
            history: Vec::new(),
        }
    }

    /// `(step, sparsity reached)` for every pruning event so far.
    pub fn history(&self) -> &[(usize, f64)] {
        &self.history
    }

    /// Sparsity reached at the last pruning event (`0` before the first).
    pub fn current_sparsity(&self) -> f64 {
        self.history.last().map_or(0.0, |h| h.1)
    }

    /// Prunes `model` if `step` is a pruning step (usable outside the `Trainer` too).
    ///
    /// # Errors
    ///
    /// As [`PolynomialSchedule::validate`] and [`prune`].
    pub fn step<F: Float, M: Module<F> + ?Sized>(
        &mut self,
        step: usize,
        model: &mut M,
    ) -> Result<Option<PruneReport>> {
        self.schedule.validate()?;
        if !self.schedule.is_pruning_step(step) {
            return Ok(None);
        }
        let s = self.schedule.sparsity_at(step);
        let report = prune(model, &self.config.clone().with_sparsity(s))?;
        self.history.push((step, report.sparsity()));
        Ok(Some(report))
    }
}

/// Converts a pruning error into the training loop's error type.
pub(crate) fn to_nn(e: PruneError) -> NnError {
    match e {
        PruneError::Core(c) => NnError::Core(c),
        PruneError::Nn(n) => n,
        other => NnError::Core(CoreError::technique("pruning", other)),
    }
}

impl<F: Float> TrainHooks<F> for GradualPruning {
    fn on_step(&mut self, step: usize, model: &mut dyn Layer<F>) -> compress_nn::Result<()> {
        self.step(step, model).map(|_| ()).map_err(to_nn)
    }
}
