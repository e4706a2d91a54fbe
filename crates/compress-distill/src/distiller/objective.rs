//! The distillation objective plugged into compress-nn's `Trainer`, and the teacher cache.

use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::Dataset;
use compress_nn::train::Loss;
use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2};

use crate::{DkdConfig, KdConfig, Result, dkd_loss, kd_loss};

/// Which logit-distillation loss a [`Distiller`](crate::Distiller) minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DistillLoss {
    /// Hinton KD ([`kd_loss`]).
    Kd(KdConfig),
    /// Decoupled KD ([`dkd_loss`]).
    Dkd(DkdConfig),
}

impl Default for DistillLoss {
    fn default() -> Self {
        Self::Kd(KdConfig::default())
    }
}

impl DistillLoss {
    /// Checks the hyperparameters.
    ///
    /// # Errors
    ///
    /// As [`KdConfig::validate`] or [`DkdConfig::validate`].
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Kd(c) => c.validate(),
            Self::Dkd(c) => c.validate(),
        }
    }

    /// The loss and its gradient with respect to the student logits.
    ///
    /// # Errors
    ///
    /// As [`kd_loss`] or [`dkd_loss`].
    pub fn compute<F: Float>(
        &self,
        student: &ArrayView2<'_, F>,
        teacher: &ArrayView2<'_, F>,
        labels: &[usize],
    ) -> Result<(F, Array2<F>)> {
        match self {
            Self::Kd(c) => kd_loss(student, teacher, labels, c).map(|o| (o.loss, o.grad)),
            Self::Dkd(c) => dkd_loss(student, teacher, labels, c).map(|o| (o.loss, o.grad)),
        }
    }
}

/// Teacher logits of a fixed data set, computed on first use per sample index and
/// reused afterwards (the teacher is deterministic in [`Mode::Eval`], so this is exact
/// and saves one teacher forward per sample and epoch).
#[derive(Debug, Clone)]
pub struct TeacherCache<F: Float> {
    logits: Option<Array2<F>>,
    filled: Vec<bool>,
    forwards: usize,
}

impl<F: Float> TeacherCache<F> {
    /// An empty cache for a data set of `samples` samples.
    pub fn new(samples: usize) -> Self {
        Self {
            logits: None,
            filled: vec![false; samples],
            forwards: 0,
        }
    }

    /// Number of samples the cache covers.
    pub fn len(&self) -> usize {
        self.filled.len()
    }

    /// Whether it covers no samples.
    pub fn is_empty(&self) -> bool {
        self.filled.is_empty()
    }

    /// Number of samples whose logits are cached.
    pub fn cached(&self) -> usize {
        self.filled.iter().filter(|&&f| f).count()
    }

    /// Samples passed through the teacher so far.
    pub fn teacher_forwards(&self) -> usize {
        self.forwards
    }

    /// Teacher logits `[indices.len(), C]` for samples `indices` of `data`, running the
    /// teacher (in [`Mode::Eval`]) only on samples not seen before.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for an index outside the cache or data set, a teacher
    /// error, or teacher outputs that are not `[batch, C]` with a fixed `C`.
    pub fn logits(
        &mut self,
        teacher: &mut dyn Layer<F>,
        data: &Dataset<F>,
        indices: &[usize],
    ) -> Result<Array2<F>> {
        check_indices(indices, self.len().min(data.len()))?;
        let mut missing: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| !self.filled[i])
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let fresh = teacher_logits(teacher, data, &missing)?;
            self.forwards += missing.len();
            let c = fresh.ncols();
            let store = self
                .logits
                .get_or_insert_with(|| Array2::zeros((self.filled.len(), c)));
            if store.ncols() != c {
                return Err(CoreError::shape(
                    "teacher logits",
                    &[missing.len(), store.ncols()],
                    fresh.shape(),
                )
                .into());
            }
            for (row, &i) in fresh.rows().into_iter().zip(&missing) {
                store.row_mut(i).assign(&row);
                self.filled[i] = true;
            }
        }
        match &self.logits {
            Some(store) => Ok(store.select(Axis(0), indices)),
            None => Ok(Array2::zeros((0, 0))),
        }
    }
}

