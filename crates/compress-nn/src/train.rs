//! The training loop.

use compress_core::{CoreError, Float, Layer, Mode, Param, ParamPath};
use ndarray::{ArrayD, ArrayRef, Ix2, IxDyn};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::slice::Chunks;

use crate::loss::{accuracy, argmax_rows, softmax_cross_entropy};
use crate::{Dataset, LrSchedule, NnError, Optimizer, Result};

/// A training objective: loss and its gradient with respect to the model's output.
pub trait Loss<F: Float> {
    /// Loss of `output` for the samples `indices` of the training set with `labels`, and
    /// d loss / d output.
    ///
    /// # Errors
    ///
    /// Shape or label errors.
    fn loss(
        &mut self,
        output: &ArrayD<F>,
        indices: &[usize],
        labels: &[usize],
    ) -> Result<(F, ArrayD<F>)>;
}

/// Softmax cross-entropy on the labels (the default objective).
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropy;

impl<F: Float> Loss<F> for CrossEntropy {
    fn loss(
        &mut self,
        output: &ArrayD<F>,
        _: &[usize],
        labels: &[usize],
    ) -> Result<(F, ArrayD<F>)> {
        let logits = as_logits(output)?;
        let (l, g) = softmax_cross_entropy(&logits, labels)?;
        Ok((l, g.into_dyn()))
    }
}

fn as_logits<F: Float>(output: &ArrayRef<F, IxDyn>) -> Result<ndarray::ArrayView2<'_, F>> {
    if output.ndim() != 2 {
        return Err(CoreError::shape("logits", &[output.shape()[0], 0], output.shape()).into());
    }
    Ok(output
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(CoreError::from)?)
}

/// Hooks into the loop: called after every optimizer step and at the end of every epoch.
pub trait TrainHooks<F: Float> {
    /// After optimizer step `step` (counted from 0 over the whole run).
    ///
    /// # Errors
    ///
    /// Stops training with this error.
    fn on_step(&mut self, step: usize, model: &mut dyn Layer<F>) -> Result<()> {
        let _ = (step, model);
        Ok(())
    }
    /// After each epoch; return `false` to stop training.
    fn on_epoch(&mut self, stats: &EpochStats) -> bool {
        let _ = stats;
        true
    }
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;
impl<F: Float> TrainHooks<F> for NoHooks {}

/// What happened in one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// Epoch index from 0.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy measured during the epoch (in training mode).
    pub train_accuracy: f64,
    /// Accuracy on the validation set, if one was given.
    pub valid_accuracy: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
}

/// Summary of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainReport {
    /// Per-epoch statistics.
    pub epochs: Vec<EpochStats>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Best validation accuracy and its epoch, when validating.
    pub best_valid: Option<(usize, f64)>,
}

/// Training configuration. Defaults: 10 epochs, batch 32, seed 0, constant rate,
/// no early stopping.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Seed of the minibatch shuffles.
    pub seed: u64,
    /// Learning-rate schedule over epochs (from the optimizer's initial rate).
    pub schedule: LrSchedule,
    /// Stop when validation accuracy has not improved for this many epochs, and restore
    /// the best weights.
    pub patience: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            seed: 0,
            schedule: LrSchedule::Constant,
            patience: None,
        }
    }
}

/// Runs minibatch training of a [`Layer`] with an [`Optimizer`].
#[derive(Debug, Clone, Default)]
pub struct Trainer {
    /// The configuration.
    pub config: TrainConfig,
}

impl Trainer {
    /// A trainer with `config`.
    pub fn new(config: TrainConfig) -> Self {
        Self { config }
    }

    /// Trains with softmax cross-entropy and no hooks.
    ///
    /// # Errors
    ///
    /// As [`Trainer::fit_with`].
    pub fn fit<F: Float>(
        &self,
        model: &mut dyn Layer<F>,
        optimizer: &mut dyn Optimizer<F>,
        train: &Dataset<F>,
        valid: Option<&Dataset<F>>,
    ) -> Result<TrainReport> {
        self.fit_with(
            model,
            optimizer,
            train,
            valid,
            &mut CrossEntropy,
            &mut NoHooks,
        )
    }

