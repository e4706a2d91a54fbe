//! Temperature softmax, soft targets and the KL divergence between softened distributions,
//! with distillation's error type (the computation is [`compress_core::softmax`]'s).
//!
//! Every function works on `[N, C]` logits (a batch of `N` rows over `C` classes), for `f32`
//! and `f64`, and is stable for any finite logits: the row maximum is subtracted before
//! exponentiating, so logits of `1e4` and `-1e4` give exact probabilities of `1` and `0`
//! rather than `inf / inf`.

use compress_core::{CoreError, Float, softmax};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::{DistillError, Result};

/// Checks that a temperature is finite and strictly positive.
pub(crate) fn check_temperature(name: &str, t: f64) -> Result<()> {
    Ok(softmax::check_temperature(name, t)?)
}

/// Checks that a weight lies in `[0, 1]`.
pub(crate) fn check_unit(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(CoreError::config(name, format!("must be in [0, 1], got {v}")).into());
    }
    Ok(())
}

/// Checks that a weight is finite and non-negative.
pub(crate) fn check_weight(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(CoreError::config(name, format!("must be finite and >= 0, got {v}")).into());
    }
    Ok(())
}

/// Checks that student and teacher arrays have the same shape and are finite.
pub(crate) fn check_pair<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    what: &str,
) -> Result<()> {
    Ok(softmax::check_pair(student, teacher, what)?)
}

/// Checks student and teacher logits (same shape, finite) and `labels` against them;
/// returns `(N, C)`.
pub(crate) fn check_logits<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    labels: &[usize],
) -> Result<(usize, usize)> {
    check_pair(student, teacher, "logits")?;
    let (rows, classes) = student.dim();
    if labels.len() != rows {
        return Err(CoreError::shape("labels", &[rows], &[labels.len()]).into());
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
        return Err(DistillError::Label {
            index,
            label,
            classes,
        });
    }
    Ok((rows, classes))
}

/// Row-wise `log softmax(logits / T)` ([`compress_core::softmax::log_softmax_with_temperature`]).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] unless `temperature` is finite and `> 0`;
/// [`CoreError::NonFinite`] for NaN or infinite logits.
///
/// ```
/// use compress_distill::log_softmax_with_temperature;
/// use ndarray::array;
/// let lp = log_softmax_with_temperature(&array![[1e4f32, -1e4]], 1.0).unwrap();
/// assert_eq!(lp[[0, 0]], 0.0);
/// assert!(lp[[0, 1]].is_finite());
/// ```
pub fn log_softmax_with_temperature<F: Float>(
    logits: &ArrayRef<F, Ix2>,
    temperature: F,
) -> Result<Array2<F>> {
    Ok(softmax::log_softmax_with_temperature(logits, temperature)?)
}

/// Row-wise `softmax(logits / T)` ([`compress_core::softmax::softmax_with_temperature`]):
/// each row sums to 1; a higher `T` gives a softer distribution.
///
/// # Errors
///
/// As [`log_softmax_with_temperature`].
///
/// ```
/// use compress_distill::softmax_with_temperature;
/// use ndarray::array;
/// let z = array![[2.0f64, 0.0]];
/// let sharp = softmax_with_temperature(&z, 1.0).unwrap();
/// let soft = softmax_with_temperature(&z, 10.0).unwrap();
/// assert!(soft[[0, 1]] > sharp[[0, 1]]);
/// assert!((soft.sum() - 1.0).abs() < 1e-12);
/// ```
pub fn softmax_with_temperature<F: Float>(
    logits: &ArrayRef<F, Ix2>,
    temperature: F,
) -> Result<Array2<F>> {
    Ok(softmax::softmax_with_temperature(logits, temperature)?)
}

/// The teacher's soft targets `p_T = softmax(teacher_logits / T)` (Hinton et al. 2015).
///
/// # Errors
///
/// As [`log_softmax_with_temperature`].
pub fn soft_targets<F: Float>(
    teacher_logits: &ArrayRef<F, Ix2>,
    temperature: F,
) -> Result<Array2<F>> {
    softmax_with_temperature(teacher_logits, temperature)
}

/// `KL(p_T || q_T)` between the teacher's and the student's softened distributions,
/// batch mean, and its gradient with respect to the **student** logits,
/// `(q_T - p_T) / (T * N)`: [`compress_core::softmax::kl_div`] with distillation's error type.
///
/// # Errors
///
/// As [`compress_core::softmax::kl_div`].
///
/// ```
/// use compress_distill::kl_div;
/// use ndarray::array;
/// let t = array![[3.0f64, 1.0, 0.0]];
/// let (kl, _) = kl_div(&(&t + 5.0), &t, 2.0).unwrap(); // shifted: same distribution
/// assert!(kl < 1e-12);
/// let (kl, grad) = kl_div(&array![[0.0, 0.0, 0.0]], &t, 2.0).unwrap();
/// assert!(kl > 0.0 && grad.sum().abs() < 1e-12);
/// ```
pub fn kl_div<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    temperature: F,
) -> Result<(F, Array2<F>)> {
    Ok(softmax::kl_div(student, teacher, temperature)?)
}