fn check_indices(indices: &[usize], len: usize) -> Result<()> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(CoreError::config(
            "sample index",
            format!("{bad} is out of range for {len} training samples"),
        )
        .into());
    }
    Ok(())
}

/// Runs `teacher` in [`Mode::Eval`] on samples `indices` of `data`; checks `[n, C]`.
pub(crate) fn teacher_logits<F: Float>(
    teacher: &mut dyn Layer<F>,
    data: &Dataset<F>,
    indices: &[usize],
) -> Result<Array2<F>> {
    check_indices(indices, data.len())?;
    let (x, _) = data.batch(indices);
    let out = teacher.forward(&x, Mode::Eval)?;
    if out.ndim() != 2 || out.shape()[0] != indices.len() {
        return Err(CoreError::shape("teacher logits", &[indices.len(), 0], out.shape()).into());
    }
    Ok(out.into_dimensionality::<Ix2>().map_err(CoreError::from)?)
}

/// A [`Loss`] for [`compress_nn::Trainer::fit_with`]: the student's output for the
/// samples `indices` of `data` is compared with the teacher's logits for the same
/// samples (the teacher is run in [`Mode::Eval`] only and never receives a gradient).
///
/// Use it directly to combine distillation with your own trainer settings and hooks;
/// [`Distiller`](crate::Distiller) wraps it.
#[derive(Debug)]
pub struct DistillObjective<'a, F: Float> {
    teacher: &'a mut dyn Layer<F>,
    data: &'a Dataset<F>,
    loss: DistillLoss,
    cache: Option<TeacherCache<F>>,
    forwards: usize,
}

impl<'a, F: Float> DistillObjective<'a, F> {
    /// An objective over the training set `data`; with `cache`, teacher logits are
    /// computed once per sample.
    ///
    /// # Errors
    ///
    /// As [`DistillLoss::validate`].
    pub fn new(
        teacher: &'a mut dyn Layer<F>,
        data: &'a Dataset<F>,
        loss: DistillLoss,
        cache: bool,
    ) -> Result<Self> {
        loss.validate()?;
        Ok(Self {
            teacher,
            data,
            loss,
            cache: cache.then(|| TeacherCache::new(data.len())),
            forwards: 0,
        })
    }

    /// Samples passed through the teacher so far.
    pub fn teacher_forwards(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(self.forwards, TeacherCache::teacher_forwards)
    }

    /// The teacher logits for `indices` (cached or computed).
    ///
    /// # Errors
    ///
    /// As [`TeacherCache::logits`].
    pub fn teacher_logits(&mut self, indices: &[usize]) -> Result<Array2<F>> {
        match &mut self.cache {
            Some(cache) => cache.logits(self.teacher, self.data, indices),
            None => {
                self.forwards += indices.len();
                teacher_logits(self.teacher, self.data, indices)
            }
        }
    }

    /// The distillation loss for a student output, as [`Loss::loss`] but with this
    /// crate's error type.
    ///
    /// # Errors
    ///
    /// A student output that is not `[indices.len(), C]`, a teacher error, or a loss
    /// error.
    pub fn compute(
        &mut self,
        output: &ArrayD<F>,
        indices: &[usize],
        labels: &[usize],
    ) -> Result<(F, ArrayD<F>)> {
        if output.ndim() != 2 || output.shape()[0] != indices.len() {
            return Err(
                CoreError::shape("student logits", &[indices.len(), 0], output.shape()).into(),
            );
        }
        let student = output
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(CoreError::from)?;
        let teacher = self.teacher_logits(indices)?;
        let (l, g) = self.loss.compute(&student, &teacher.view(), labels)?;
        Ok((l, g.into_dyn()))
    }
}

impl<F: Float> Loss<F> for DistillObjective<'_, F> {
    fn loss(
        &mut self,
        output: &ArrayD<F>,
        indices: &[usize],
        labels: &[usize],
    ) -> compress_nn::Result<(F, ArrayD<F>)> {
        Ok(self.compute(output, indices, labels)?)
    }
}
