//! Softmax of logits divided by a temperature, and the KL divergence between two softened
//! distributions: the one implementation every technique uses (knowledge distillation, the
//! distillation inside early-exit and slimmable training, contrastive embedding losses).
//!
//! Every function works on `[N, C]` logits (a batch of `N` rows over `C` classes), for `f32`
//! and `f64`, and is stable for any finite logits: the row maximum is subtracted before
//! exponentiating, so logits of `1e4` and `-1e4` give exact probabilities of `1` and `0`
//! rather than `inf / inf`. [`RowSoftmax`] is the row kernel: one pass of exponentials per
//! row, reused for the probabilities, the log-probabilities and the gradients.

use ndarray::{Array2, ArrayRef, Ix2};

use crate::{CoreError, Float, Result, TensorExt};

/// One row's softmax of `x / T`, kept in parts so that probabilities and
/// log-probabilities need no further `exp`/`ln`:
/// `z_j = x_j / T - max(x) / T` (so `z_j <= 0` and the largest is exactly 0),
/// `e_j = exp(z_j)`, `sum = sum_j e_j` (in `[1, C]`), `lse = ln(sum)`;
/// then `log p_j = z_j - lse` and `p_j = e_j / sum`.
#[derive(Debug, Clone)]
pub struct RowSoftmax<F: Float> {
    /// `z_j = (x_j - max(x)) / T`.
    pub z: Vec<F>,
    /// `e_j = exp(z_j)`.
    pub e: Vec<F>,
    /// `ln sum_j e_j`.
    pub lse: F,
    /// `1 / sum_j e_j`.
    pub inv_sum: F,
}

impl<F: Float> RowSoftmax<F> {
    /// Scratch for rows of `c` classes.
    pub fn new(c: usize) -> Self {
        Self {
            z: vec![F::zero(); c],
            e: vec![F::zero(); c],
            lse: F::zero(),
            inv_sum: F::one(),
        }
    }

    /// Fills the parts for `x * inv_t` (`inv_t > 0`; the scaled maximum is exactly
    /// `max(x) * inv_t`, since scaling by a positive number is monotone under rounding).
    #[inline]
    pub fn compute<'a>(&mut self, x: impl Iterator<Item = &'a F> + Clone, inv_t: F) {
        let m = x.clone().fold(F::neg_infinity(), |a, &b| a.max(b)) * inv_t;
        for (z, &v) in self.z.iter_mut().zip(x) {
            *z = v * inv_t - m;
        }
        let sum = exp_sum(&self.z, &mut self.e);
        self.lse = sum.ln();
        self.inv_sum = sum.recip();
    }

    /// `log p_j`.
    #[inline]
    pub fn logp(&self, j: usize) -> F {
        self.z[j] - self.lse
    }

    /// `p_j`.
    #[inline]
    pub fn p(&self, j: usize) -> F {
        self.e[j] * self.inv_sum
    }

    /// Writes `log p` into `out`.
    pub fn write_logp(&self, out: &mut [F]) {
        for (o, &z) in out.iter_mut().zip(&self.z) {
            *o = z - self.lse;
        }
    }

    /// Writes `p` into `out`.
    pub fn write_p(&self, out: &mut [F]) {
        for (o, &e) in out.iter_mut().zip(&self.e) {
            *o = e * self.inv_sum;
        }
    }
}

/// `e_j = exp(z_j)` for every `j`, returning `sum_j e_j`.
#[inline]
pub fn exp_sum<F: Float>(z: &[F], e: &mut [F]) -> F {
    let mut s = F::zero();
    for (o, &v) in e.iter_mut().zip(z) {
        let x = v.exp();
        *o = x;
        s += x;
    }
    s
}

/// `KL(p || q)` of one row from two softmax parts, clamped at 0 (it is non-negative
/// mathematically; rounding could otherwise leave `-1e-17`).
#[inline]
pub fn kl_row<F: Float>(p: &RowSoftmax<F>, q: &RowSoftmax<F>) -> F {
    let shift = q.lse - p.lse;
    let kl =
        p.e.iter()
            .zip(p.z.iter().zip(&q.z))
            .fold(F::zero(), |acc, (&e, (&zp, &zq))| {
                acc + e * (zp - zq + shift)
            });
    (kl * p.inv_sum).max(F::zero())
}

