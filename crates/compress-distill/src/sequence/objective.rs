//! The weighted embedding-distillation objective: cosine, MSE and InfoNCE on pooled
//! embeddings plus FitNets hints on token hidden states.

use compress_core::{CoreError, Float};
use ndarray::{Array2, Array3};

use super::encoder::{EncoderOutput, gather_tokens, scatter_tokens};
use crate::softmax::check_weight;
use crate::{
    HintLoss, InfoNceConfig, Result, cosine_embedding_loss, info_nce_loss, mse_embedding_loss,
};

/// Weights of the terms of an embedding-distillation objective (each `>= 0`, at least one
/// `> 0`):
///
/// `cosine * mean(1 - cos(s_i, t_i)) + mse * mean((s - t)^2) + info_nce * InfoNCE(s, t)
///  + hint * mean over hint pairs of mean((r(h_s) - h_t)^2)`
///
/// on the pooled embeddings `s`, `t` (un-normalised) and, for the hints, on the hidden
/// states of the real tokens through a learnable regressor `r` ([`HintLoss`]; a linear map
/// when the widths differ, the identity otherwise).
///
/// Default: cosine alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingObjective {
    /// Weight of the cosine loss ([`cosine_embedding_loss`]).
    pub cosine: f64,
    /// Weight of the MSE loss ([`mse_embedding_loss`]).
    pub mse: f64,
    /// Weight of the InfoNCE loss ([`info_nce_loss`]).
    pub info_nce: f64,
    /// Temperature and symmetry of the InfoNCE term.
    pub info_nce_config: InfoNceConfig,
    /// Weight of the hidden-state hints (split evenly over the hint pairs).
    pub hint: f64,
}

impl Default for EmbeddingObjective {
    fn default() -> Self {
        Self {
            cosine: 1.0,
            mse: 0.0,
            info_nce: 0.0,
            info_nce_config: InfoNceConfig::default(),
            hint: 0.0,
        }
    }
}

impl EmbeddingObjective {
    /// MSE on the pooled embeddings alone.
    pub fn mse_only() -> Self {
        Self {
            cosine: 0.0,
            mse: 1.0,
            ..Self::default()
        }
    }

    /// Adds an InfoNCE term of weight `weight` at `temperature` (symmetric).
    #[must_use]
    pub fn with_info_nce(mut self, weight: f64, temperature: f64) -> Self {
        self.info_nce = weight;
        self.info_nce_config = InfoNceConfig {
            temperature,
            symmetric: true,
        };
        self
    }

    /// Sets the weight of the hidden-state hints.
    #[must_use]
    pub fn with_hints(mut self, weight: f64) -> Self {
        self.hint = weight;
        self
    }

    /// Checks the weights and the temperature.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the weight that is negative or not finite, the
    /// temperature, or all weights zero.
    pub fn validate(&self) -> Result<()> {
        for (name, w) in [
            ("cosine", self.cosine),
            ("mse", self.mse),
            ("info_nce", self.info_nce),
            ("hint", self.hint),
        ] {
            check_weight(name, w)?;
        }
        crate::softmax::check_temperature("temperature", self.info_nce_config.temperature)?;
        if self.cosine + self.mse + self.info_nce + self.hint == 0.0 {
            return Err(CoreError::config("objective", "every weight is zero").into());
        }
        Ok(())
    }
}

/// The value of an [`EmbeddingObjective`] and of each weighted term.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ObjectiveValue {
    /// The weighted sum.
    pub total: f64,
    /// `cosine * cosine loss`.
    pub cosine: f64,
    /// `mse * MSE`.
    pub mse: f64,
    /// `info_nce * InfoNCE`.
    pub info_nce: f64,
    /// The weighted hint losses.
    pub hint: f64,
}

impl ObjectiveValue {
    /// `self + other * k`, term by term (for running means).
    #[must_use]
    pub fn add_scaled(self, other: &Self, k: f64) -> Self {
        Self {
            total: self.total + other.total * k,
            cosine: self.cosine + other.cosine * k,
            mse: self.mse + other.mse * k,
            info_nce: self.info_nce + other.info_nce * k,
            hint: self.hint + other.hint * k,
        }
    }
}

