//! FitNets hint loss (Romero et al. 2015): a student layer's output, passed through a
//! learnable regressor, is pulled towards a teacher layer's output.

use compress_core::derive::Module;
use compress_core::{CoreError, Float, Layer, Mode, TensorExt};
use compress_nn::Linear;
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use crate::Result;
use crate::softmax::check_weight;

/// FitNets hint loss `weight * mean((r(student_features) - teacher_features)^2)`, where
/// `r` is a learnable regressor (any [`Layer`]; usually a [`Linear`] for flat features or
/// a 1x1 convolution for feature maps) that maps the student's width to the teacher's.
///
/// The mean runs over every element (batch and features), as in torchdistill; FitNets'
/// `1/2 * sum` differs by a constant factor that the learning rate absorbs.
///
/// [`HintLoss::forward_backward`] accumulates the regressor's parameter gradients (step
/// them with any [`compress_nn::Optimizer`], since `HintLoss` is a [`Module`] whose
/// parameters are `regressor.*`) and returns the gradient with respect to the student
/// features, to back-propagate into the student.
///
/// ```
/// use compress_core::Module;
/// use compress_distill::HintLoss;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut hint = HintLoss::<f64>::linear(4, 6, &mut rng);
/// let student = ArrayD::from_elem(vec![2, 4], 0.5);
/// let teacher = ArrayD::from_elem(vec![2, 6], 1.0);
/// let (loss, grad) = hint.forward_backward(&student, &teacher).unwrap();
/// assert!(loss > 0.0);
/// assert_eq!(grad.shape(), &[2, 4]);
/// assert_eq!(hint.named_params()[0].path, "regressor.weight");
/// ```
#[derive(Debug, Module)]
pub struct HintLoss<F: Float> {
    regressor: Box<dyn Layer<F>>,
    #[module(skip)]
    weight: f64,
}

impl<F: Float> HintLoss<F> {
    /// A hint loss with the given regressor and weight 1.
    pub fn new(regressor: impl Layer<F> + 'static) -> Self {
        Self {
            regressor: Box::new(regressor),
            weight: 1.0,
        }
    }

    /// A hint loss whose regressor is a freshly initialised `Linear(student_dim,
    /// teacher_dim)` with bias.
    pub fn linear<R: Rng + ?Sized>(student_dim: usize, teacher_dim: usize, rng: &mut R) -> Self {
        Self::new(Linear::new(student_dim, teacher_dim, true, rng))
    }

    /// Sets the loss weight.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `weight` unless it is finite and `>= 0`.
    pub fn with_weight(mut self, weight: f64) -> Result<Self> {
        check_weight("weight", weight)?;
        self.weight = weight;
        Ok(self)
    }

    /// The loss weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The regressor.
    pub fn regressor(&self) -> &dyn Layer<F> {
        self.regressor.as_ref()
    }

    /// The regressor, mutably.
    pub fn regressor_mut(&mut self) -> &mut dyn Layer<F> {
        self.regressor.as_mut()
    }

    fn mse(&self, pred: ArrayD<F>, teacher: &ArrayRef<F, IxDyn>) -> Result<(F, ArrayD<F>)> {
        if pred.shape() != teacher.shape() {
            return Err(CoreError::shape("teacher features", pred.shape(), teacher.shape()).into());
        }
        teacher.check_finite("teacher features")?;
        let n = pred.len().max(1) as f64;
        let w = F::lit(self.weight);
        let diff = pred - teacher;
        let loss = diff.iter().fold(F::zero(), |a, &d| a + d * d) * F::lit(1.0 / n) * w;
        let scale = F::lit(2.0 * self.weight / n);
        Ok((loss, diff.mapv(|d| d * scale)))
    }

    /// The loss alone (regressor run in [`Mode::Eval`], nothing accumulated).
    ///
    /// # Errors
    ///
    /// A regressor error (its input shape), a shape mismatch between the regressor's
    /// output and `teacher_features`, or non-finite inputs.
    pub fn loss(
        &mut self,
        student_features: &ArrayRef<F, IxDyn>,
        teacher_features: &ArrayRef<F, IxDyn>,
    ) -> Result<F> {
        student_features.check_finite("student features")?;
        let pred = self.regressor.forward(student_features, Mode::Eval)?;
        Ok(self.mse(pred, teacher_features)?.0)
    }

    /// The loss and its gradient with respect to `student_features`; the regressor's
    /// parameter gradients are accumulated (call `zero_grad` between steps).
    ///
    /// # Errors
    ///
    /// As [`HintLoss::loss`].
    pub fn forward_backward(
        &mut self,
        student_features: &ArrayRef<F, IxDyn>,
        teacher_features: &ArrayRef<F, IxDyn>,
    ) -> Result<(F, ArrayD<F>)> {
        student_features.check_finite("student features")?;
        let pred = self.regressor.forward(student_features, Mode::Train)?;
        let (loss, g) = self.mse(pred, teacher_features)?;
        let gx = self.regressor.backward(&g)?;
        Ok((loss, gx))
    }
}
