//! Per-exit threshold calibration on a validation profile, and accuracy-vs-MACs curves.

use compress_core::CoreError;

use crate::profile::{ExitProfile, Simulation, Thresholds};
use crate::{DynamicError, Result};

/// What calibration aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibrationTarget {
    /// The fewest average MACs whose accuracy is at most `max_drop` (a fraction, `0.005` =
    /// half a point) below the last exit's accuracy on the same samples.
    AccuracyDrop {
        /// Largest allowed accuracy drop, in `[0, 1]`.
        max_drop: f64,
    },
    /// The best accuracy whose average MACs per sample do not exceed `avg_macs`
    /// (ties broken by fewer MACs).
    MacBudget {
        /// Average MACs per sample allowed.
        avg_macs: f64,
    },
}

/// Search settings of [`calibrate_with`]. Defaults: 64 candidate thresholds per exit
/// (quantiles of that exit's scores), 4 rounds of coordinate descent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalibrationConfig {
    /// Candidate thresholds per exit (quantiles of the exit's scores; disabling the exit is
    /// always a candidate too).
    pub grid: usize,
    /// Rounds of coordinate descent over the exits.
    pub rounds: usize,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            grid: 64,
            rounds: 4,
        }
    }
}

/// Thresholds chosen by calibration and how they perform on the calibration profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The chosen thresholds.
    pub thresholds: Thresholds,
    /// Their accuracy, average MACs and exit fractions on the profile.
    pub simulation: Simulation,
    /// Accuracy of the last exit alone on the profile (the reference for
    /// [`CalibrationTarget::AccuracyDrop`]).
    pub reference_accuracy: f64,
}

/// [`calibrate_with`] with the default search settings.
///
/// # Errors
///
/// As [`calibrate_with`].
///
/// ```
/// use compress_dynamic::{calibrate, CalibrationTarget, ExitCosts, ExitProfile, ExitRule};
/// # fn main() -> compress_dynamic::Result<()> {
/// // Two exits; the first is right whenever it is confident (score >= 0.9).
/// let scores = vec![vec![0.95, 0.99, 0.5, 0.6], vec![1.0; 4]];
/// let correct = vec![vec![true, true, false, false], vec![true; 4]];
/// let costs = ExitCosts { shared: vec![10, 100], own: vec![1, 1] };
/// let p = ExitProfile::new(ExitRule::MaxSoftmax, scores, correct, costs)?;
/// let c = calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
/// assert_eq!(c.simulation.accuracy, 1.0);
/// assert_eq!(c.simulation.exit_fractions, vec![0.5, 0.5]);
/// assert!(c.simulation.avg_macs < 101.0);
/// # Ok(()) }
/// ```
pub fn calibrate(profile: &ExitProfile, target: CalibrationTarget) -> Result<Calibration> {
    calibrate_with(profile, target, CalibrationConfig::default())
}

