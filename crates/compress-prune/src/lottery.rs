//! Lottery tickets (Frankle & Carbin 2019; rewinding from Frankle et al. 2020): iterative
//! magnitude pruning where, after each round, the surviving weights are reset to their
//! values at initialisation (or at an early step `k`) and retrained; the control keeps the
//! same masks with a fresh random initialisation.

use compress_core::{CoreError, Float, Layer, ParamFilter};
use compress_nn::train::{NoHooks, TrainHooks};
use ndarray::ArrayD;

use crate::schedule::prune_remaining;
use crate::{PruneConfig, Result, Scope, copy_masks, mask_report, prune, reapply_masks};

/// Which weights the survivors are reset to after each pruning round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rewind {
    /// The initial weights (the original lottery ticket).
    #[default]
    Init,
    /// The weights after this many optimizer steps of the first (dense) training run
    /// ("late resetting", which finds tickets in deeper networks). `Step(0)` is `Init`.
    Step(usize),
}

/// Settings of a lottery-ticket search.
#[derive(Debug, Clone, PartialEq)]
pub struct LotteryConfig {
    /// Pruning rounds after the dense run (each prunes `fraction` of what remains).
    pub rounds: usize,
    /// Fraction of the remaining weights pruned per round (0.2 in the paper).
    pub fraction: f64,
    /// Where the survivors are rewound to.
    pub rewind: Rewind,
    /// Threshold scope (the paper prunes layer-wise for small networks, globally for deep ones).
    pub scope: Scope,
    /// Which parameters are pruned (default: all weights).
    pub filter: ParamFilter,
    /// Also train the random-reinitialisation control each round.
    pub random_control: bool,
    /// Seed of the ticket's initialisation (controls use `seed + 1000 + round`).
    pub seed: u64,
}

impl Default for LotteryConfig {
    fn default() -> Self {
        Self {
            rounds: 5,
            fraction: 0.2,
            rewind: Rewind::Init,
            scope: Scope::Global,
            filter: ParamFilter::new(),
            random_control: true,
            seed: 0,
        }
    }
}

/// One round of the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LotteryRound {
    /// Round index (1 = first pruned network).
    pub round: usize,
    /// Sparsity of the pruned parameters in this round.
    pub sparsity: f64,
    /// Accuracy of the winning ticket (rewound and retrained).
    pub ticket_accuracy: f64,
    /// Accuracy of the same masks with a random re-initialisation, if run.
    pub control_accuracy: Option<f64>,
}

/// The dense baseline and one row per round.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LotteryReport {
    /// Accuracy of the dense network after the first training run.
    pub dense_accuracy: f64,
    /// One row per pruning round.
    pub rounds: Vec<LotteryRound>,
}

/// Captures the stored weights after a given optimizer step.
struct Snapshot<F: Float> {
    after_step: usize,
    state: Option<Vec<(String, ArrayD<F>)>>,
}

impl<F: Float> TrainHooks<F> for Snapshot<F> {
    fn on_step(&mut self, step: usize, model: &mut dyn Layer<F>) -> compress_nn::Result<()> {
        if step + 1 == self.after_step && self.state.is_none() {
            self.state = Some(model.stored_dict());
        }
        Ok(())
    }
}

/// Runs iterative magnitude pruning with rewinding.
///
/// - `build(seed)` makes a freshly initialised model;
/// - `train(model, hooks)` trains it (pass `hooks` to your
///   [`Trainer::fit_with`](compress_nn::Trainer::fit_with), with a fresh optimizer);
/// - `eval(model)` returns its test accuracy.
///
/// Returns the final ticket (masks attached) and the report.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for zero rounds, a fraction outside `(0, 1)` or a rewind
/// step the first run never reached; anything `build`, `train`, `eval` or [`prune`] returns.
pub fn lottery_ticket<F, M, B, T, E>(
    config: &LotteryConfig,
    mut build: B,
    mut train: T,
    mut eval: E,
) -> Result<(M, LotteryReport)>
where
    F: Float,
    M: Layer<F>,
    B: FnMut(u64) -> M,
    T: FnMut(&mut M, &mut dyn TrainHooks<F>) -> Result<()>,
    E: FnMut(&mut M) -> Result<f64>,
{
    if config.rounds == 0 {
        return Err(CoreError::config("rounds", "must be at least 1, got 0").into());
    }
    if !(config.fraction > 0.0 && config.fraction < 1.0) {
        return Err(
            CoreError::config("fraction", format!("{} is not in (0, 1)", config.fraction)).into(),
        );
    }
    let mut model = build(config.seed);
    let init = model.stored_dict();
    let rewind_state = match config.rewind {
        Rewind::Init | Rewind::Step(0) => {
            train(&mut model, &mut NoHooks)?;
            init
        }
        Rewind::Step(k) => {
            let mut snap = Snapshot {
                after_step: k,
                state: None,
            };
            train(&mut model, &mut snap)?;
            snap.state.ok_or_else(|| {
                CoreError::config("rewind", format!("training took fewer than {k} steps"))
            })?
        }
    };
    let mut report = LotteryReport {
        dense_accuracy: eval(&mut model)?,
        rounds: Vec::with_capacity(config.rounds),
    };
    let mut sparsity = 0.0;
    for round in 1..=config.rounds {
        sparsity = prune_remaining(sparsity, config.fraction);
        let cfg = PruneConfig::new(sparsity)
            .scope(config.scope)
            .filter(config.filter.clone());
        prune(&mut model, &cfg)?;
        model.load_state(&rewind_state)?;
        reapply_masks(&mut model)?;
        train(&mut model, &mut NoHooks)?;
        let ticket_accuracy = eval(&mut model)?;
        let control_accuracy = if config.random_control {
            let mut control = build(config.seed + 1000 + round as u64);
            copy_masks(&model, &mut control)?;
            train(&mut control, &mut NoHooks)?;
            Some(eval(&mut control)?)
        } else {
            None
        };
        report.rounds.push(LotteryRound {
            round,
            sparsity: mask_report(&model, &config.filter).sparsity(),
            ticket_accuracy,
            control_accuracy,
        });
    }
    Ok((model, report))
}