/// What the teacher gives for one batch: pooled embeddings `[batch, width]` and, per hint
/// pair, the hidden states of the real tokens `[tokens, width]` (sequence by sequence, as
/// [`gather_tokens`] orders them).
#[derive(Debug, Clone)]
pub struct TeacherTargets<F: Float> {
    /// Pooled teacher embeddings.
    pub pooled: Array2<F>,
    /// Token hidden states, one matrix per hint pair.
    pub tokens: Vec<Array2<F>>,
}

/// The objective's gradients with respect to the student's outputs.
#[derive(Debug, Clone)]
pub struct ObjectiveGrad<F: Float> {
    /// Gradient of the pooled embeddings.
    pub pooled: Array2<F>,
    /// Gradient of each returned hidden state (`None` when it has no hint).
    pub hidden: Vec<Option<Array3<F>>>,
}

impl EmbeddingObjective {
    /// The objective of `student` (whose `hidden[k]` is hinted by `hints[k]` against
    /// `teacher.tokens[k]`) and its gradients. With `train`, the regressors run in
    /// training mode and accumulate their parameter gradients; otherwise nothing is
    /// accumulated (the value is the same).
    ///
    /// # Errors
    ///
    /// An invalid objective, pooled embeddings of different shapes, non-finite values,
    /// `hints`, `student.hidden` and `teacher.tokens` of different lengths, or hidden
    /// states the regressors do not map to the teacher's width.
    pub fn compute<F: Float>(
        &self,
        student: &EncoderOutput<F>,
        teacher: &TeacherTargets<F>,
        hints: &mut [HintLoss<F>],
        train: bool,
    ) -> Result<(ObjectiveValue, ObjectiveGrad<F>)> {
        self.validate()?;
        let (s, t) = (&student.pooled, &teacher.pooled);
        let mut value = ObjectiveValue::default();
        let mut grad = Array2::<F>::zeros(s.raw_dim());
        if self.cosine > 0.0 {
            let (l, g) = cosine_embedding_loss(s, t)?;
            value.cosine = self.cosine * l.as_f64();
            grad.scaled_add(F::lit(self.cosine), &g);
        }
        if self.mse > 0.0 {
            let (l, g) = mse_embedding_loss(s, t)?;
            value.mse = self.mse * l.as_f64();
            grad.scaled_add(F::lit(self.mse), &g);
        }
        if self.info_nce > 0.0 {
            let (l, g) = info_nce_loss(s, t, &self.info_nce_config)?;
            value.info_nce = self.info_nce * l.as_f64();
            grad.scaled_add(F::lit(self.info_nce), &g);
        }
        let n = hints.len();
        if student.hidden.len() != n || teacher.tokens.len() != n {
            return Err(CoreError::config(
                "hints",
                format!(
                    "{n} hint regressors, {} student hidden states, {} teacher targets",
                    student.hidden.len(),
                    teacher.tokens.len()
                ),
            )
            .into());
        }
        let mut hidden = Vec::with_capacity(n);
        for ((h, hint), target) in student.hidden.iter().zip(hints).zip(&teacher.tokens) {
            let x = gather_tokens(h, &student.mask)?.into_dyn();
            let target = target.view().into_dyn();
            if train {
                let (l, g) = hint.forward_backward(&x, &target)?;
                value.hint += l.as_f64();
                let g = g.into_dimensionality().map_err(CoreError::from)?;
                hidden.push(Some(scatter_tokens(&g, &student.mask)?));
            } else {
                value.hint += hint.loss(&x, &target)?.as_f64();
                hidden.push(None);
            }
        }
        value.total = value.cosine + value.mse + value.info_nce + value.hint;
        Ok((
            value,
            ObjectiveGrad {
                pooled: grad,
                hidden,
            },
        ))
    }
}