/// Chooses one threshold per exit on a (validation) profile to meet `target`.
///
/// The search starts from the best feasible of: every early exit disabled (the static
/// network) and one shared threshold at every exit (swept over the grid); then it improves
/// each exit's threshold in turn (coordinate descent) while the target stays met. For
/// [`CalibrationTarget::AccuracyDrop`] the static network is always feasible, so the result
/// never costs more average MACs than the full network on the profile.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for a drop outside `[0, 1]`, a non-finite budget or a zero
/// grid; an empty profile; [`DynamicError::Infeasible`] when no setting meets a MAC
/// budget (the budget is below the cheapest exit's cost).
pub fn calibrate_with(
    profile: &ExitProfile,
    target: CalibrationTarget,
    config: CalibrationConfig,
) -> Result<Calibration> {
    if config.grid == 0 {
        return Err(CoreError::config("grid", "must be at least 1, got 0").into());
    }
    if profile.is_empty() {
        return Err(CoreError::Empty {
            path: "calibration profile".into(),
            shape: vec![profile.num_exits(), 0],
        }
        .into());
    }
    match target {
        CalibrationTarget::AccuracyDrop { max_drop } if !(0.0..=1.0).contains(&max_drop) => {
            return Err(
                CoreError::config("max_drop", format!("{max_drop} is not in [0, 1]")).into(),
            );
        }
        CalibrationTarget::MacBudget { avg_macs } if !avg_macs.is_finite() || avg_macs < 0.0 => {
            return Err(CoreError::config(
                "avg_macs",
                format!("{avg_macs} must be finite and non-negative"),
            )
            .into());
        }
        _ => {}
    }
    let k_all = profile.num_exits();
    let reference = profile.exit_accuracies()[k_all - 1];
    let grids: Vec<Vec<f64>> = (0..k_all)
        .map(|k| quantile_grid(&profile.scores[k], config.grid))
        .collect();
    let goal = Goal { target, reference };

    // Starting points: everything disabled, and a shared threshold swept over the grid.
    let mut best: Option<(Vec<Option<f64>>, Simulation)> = None;
    let consider = |thr: Vec<Option<f64>>, best: &mut Option<(Vec<Option<f64>>, Simulation)>| {
        let sim = profile.simulate_scores(&thr);
        if goal.feasible(&sim) && best.as_ref().is_none_or(|(_, b)| goal.better(&sim, b)) {
            *best = Some((thr, sim));
        }
    };
    consider(vec![None; k_all], &mut best);
    let mut shared: Vec<f64> = grids[..k_all - 1].iter().flatten().copied().collect();
    shared.push(f64::NEG_INFINITY);
    for &t in &shared {
        let mut thr = vec![Some(t); k_all];
        thr[k_all - 1] = None;
        consider(thr, &mut best);
    }
    let Some((mut thr, mut sim)) = best else {
        let cheapest = profile.costs.forced(0);
        return Err(DynamicError::Infeasible {
            target: format!("{target:?}"),
            reason: format!("no threshold setting fits; the cheapest exit costs {cheapest} MACs"),
        });
    };

    for _ in 0..config.rounds {
        let mut improved = false;
        for k in 0..k_all - 1 {
            let candidates = std::iter::once(None)
                .chain(grids[k].iter().map(|&t| Some(t)))
                .chain(std::iter::once(Some(f64::NEG_INFINITY)));
            for cand in candidates {
                if cand == thr[k] {
                    continue;
                }
                let mut trial = thr.clone();
                trial[k] = cand;
                let s = profile.simulate_scores(&trial);
                if goal.feasible(&s) && goal.better(&s, &sim) {
                    thr = trial;
                    sim = s;
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    let rule = profile.rule;
    let taus = thr[..k_all - 1]
        .iter()
        .map(|t| t.map(|s| clamp_tau(rule, rule.tau_from_score(s))))
        .collect();
    Ok(Calibration {
        thresholds: Thresholds { rule, taus },
        simulation: sim,
        reference_accuracy: reference,
    })
}

/// Keeps a threshold valid for its rule (a `-inf` score means "always exit").
fn clamp_tau(rule: crate::ExitRule, tau: f64) -> f64 {
    match rule {
        crate::ExitRule::MaxSoftmax => tau.clamp(0.0, 1.0),
        crate::ExitRule::Entropy => tau.max(0.0),
    }
}

struct Goal {
    target: CalibrationTarget,
    reference: f64,
}

impl Goal {
    fn feasible(&self, s: &Simulation) -> bool {
        match self.target {
            CalibrationTarget::AccuracyDrop { max_drop } => {
                s.accuracy >= self.reference - max_drop - 1e-12
            }
            CalibrationTarget::MacBudget { avg_macs } => s.avg_macs <= avg_macs + 1e-9,
        }
    }

    /// Whether `a` is strictly better than `b` (both feasible).
    fn better(&self, a: &Simulation, b: &Simulation) -> bool {
        match self.target {
            CalibrationTarget::AccuracyDrop { .. } => {
                a.avg_macs < b.avg_macs - 1e-9
                    || ((a.avg_macs - b.avg_macs).abs() <= 1e-9 && a.accuracy > b.accuracy)
            }
            CalibrationTarget::MacBudget { .. } => {
                a.accuracy > b.accuracy + 1e-12
                    || ((a.accuracy - b.accuracy).abs() <= 1e-12 && a.avg_macs < b.avg_macs - 1e-9)
            }
        }
    }
}

/// Up to `grid + 1` distinct quantiles of the finite `scores`, ascending.
fn quantile_grid(scores: &[f64], grid: usize) -> Vec<f64> {
    let mut s: Vec<f64> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return Vec::new();
    }
    s.sort_by(f64::total_cmp);
    let mut out: Vec<f64> = (0..=grid).map(|i| s[(i * (s.len() - 1)) / grid]).collect();
    out.dedup();
    out
}

/// One point of an accuracy-vs-MACs curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// The threshold shared by every early exit (rule units).
    pub tau: f64,
    /// Accuracy, average MACs and exit fractions at that threshold.
    pub simulation: Simulation,
}

/// Accuracy vs average MACs when one threshold is shared by every early exit, at `points`
/// thresholds spread evenly over the rule's range (max-softmax: `1/C`..`1`; entropy:
/// `0`..`ln C` for `C` classes), most permissive first.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for fewer than 2 points or fewer than 2 classes.
pub fn tradeoff_curve(
    profile: &ExitProfile,
    classes: usize,
    points: usize,
) -> Result<Vec<CurvePoint>> {
    if points < 2 || classes < 2 {
        return Err(CoreError::config(
            "points",
            format!("need at least 2 points and 2 classes, got {points} points, {classes} classes"),
        )
        .into());
    }
    let k = profile.num_exits();
    let (lo, hi) = match profile.rule {
        crate::ExitRule::MaxSoftmax => (1.0 / classes as f64, 1.0),
        crate::ExitRule::Entropy => ((classes as f64).ln(), 0.0),
    };
    (0..points)
        .map(|i| {
            let tau = lo + (hi - lo) * i as f64 / (points - 1) as f64;
            let t = Thresholds::uniform(profile.rule, k, tau);
            Ok(CurvePoint {
                tau,
                simulation: profile.simulate(&t)?,
            })
        })
        .collect()
}