    /// Trains with a custom loss and hooks.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero batch size, [`NnError::Diverged`] when the
    /// loss stops being finite, [`NnError::DivergedParam`] when a parameter holds a NaN or
    /// infinity at the end of an epoch, and any layer, loss or hook error.
    pub fn fit_with<F: Float>(
        &self,
        model: &mut dyn Layer<F>,
        optimizer: &mut dyn Optimizer<F>,
        train: &Dataset<F>,
        valid: Option<&Dataset<F>>,
        loss: &mut dyn Loss<F>,
        hooks: &mut dyn TrainHooks<F>,
    ) -> Result<TrainReport> {
        let cfg = &self.config;
        let mut minibatches = Minibatches::new(train.len(), cfg.batch_size, cfg.seed)?
            .epochs(cfg.epochs, cfg.schedule);
        let mut report = TrainReport::default();
        let mut best_state = None;
        let mut since_best = 0;
        while let Some(Epoch {
            index: epoch,
            lr,
            batches,
            ..
        }) = minibatches.next_epoch(&mut *optimizer)
        {
            let (mut loss_sum, mut correct) = (0.0, 0usize);
            for idx in batches {
                let (x, y) = train.batch(idx);
                model.zero_grad();
                let out = model.forward(&x, Mode::Train)?;
                let (l, g) = loss.loss(&out, idx, &y)?;
                check_loss(l, epoch, report.steps)?;
                if out.ndim() == 2 {
                    let pred = argmax_rows(&as_logits(&out)?);
                    correct += pred.iter().zip(&y).filter(|(a, b)| a == b).count();
                }
                loss_sum += l.as_f64() * idx.len() as f64;
                model.backward(&g)?;
                optimizer.step(model)?;
                hooks.on_step(report.steps, model)?;
                report.steps += 1;
            }
            check_params_finite(&*model, epoch, report.steps)?;
            let n = train.len().max(1) as f64;
            let valid_accuracy = match valid {
                Some(v) => Some(evaluate(model, v, cfg.batch_size.max(256))?),
                None => None,
            };
            let stats = EpochStats {
                epoch,
                train_loss: loss_sum / n,
                train_accuracy: correct as f64 / n,
                valid_accuracy,
                lr,
            };
            let keep_going = hooks.on_epoch(&stats);
            report.epochs.push(stats);
            if let Some(acc) = valid_accuracy {
                if report.best_valid.is_none_or(|(_, b)| acc > b) {
                    report.best_valid = Some((epoch, acc));
                    since_best = 0;
                    if cfg.patience.is_some() {
                        best_state = Some(model.stored_dict());
                    }
                } else {
                    since_best += 1;
                }
                if cfg.patience.is_some_and(|p| since_best >= p) {
                    break;
                }
            }
            if !keep_going {
                break;
            }
        }
        if let Some(state) = best_state {
            model.load_state(&state)?;
        }
        Ok(report)
    }
}

/// The epoch and minibatch iteration every training loop shares: before each epoch the
/// optimizer gets the epoch's learning rate from an [`LrSchedule`] (applied to the rate the
/// optimizer had when the first epoch started) and the sample order is shuffled by a
/// generator seeded once per run; the shuffled order is then cut into minibatches of
/// `batch_size` (the last one may be shorter).
///
/// Each [`Epoch`] also lends the generator, so a loop that draws more randomness per step
/// (sampled widths, dropout masks) draws it from the same stream, after the epoch's
/// shuffle: the draws of a run are fixed by its seed. [`Trainer`] runs on it.
///
/// ```
/// use compress_nn::train::Minibatches;
/// use compress_nn::{LrSchedule, Optimizer, Sgd};
/// # fn main() -> compress_nn::Result<()> {
/// let mut opt = Sgd::<f32>::new(0.1);
/// let schedule = LrSchedule::Step { step_size: 1, gamma: 0.5 };
/// let mut minibatches = Minibatches::new(10, 4, 0)?.epochs(2, schedule);
/// while let Some(epoch) = minibatches.next_epoch(&mut opt) {
///     assert_eq!(opt.lr(), epoch.lr as f32);
///     let sizes: Vec<usize> = epoch.batches.map(<[usize]>::len).collect();
///     assert_eq!(sizes, [4, 4, 2]);
/// }
/// assert_eq!(opt.lr(), 0.05);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Minibatches {
    order: Vec<usize>,
    rng: StdRng,
    batch_size: usize,
    epochs: usize,
    next: usize,
    schedule: LrSchedule,
    base_lr: Option<f64>,
}

