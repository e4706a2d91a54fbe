//! `SequenceDistiller`: trains a sequence encoder to reproduce a frozen teacher's
//! embeddings on unlabeled token sequences.

use std::time::Instant;

use compress_core::{CoreError, Float, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut};
use compress_nn::{Adam, NnError, Optimizer, Sequential};
use ndarray::{Array2, Axis, concatenate};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};

use super::encoder::{SequenceEncoder, gather_tokens};
use super::objective::{EmbeddingObjective, ObjectiveValue, TeacherTargets};
use super::schedule::{Decay, WarmupSchedule, clip_grad_norm};
use crate::{HintLoss, Result};

/// Settings of a [`SequenceDistiller`].
///
/// Defaults: cosine objective, no hints, 10 epochs of batches of 16, AdamW at `1e-4`
/// with weight decay `0.01`, 10% warm-up then linear decay to 0, gradients clipped at
/// norm 1, seed 0.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceDistillConfig {
    /// The objective.
    pub objective: EmbeddingObjective,
    /// Hint pairs `(student layer, teacher layer)`, used when `objective.hint > 0`.
    pub hint_layers: Vec<(usize, usize)>,
    /// Passes over the training sequences.
    pub epochs: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled (AdamW) weight decay of the weights.
    pub weight_decay: f64,
    /// Fraction of the steps spent warming up, in `[0, 1)`.
    pub warmup: f64,
    /// Decay after the warm-up (to zero).
    pub decay: Decay,
    /// Global gradient-norm clipping (`None`: off).
    pub clip_norm: Option<f64>,
    /// Seed of the batch order and of the hint regressors.
    pub seed: u64,
}

impl Default for SequenceDistillConfig {
    fn default() -> Self {
        Self {
            objective: EmbeddingObjective::default(),
            hint_layers: Vec::new(),
            epochs: 10,
            batch_size: 16,
            lr: 1e-4,
            weight_decay: 0.01,
            warmup: 0.1,
            decay: Decay::Linear,
            clip_norm: Some(1.0),
            seed: 0,
        }
    }
}

impl SequenceDistillConfig {
    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        self.objective.validate()?;
        let bad = |name: &str, reason: String| Err(CoreError::config(name, reason).into());
        if self.batch_size < 2 {
            return bad(
                "batch_size",
                format!("must be at least 2, got {}", self.batch_size),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be finite and > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be finite and >= 0, got {}", self.weight_decay),
            );
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup", format!("must be in [0, 1), got {}", self.warmup));
        }
        if let Some(c) = self.clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad("clip_norm", format!("must be finite and > 0, got {c}"));
        }
        Ok(())
    }

    /// The hint pairs in use (none when the hint weight is zero).
    fn hints(&self) -> &[(usize, usize)] {
        if self.objective.hint > 0.0 {
            &self.hint_layers
        } else {
            &[]
        }
    }
}

/// Progress of one optimizer step, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Step index (0-based).
    pub step: usize,
    /// Steps of the whole run.
    pub steps: usize,
    /// Epoch index.
    pub epoch: usize,
    /// The objective on this step's batch.
    pub loss: ObjectiveValue,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training sequences per second since the start of the run.
    pub examples_per_sec: f64,
}

/// What a [`SequenceDistiller::fit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FitReport {
    /// Optimizer steps.
    pub steps: usize,
    /// Training sequences processed (with repeats over epochs).
    pub examples: usize,
    /// Wall time of the training loop in seconds.
    pub seconds: f64,
    /// `examples / seconds`.
    pub examples_per_sec: f64,
    /// Mean objective over the first epoch's batches.
    pub first_epoch: ObjectiveValue,
    /// Mean objective over the last epoch's batches.
    pub last_epoch: ObjectiveValue,
}

/// The teacher's outputs for every training sequence, computed once (the teacher is
/// frozen and deterministic in [`Mode::Eval`]).
#[derive(Debug, Clone)]
struct TeacherCache<F: Float> {
    pooled: Array2<F>,
    /// `tokens[k][i]`: hint pair `k`'s hidden states of sequence `i`, `[len_i, width]`.
    tokens: Vec<Vec<Array2<F>>>,
}

impl<F: Float> TeacherCache<F> {
    fn targets(&self, batch: &[usize]) -> Result<TeacherTargets<F>> {
        let pooled = self.pooled.select(Axis(0), batch);
        let tokens = self
            .tokens
            .iter()
            .map(|per_seq| {
                let views: Vec<_> = batch.iter().map(|&i| per_seq[i].view()).collect();
                concatenate(Axis(0), &views).map_err(CoreError::from)
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(TeacherTargets { pooled, tokens })
    }
}

/// The student and the hint regressors as one [`Module`] (`student.*`, `hints.N.*`), so
/// one optimizer and one clipping see every trained tensor.
struct Trained<'a, F: Float> {
    student: &'a mut dyn SequenceEncoder<F>,
    hints: &'a mut Vec<HintLoss<F>>,
}

impl<F: Float> Module<F> for Trained<'_, F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("student", |p| self.student.visit(p, v));
        path.scoped("hints", |p| self.hints.visit(p, v));
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        path.scoped("student", |p| self.student.visit_mut(p, v))?;
        path.scoped("hints", |p| self.hints.visit_mut(p, v))
    }
}

