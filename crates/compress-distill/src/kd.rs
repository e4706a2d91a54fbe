//! Hinton et al. (2015) knowledge distillation loss.

use compress_core::{Float, concrete};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::Result;
use crate::softmax::{check_logits, check_temperature, check_unit};
use compress_core::softmax::{RowSoftmax, kl_row};

/// Hyperparameters of the Hinton KD loss
/// `alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(labels, q_1)`.
///
/// Defaults: `temperature = 4`, `alpha = 0.9`, `t_squared = true`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdConfig {
    /// Softmax temperature `T > 0` of both teacher and student in the soft term.
    pub temperature: f64,
    /// Weight of the soft (distillation) term, in `[0, 1]`; the hard cross-entropy term
    /// gets `1 - alpha`.
    pub alpha: f64,
    /// Multiply the soft term by `T^2` (Hinton's correction; on by default).
    ///
    /// The gradient of `KL(p_T || q_T)` with respect to the student logits is
    /// `(q_T - p_T) / T`, and for large `T` the difference `q_T - p_T` itself shrinks like
    /// `1 / T`, so without the factor the soft gradients vanish like `1 / T^2` and the
    /// balance with the hard term changes with every temperature. Turning it off
    /// reproduces libraries that omit it (a frequent source of "distillation does
    /// nothing at high T" reports).
    pub t_squared: bool,
}

impl Default for KdConfig {
    fn default() -> Self {
        Self {
            temperature: 4.0,
            alpha: 0.9,
            t_squared: true,
        }
    }
}

impl KdConfig {
    /// A configuration with `temperature` and `alpha`, `T^2` scaling on.
    ///
    /// # Errors
    ///
    /// As [`KdConfig::validate`].
    pub fn new(temperature: f64, alpha: f64) -> Result<Self> {
        let c = Self {
            temperature,
            alpha,
            t_squared: true,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the hyperparameters.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`](compress_core::CoreError::InvalidConfig) naming
    /// `temperature` (not finite and `> 0`) or `alpha` (outside `[0, 1]`).
    pub fn validate(&self) -> Result<()> {
        check_temperature("temperature", self.temperature)?;
        check_unit("alpha", self.alpha)
    }

    /// The factor applied to the KL term: `alpha * T^2` (or `alpha` without `t_squared`).
    pub fn soft_weight(&self) -> f64 {
        let t2 = if self.t_squared {
            self.temperature * self.temperature
        } else {
            1.0
        };
        self.alpha * t2
    }
}

/// The value of a KD loss, its parts and its gradient with respect to the student logits.
#[derive(Debug, Clone, PartialEq)]
pub struct KdOutput<F: Float> {
    /// `alpha * T^2 * kl + (1 - alpha) * ce`.
    pub loss: F,
    /// `KL(p_T || q_T)`, batch mean, unscaled.
    pub kl: F,
    /// Cross-entropy of the student (at `T = 1`) with the labels, batch mean.
    pub ce: F,
    /// `d loss / d student_logits`, `[N, C]`.
    pub grad: Array2<F>,
}

/// Hinton's KD loss `alpha * T^2 * KL(p_T || q_T) + (1 - alpha) * CE(labels, softmax(s))`
/// with batch-mean reduction, and its analytic gradient with respect to the student
/// logits `s`:
///
/// `alpha * T * (q_T - p_T) / N + (1 - alpha) * (softmax(s) - onehot) / N`
///
/// where `p_T = softmax(teacher / T)` and `q_T = softmax(student / T)`. All softmaxes are
/// computed with the row maximum subtracted, so logits of any finite size are safe.
///
/// # Errors
///
/// [`DistillError::Core`](crate::DistillError::Core) for mismatched shapes, non-finite
/// logits or an invalid `config`; [`DistillError::Label`](crate::DistillError::Label) for a
/// label `>= C`.
///
/// ```
/// use compress_distill::{KdConfig, kd_loss};
/// use ndarray::array;
/// let student = array![[1.0f32, 0.5, -1.0], [0.0, 2.0, 0.0]];
/// let teacher = array![[3.0f32, 1.0, -2.0], [0.5, 4.0, 0.0]];
/// let out = kd_loss(&student, &teacher, &[0, 1], &KdConfig::new(4.0, 0.7).unwrap()).unwrap();
/// assert!(out.loss > 0.0);
/// assert_eq!(out.grad.shape(), &[2, 3]);
/// // each row of the gradient sums to zero (softmax is shift invariant)
/// assert!(out.grad.row(0).sum().abs() < 1e-6);
/// ```
pub fn kd_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    labels: &[usize],
    config: &KdConfig,
) -> Result<KdOutput<F>> {
    config.validate()?;
    let (n, c) = check_logits(student, teacher, labels)?;
    let mut grad = Array2::zeros((n, c));
    if n == 0 {
        return Ok(KdOutput {
            loss: F::zero(),
            kl: F::zero(),
            ce: F::zero(),
            grad,
        });
    }
    let t = config.temperature;
    let inv_t = F::lit(1.0 / t);
    let inv_n = 1.0 / n as f64;
    let soft = F::lit(config.soft_weight() / t * inv_n);
    let hard = F::lit((1.0 - config.alpha) * inv_n);
    let (student, teacher) = (student.as_standard_layout(), teacher.as_standard_layout());
    // Standard-layout arrays are contiguous: the slices are whole.
    let (s, tc) = (
        student.as_slice().unwrap_or(&[]),
        teacher.as_slice().unwrap_or(&[]),
    );
    let g = grad.as_slice_mut().unwrap_or(&mut []);
    let mut sums = [F::zero(); 2];
    kd_rows(g, &mut sums, s, tc, inv_t, soft, hard, labels, c, t == 1.0);
    let [kl_sum, ce_sum] = sums;
    let kl = kl_sum * F::lit(inv_n);
    let ce = ce_sum * F::lit(inv_n);
    let loss = F::lit(config.soft_weight()) * kl + F::lit(1.0 - config.alpha) * ce;
    Ok(KdOutput { loss, kl, ce, grad })
}

concrete! {
    /// The rows of [`kd_loss`]: gradient rows into `grad`, the KL and cross-entropy sums into
    /// `sums`. Compiled here for `f32` and `f64` (see `compress_core::concrete`).
    fn kd_rows(
        grad: mut, sums: mut; student: slice, teacher: slice; inv_t: scalar, soft: scalar, hard: scalar;
        labels: &[usize], c: usize, unit_temperature: bool
    ) {
        if c == 0 {
            return;
        }
        let (mut ss, mut ts, mut s1) = (RowSoftmax::new(c), RowSoftmax::new(c), RowSoftmax::new(c));
        let (mut kl_sum, mut ce_sum) = (F::zero(), F::zero());
        for (((srow, trow), g), &y) in student
            .chunks_exact(c)
            .zip(teacher.chunks_exact(c))
            .zip(grad.chunks_exact_mut(c))
            .zip(labels)
        {
            ss.compute(srow.iter(), inv_t);
            ts.compute(trow.iter(), inv_t);
            let hard_sm = if unit_temperature {
                &ss
            } else {
                s1.compute(srow.iter(), F::one());
                &s1
            };
            kl_sum += kl_row(&ts, &ss);
            ce_sum -= hard_sm.logp(y);
            for (j, gv) in g.iter_mut().enumerate() {
                *gv = soft * (ss.p(j) - ts.p(j)) + hard * hard_sm.p(j);
            }
            g[y] -= hard;
        }
        sums[0] = kl_sum;
        sums[1] = ce_sum;
    }
}