/// One epoch of [`Minibatches`].
#[derive(Debug)]
pub struct Epoch<'a> {
    /// Epoch index from 0.
    pub index: usize,
    /// The learning rate the optimizer was given for this epoch.
    pub lr: f64,
    /// The minibatches: this epoch's shuffled sample indices in chunks of the batch size.
    pub batches: Chunks<'a, usize>,
    /// The run's generator, after this epoch's shuffle.
    pub rng: &'a mut StdRng,
}

impl Minibatches {
    /// Minibatches of `batch_size` over `samples` samples, shuffled by a generator seeded
    /// with `seed`; one epoch at a constant rate until [`Minibatches::epochs`] says more.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a zero batch size.
    pub fn new(samples: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(CoreError::config("batch_size", "must be at least 1, got 0").into());
        }
        Ok(Self {
            order: (0..samples).collect(),
            rng: StdRng::seed_from_u64(seed),
            batch_size,
            epochs: 1,
            next: 0,
            schedule: LrSchedule::Constant,
            base_lr: None,
        })
    }

    /// Runs `epochs` epochs with the learning rates of `schedule`.
    #[must_use]
    pub fn epochs(mut self, epochs: usize, schedule: LrSchedule) -> Self {
        self.epochs = epochs;
        self.schedule = schedule;
        self
    }

    /// Starts the next epoch: sets its learning rate on `optimizer` and shuffles the order;
    /// `None` after the last epoch.
    pub fn next_epoch<F: Float>(&mut self, optimizer: &mut dyn Optimizer<F>) -> Option<Epoch<'_>> {
        if self.next >= self.epochs {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let base = *self.base_lr.get_or_insert_with(|| optimizer.lr().as_f64());
        let lr = self.schedule.lr_at(base, index, self.epochs);
        optimizer.set_lr(F::lit(lr));
        self.order.shuffle(&mut self.rng);
        Some(Epoch {
            index,
            lr,
            batches: self.order.chunks(self.batch_size),
            rng: &mut self.rng,
        })
    }
}

/// `Ok` for a finite loss, else [`NnError::Diverged`] at `epoch` and `step` (the check
/// every training loop makes after each loss).
///
/// # Errors
///
/// [`NnError::Diverged`] for a NaN or infinite `loss`.
pub fn check_loss<F: Float>(loss: F, epoch: usize, step: usize) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(NnError::Diverged {
            epoch,
            step,
            loss: loss.as_f64(),
        })
    }
}

/// Model outputs for every sample of `x`, computed in eval mode in batches of `batch`.
///
/// # Errors
///
/// Any layer error.
pub fn predict_outputs<F: Float>(
    model: &mut dyn Layer<F>,
    x: &ArrayD<F>,
    batch: usize,
) -> Result<ArrayD<F>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let batch = batch.max(1);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let xb = x.slice_axis(ndarray::Axis(0), (start..end).into());
        parts.push(model.forward(&xb, Mode::Eval)?);
        start = end;
    }
    if parts.is_empty() {
        return Ok(model.forward(x, Mode::Eval)?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(ndarray::concatenate(ndarray::Axis(0), &views).map_err(CoreError::from)?)
}

/// Predicted classes (argmax of the outputs) for every sample of `x`.
///
/// # Errors
///
/// Any layer error, or outputs that are not `[N, classes]`.
pub fn predict<F: Float>(
    model: &mut dyn Layer<F>,
    x: &ArrayD<F>,
    batch: usize,
) -> Result<Vec<usize>> {
    let out = predict_outputs(model, x, batch)?;
    Ok(argmax_rows(&as_logits(&out)?))
}

/// Accuracy of `model` on `data` in eval mode.
///
/// # Errors
///
/// As [`predict`].
pub fn evaluate<F: Float>(
    model: &mut dyn Layer<F>,
    data: &Dataset<F>,
    batch: usize,
) -> Result<f64> {
    Ok(accuracy(&predict(model, &data.x, batch)?, &data.labels))
}

/// [`NnError::DivergedParam`] for the first parameter holding a NaN or infinity.
fn check_params_finite<F: Float>(model: &dyn Layer<F>, epoch: usize, step: usize) -> Result<()> {
    let mut bad = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            if bad.is_none()
                && let Some(index) = p.value().iter().position(|x| !x.is_finite())
            {
                let value = p.value().iter().nth(index).map_or(f64::NAN, |v| v.as_f64());
                bad = Some((path.to_string(), index, value));
            }
        },
    );
    match bad {
        None => Ok(()),
        Some((path, index, value)) => Err(NnError::DivergedParam {
            epoch,
            step,
            path,
            index,
            value,
        }),
    }
}