/// Checks that a temperature is finite and strictly positive.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] naming `name` otherwise.
pub fn check_temperature(name: &str, t: f64) -> Result<()> {
    if !(t.is_finite() && t > 0.0) {
        return Err(CoreError::config(
            name,
            format!("must be finite and > 0, got {t}"),
        ));
    }
    Ok(())
}

/// Checks that a student's and a teacher's arrays have the same shape and are finite.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] (`teacher {what}`), [`CoreError::NonFinite`] (`student
/// {what}` or `teacher {what}`).
pub fn check_pair<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    what: &str,
) -> Result<()> {
    if student.shape() != teacher.shape() {
        return Err(CoreError::shape(
            format!("teacher {what}"),
            student.shape(),
            teacher.shape(),
        ));
    }
    student.check_finite(&format!("student {what}"))?;
    teacher.check_finite(&format!("teacher {what}"))?;
    Ok(())
}

fn map_rows<F: Float>(logits: &ArrayRef<F, Ix2>, temperature: F, log: bool) -> Result<Array2<F>> {
    check_temperature("temperature", temperature.as_f64())?;
    logits.check_finite("logits")?;
    let inv_t = F::one() / temperature;
    let (n, c) = logits.dim();
    let mut out = Array2::zeros((n, c));
    let mut sm = RowSoftmax::new(c);
    let mut tmp = vec![F::zero(); c];
    for (src, mut dst) in logits.rows().into_iter().zip(out.rows_mut()) {
        sm.compute(src.iter(), inv_t);
        if log {
            sm.write_logp(&mut tmp);
        } else {
            sm.write_p(&mut tmp);
        }
        for (d, &v) in dst.iter_mut().zip(&tmp) {
            *d = v;
        }
    }
    Ok(out)
}

/// Row-wise `log softmax(logits / T)`.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] unless `temperature` is finite and `> 0`;
/// [`CoreError::NonFinite`] for NaN or infinite logits.
///
/// ```
/// use compress_core::softmax::log_softmax_with_temperature;
/// use ndarray::array;
/// let lp = log_softmax_with_temperature(&array![[1e4f32, -1e4]], 1.0).unwrap();
/// assert_eq!(lp[[0, 0]], 0.0);
/// assert!(lp[[0, 1]].is_finite());
/// ```
pub fn log_softmax_with_temperature<F: Float>(
    logits: &ArrayRef<F, Ix2>,
    temperature: F,
) -> Result<Array2<F>> {
    map_rows(logits, temperature, true)
}

/// Row-wise `softmax(logits / T)`: each row sums to 1; a higher `T` gives a softer
/// distribution.
///
/// # Errors
///
/// As [`log_softmax_with_temperature`].
///
/// ```
/// use compress_core::softmax::softmax_with_temperature;
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
    map_rows(logits, temperature, false)
}

/// `KL(p_T || q_T)` between the teacher's and the student's softened distributions,
/// summed over classes and averaged over the batch (PyTorch's `reduction="batchmean"`,
/// not `"mean"`, which would also divide by the number of classes), and its gradient
/// with respect to the **student** logits: `(q_T - p_T) / (T * N)`.
///
/// `p_T = softmax(teacher / T)`, `q_T = softmax(student / T)`. The result is `0` exactly
/// when each student row equals the teacher row up to a constant shift (up to rounding).
/// An empty batch gives `0`.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when the shapes differ, [`CoreError::InvalidConfig`] for a
/// temperature that is not finite and positive, [`CoreError::NonFinite`] for NaN or
/// infinite logits.
///
/// ```
/// use compress_core::softmax::kl_div;
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
    check_temperature("temperature", temperature.as_f64())?;
    check_pair(student, teacher, "logits")?;
    let (n, c) = student.dim();
    let mut grad = Array2::zeros((n, c));
    if n == 0 {
        return Ok((F::zero(), grad));
    }
    let inv_t = F::one() / temperature;
    let scale = inv_t / F::lit(n as f64);
    let (mut ss, mut ts) = (RowSoftmax::new(c), RowSoftmax::new(c));
    let mut total = F::zero();
    for ((srow, trow), mut g) in student
        .rows()
        .into_iter()
        .zip(teacher.rows())
        .zip(grad.rows_mut())
    {
        ss.compute(srow.iter(), inv_t);
        ts.compute(trow.iter(), inv_t);
        total += kl_row(&ts, &ss);
        for (j, gv) in g.iter_mut().enumerate() {
            *gv = (ss.p(j) - ts.p(j)) * scale;
        }
    }
    Ok((total / F::lit(n as f64), grad))
}