/// Distils a frozen teacher [`SequenceEncoder`] into a student on unlabeled token
/// sequences: pooled-embedding losses (cosine, MSE, InfoNCE over the batch) and hidden-state
/// hints, weighted by an [`EmbeddingObjective`]; AdamW with warm-up and decay, gradient
/// clipping, length-bucketed mini-batches (each padded to its longest sequence).
///
/// The teacher runs once per training sequence, in [`SequenceDistiller::new`]; training
/// only runs the student. Hint regressors (a `Linear` when the two widths differ, the
/// identity otherwise) are created there too and trained with the student.
#[derive(Debug)]
pub struct SequenceDistiller<F: Float> {
    config: SequenceDistillConfig,
    train: Vec<Vec<usize>>,
    cache: TeacherCache<F>,
    hints: Vec<HintLoss<F>>,
    teacher_seconds: f64,
}

/// Sequence indices in batches of about `batch` sequences of similar lengths, in a
/// random order (shuffled, sorted by length within windows of 4 batches, batches shuffled).
fn bucketed_batches(lengths: &[usize], batch: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::new();
    for window in order.chunks_mut(batch * 4) {
        window.sort_by_key(|&i| lengths[i]);
        batches.extend(window.chunks(batch).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

impl<F: Float> SequenceDistiller<F> {
    /// Runs `teacher` (in [`Mode::Eval`], batches of `config.batch_size`) over `train`
    /// and keeps its pooled embeddings and hinted hidden states; builds the hint
    /// regressors for `student_widths` (`student_widths[k]` is the width of the student
    /// layer of hint pair `k`).
    ///
    /// # Errors
    ///
    /// An invalid configuration, fewer than 2 training sequences, a hint layer outside
    /// the teacher, `student_widths` not matching the hint pairs, or a teacher error.
    pub fn new(
        teacher: &mut dyn SequenceEncoder<F>,
        train: Vec<Vec<usize>>,
        student_widths: &[usize],
        config: SequenceDistillConfig,
    ) -> Result<Self> {
        config.validate()?;
        if train.len() < 2 {
            return Err(CoreError::config(
                "train",
                format!("need at least 2 sequences, got {}", train.len()),
            )
            .into());
        }
        let pairs = config.hints().to_vec();
        if student_widths.len() != pairs.len() {
            return Err(CoreError::config(
                "student_widths",
                format!(
                    "{} widths for {} hint pairs",
                    student_widths.len(),
                    pairs.len()
                ),
            )
            .into());
        }
        let t_layers: Vec<usize> = pairs.iter().map(|&(_, t)| t).collect();
        if let Some(&l) = t_layers.iter().find(|&&l| l >= teacher.num_layers()) {
            return Err(CoreError::config(
                "hint_layers",
                format!("teacher layer {l} >= {} layers", teacher.num_layers()),
            )
            .into());
        }
        let start = Instant::now();
        let mut pooled = Vec::with_capacity(train.len());
        let mut tokens: Vec<Vec<Array2<F>>> = vec![Vec::with_capacity(train.len()); pairs.len()];
        for chunk in train.chunks(config.batch_size) {
            let seqs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
            let out = teacher.encode(&seqs, &t_layers, Mode::Eval)?;
            pooled.push(out.pooled);
            for (k, h) in out.hidden.iter().enumerate() {
                let rows = gather_tokens(h, &out.mask)?;
                let mut at = 0;
                for b in 0..out.mask.batch() {
                    let n = out.mask.count(b);
                    tokens[k].push(rows.slice(ndarray::s![at..at + n, ..]).to_owned());
                    at += n;
                }
            }
        }
        let views: Vec<_> = pooled.iter().map(|p| p.view()).collect();
        let pooled = concatenate(Axis(0), &views).map_err(CoreError::from)?;
        let teacher_seconds = start.elapsed().as_secs_f64();
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed_4a17);
        let per_pair = config.objective.hint / pairs.len().max(1) as f64;
        let hints = pairs
            .iter()
            .zip(student_widths)
            .map(|(&(_, t), &sw)| {
                let tw = teacher.width(t);
                let hint = if sw == tw {
                    HintLoss::new(Sequential::new())
                } else {
                    HintLoss::linear(sw, tw, &mut rng)
                };
                hint.with_weight(per_pair)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            train,
            cache: TeacherCache { pooled, tokens },
            hints,
            teacher_seconds,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SequenceDistillConfig {
        &self.config
    }

    /// Seconds the teacher took to encode the training set (once).
    pub fn teacher_seconds(&self) -> f64 {
        self.teacher_seconds
    }

    /// The hint losses (with their trained regressors).
    pub fn hints(&self) -> &[HintLoss<F>] {
        &self.hints
    }

    fn student_layers(&self) -> Vec<usize> {
        self.config.hints().iter().map(|&(s, _)| s).collect()
    }

    fn check_student(&self, student: &dyn SequenceEncoder<F>) -> Result<()> {
        if let Some(&l) = self
            .student_layers()
            .iter()
            .find(|&&l| l >= student.num_layers())
        {
            return Err(CoreError::config(
                "hint_layers",
                format!("student layer {l} >= {} layers", student.num_layers()),
            )
            .into());
        }
        Ok(())
    }

    /// The mean objective of `student` over the training sequences (eval mode, nothing
    /// accumulated; InfoNCE is taken within batches of `batch_size`, in order).
    ///
    /// # Errors
    ///
    /// Student errors and objective errors (e.g. pooled widths that differ).
    pub fn mean_loss(&mut self, student: &mut dyn SequenceEncoder<F>) -> Result<ObjectiveValue> {
        self.check_student(student)?;
        let layers = self.student_layers();
        let idx: Vec<usize> = (0..self.train.len()).collect();
        let mut sum = ObjectiveValue::default();
        for chunk in idx.chunks(self.config.batch_size) {
            let seqs: Vec<&[usize]> = chunk.iter().map(|&i| self.train[i].as_slice()).collect();
            let out = student.encode(&seqs, &layers, Mode::Eval)?;
            let targets = self.cache.targets(chunk)?;
            let (v, _) = self
                .config
                .objective
                .compute(&out, &targets, &mut self.hints, false)?;
            sum = sum.add_scaled(&v, chunk.len() as f64 / idx.len() as f64);
        }
        Ok(sum)
    }

    /// Trains `student` (and the hint regressors); `on_step` sees every step.
    ///
    /// # Errors
    ///
    /// Student errors, objective errors, and [`NnError::Diverged`] if the loss is not
    /// finite.
    pub fn fit(
        &mut self,
        student: &mut dyn SequenceEncoder<F>,
        on_step: &mut dyn FnMut(&StepStats),
    ) -> Result<FitReport> {
        self.check_student(student)?;
        let cfg = self.config.clone();
        let layers = self.student_layers();
        let lengths: Vec<usize> = self.train.iter().map(Vec::len).collect();
        let per_epoch = self.train.len().div_ceil(cfg.batch_size);
        let steps = per_epoch * cfg.epochs;
        let schedule = WarmupSchedule {
            warmup: (cfg.warmup * steps as f64).round() as usize,
            total: steps,
            decay: cfg.decay,
            min_factor: 0.0,
        };
        let mut opt = Adam::new(F::lit(cfg.lr))
            .weight_decay(F::lit(cfg.weight_decay))
            .decoupled(true);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let start = Instant::now();
        let mut report = FitReport::default();
        for epoch in 0..cfg.epochs {
            let mut epoch_loss = ObjectiveValue::default();
            let mut seen = 0usize;
            for batch in bucketed_batches(&lengths, cfg.batch_size, &mut rng) {
                let seqs: Vec<&[usize]> = batch.iter().map(|&i| self.train[i].as_slice()).collect();
                let out = student.encode(&seqs, &layers, Mode::Train)?;
                let targets = self.cache.targets(&batch)?;
                let mut trained = Trained {
                    student: &mut *student,
                    hints: &mut self.hints,
                };
                trained.zero_grad();
                let (value, grad) = cfg.objective.compute(&out, &targets, trained.hints, true)?;
                if !value.total.is_finite() {
                    return Err(NnError::Diverged {
                        epoch,
                        step: report.steps,
                        loss: value.total,
                    }
                    .into());
                }
                trained.student.backward(&grad.pooled, &grad.hidden)?;
                let grad_norm = match cfg.clip_norm {
                    Some(c) => clip_grad_norm(&mut trained, c)?,
                    None => f64::NAN,
                };
                let lr = cfg.lr * schedule.factor(report.steps);
                opt.set_lr(F::lit(lr));
                opt.step(&mut trained)?;
                report.steps += 1;
                report.examples += batch.len();
                seen += batch.len();
                epoch_loss = epoch_loss.add_scaled(&value, batch.len() as f64);
                let secs = start.elapsed().as_secs_f64();
                on_step(&StepStats {
                    step: report.steps - 1,
                    steps,
                    epoch,
                    loss: value,
                    lr,
                    grad_norm,
                    examples_per_sec: report.examples as f64 / secs.max(1e-9),
                });
            }
            let mean = ObjectiveValue::default().add_scaled(&epoch_loss, 1.0 / seen.max(1) as f64);
            if epoch == 0 {
                report.first_epoch = mean;
            }
            report.last_epoch = mean;
        }
        report.seconds = start.elapsed().as_secs_f64();
        report.examples_per_sec = report.examples as f64 / report.seconds.max(1e-9);
        Ok(report)
    }
}
