//! The `Distiller`: trains a student against a frozen teacher.

use compress_core::{Float, Layer};
use compress_nn::train::{NoHooks, TrainHooks, predict};
use compress_nn::{Dataset, Optimizer, TrainConfig, TrainReport, Trainer};

use super::objective::{DistillLoss, DistillObjective};
use crate::Result;

/// Settings of a [`Distiller`].
///
/// Defaults: Hinton KD at `T = 4`, `alpha = 0.9`; teacher logits cached; compress-nn's
/// default [`TrainConfig`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DistillConfig {
    /// The distillation loss.
    pub loss: DistillLoss,
    /// Cache the teacher's logits per training sample (exact: the teacher runs in eval
    /// mode and the training inputs do not change).
    pub cache_teacher: bool,
    /// Epochs, batch size, seed, schedule, early stopping.
    pub train: TrainConfig,
}

impl DistillConfig {
    /// A configuration with `loss` and `train`, teacher caching on.
    pub fn new(loss: DistillLoss, train: TrainConfig) -> Self {
        Self {
            loss,
            cache_teacher: true,
            train,
        }
    }
}

/// Teacher and student accuracy on a data set, and how often they agree.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DistillReport {
    /// Teacher accuracy in `[0, 1]`.
    pub teacher_accuracy: f64,
    /// Student accuracy in `[0, 1]`.
    pub student_accuracy: f64,
    /// Fraction of samples where the student's argmax equals the teacher's.
    pub agreement: f64,
    /// Samples evaluated.
    pub samples: usize,
}

/// Fraction of positions where `a` and `b` hold the same class (0 for empty input).
///
/// ```
/// assert_eq!(compress_distill::agreement(&[1, 2, 3, 4], &[1, 2, 0, 4]), 0.75);
/// ```
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

/// Trains any student [`Layer`] against any teacher [`Layer`] with a logit-distillation
/// loss, on compress-nn's [`Trainer`].
///
/// The teacher is only ever run in [`Mode::Eval`](compress_core::Mode::Eval) (dropout
/// off, batch-norm running statistics used and left alone) and is never given a
/// gradient or passed to the optimizer, so its parameters are bit-for-bit unchanged by
/// training. The student can carry any parametrizations (pruning masks, fake
/// quantization): the optimizer updates it through them as in plain training.
///
/// ```
/// use compress_distill::{DistillConfig, DistillLoss, Distiller, KdConfig};
/// use compress_nn::data::digits;
/// use compress_nn::models::mlp;
/// use compress_nn::{Sgd, TrainConfig, Trainer};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let (train, test) = digits::<f32>().unwrap();
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut teacher = mlp::<f32, _>(&[64, 64, 10], &mut rng);
/// let fit = TrainConfig { epochs: 3, ..TrainConfig::default() };
/// Trainer::new(fit.clone())
///     .fit(&mut teacher, &mut Sgd::new(0.1).momentum(0.9), &train, None)
///     .unwrap();
///
/// let mut student = mlp::<f32, _>(&[64, 16, 10], &mut rng);
/// let config = DistillConfig::new(DistillLoss::Kd(KdConfig::new(4.0, 0.9).unwrap()), fit);
/// let mut distiller = Distiller::new(&mut teacher, config).unwrap();
/// distiller
///     .fit(&mut student, &mut Sgd::new(0.1).momentum(0.9), &train, None)
///     .unwrap();
/// let report = distiller.evaluate(&mut student, &test).unwrap();
/// assert!(report.student_accuracy > 0.5 && report.agreement > 0.5);
/// ```
#[derive(Debug)]
pub struct Distiller<'t, F: Float> {
    teacher: &'t mut dyn Layer<F>,
    config: DistillConfig,
    teacher_forwards: usize,
}

impl<'t, F: Float> Distiller<'t, F> {
    /// A distiller for `teacher`.
    ///
    /// # Errors
    ///
    /// An invalid loss configuration or a zero batch size, as
    /// [`CoreError::InvalidConfig`](compress_core::CoreError::InvalidConfig).
    pub fn new(teacher: &'t mut dyn Layer<F>, config: DistillConfig) -> Result<Self> {
        config.loss.validate()?;
        if config.train.batch_size == 0 {
            return Err(compress_core::CoreError::config(
                "batch_size",
                "must be at least 1, got 0",
            )
            .into());
        }
        Ok(Self {
            teacher,
            config,
            teacher_forwards: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DistillConfig {
        &self.config
    }

    /// The teacher.
    pub fn teacher(&self) -> &dyn Layer<F> {
        &*self.teacher
    }

    /// Samples passed through the teacher during the last `fit` (with caching, each
    /// training sample once).
    pub fn teacher_forwards(&self) -> usize {
        self.teacher_forwards
    }

    /// Trains `student` on `train` (validating on `valid` if given).
    ///
    /// # Errors
    ///
    /// As [`Distiller::fit_with_hooks`].
    pub fn fit(
        &mut self,
        student: &mut dyn Layer<F>,
        optimizer: &mut dyn Optimizer<F>,
        train: &Dataset<F>,
        valid: Option<&Dataset<F>>,
    ) -> Result<TrainReport> {
        self.fit_with_hooks(student, optimizer, train, valid, &mut NoHooks)
    }

    /// Trains `student` with per-step and per-epoch `hooks` (e.g. a pruning schedule).
    ///
    /// # Errors
    ///
    /// Teacher or student layer errors (shapes), teacher and student logits of
    /// different shapes, label errors, divergence
    /// ([`NnError::Diverged`](compress_nn::NnError::Diverged)) and hook errors.
    pub fn fit_with_hooks(
        &mut self,
        student: &mut dyn Layer<F>,
        optimizer: &mut dyn Optimizer<F>,
        train: &Dataset<F>,
        valid: Option<&Dataset<F>>,
        hooks: &mut dyn TrainHooks<F>,
    ) -> Result<TrainReport> {
        let mut objective = DistillObjective::new(
            &mut *self.teacher,
            train,
            self.config.loss,
            self.config.cache_teacher,
        )?;
        let trainer = Trainer::new(self.config.train.clone());
        let report = trainer.fit_with(student, optimizer, train, valid, &mut objective, hooks);
        self.teacher_forwards = objective.teacher_forwards();
        Ok(report?)
    }

    /// Teacher and student accuracy on `data` and their agreement (both in eval mode).
    ///
    /// # Errors
    ///
    /// Layer errors, or outputs that are not `[N, classes]`.
    pub fn evaluate(
        &mut self,
        student: &mut dyn Layer<F>,
        data: &Dataset<F>,
    ) -> Result<DistillReport> {
        let batch = self.config.train.batch_size.max(256);
        let t = predict(&mut *self.teacher, &data.x, batch)?;
        let s = predict(student, &data.x, batch)?;
        Ok(DistillReport {
            teacher_accuracy: agreement(&t, &data.labels),
            student_accuracy: agreement(&s, &data.labels),
            agreement: agreement(&t, &s),
            samples: data.len(),
        })
    }
}
