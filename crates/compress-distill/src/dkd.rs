//! Decoupled knowledge distillation (Zhao et al., CVPR 2022).

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::Result;
use crate::softmax::{check_logits, check_temperature, check_weight};
use compress_core::softmax::RowSoftmax;

/// Hyperparameters of decoupled KD:
/// `ce_weight * CE + T^2 * (alpha * TCKD + beta * NCKD)`.
///
/// Defaults follow mdistiller's CIFAR-100 setting: `temperature = 4`, `alpha = 1`,
/// `beta = 8`, `ce_weight = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DkdConfig {
    /// Softmax temperature `T > 0`.
    pub temperature: f64,
    /// Weight of the target-class term (TCKD), `>= 0`.
    pub alpha: f64,
    /// Weight of the non-target-class term (NCKD), `>= 0`.
    pub beta: f64,
    /// Weight of the hard cross-entropy term with the labels, `>= 0`.
    pub ce_weight: f64,
}

impl Default for DkdConfig {
    fn default() -> Self {
        Self {
            temperature: 4.0,
            alpha: 1.0,
            beta: 8.0,
            ce_weight: 1.0,
        }
    }
}

impl DkdConfig {
    /// Checks the hyperparameters.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `temperature`, `alpha`, `beta` or `ce_weight`.
    pub fn validate(&self) -> Result<()> {
        check_temperature("temperature", self.temperature)?;
        check_weight("alpha", self.alpha)?;
        check_weight("beta", self.beta)?;
        check_weight("ce_weight", self.ce_weight)
    }
}

/// The value of a DKD loss, its parts and its gradient with respect to the student logits.
#[derive(Debug, Clone, PartialEq)]
pub struct DkdOutput<F: Float> {
    /// `ce_weight * ce + T^2 * (alpha * tckd + beta * nckd)`.
    pub loss: F,
    /// Target-class KD: KL between the binary distributions `[p_target, 1 - p_target]`
    /// of teacher and student at temperature `T`, batch mean, unscaled.
    pub tckd: F,
    /// Non-target-class KD: KL between the distributions over the non-target classes
    /// (renormalised), batch mean, unscaled.
    pub nckd: F,
    /// Cross-entropy of the student (at `T = 1`) with the labels, batch mean.
    pub ce: F,
    /// `d loss / d student_logits`, `[N, C]`.
    pub grad: Array2<F>,
}

/// `log(sum(exp(x_j)))` over `j != skip`, stable (`-inf` when there is nothing left).
fn lse_except<F: Float>(x: &[F], skip: usize) -> F {
    let m = x
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != skip)
        .fold(F::neg_infinity(), |a, (_, &b)| a.max(b));
    if m == F::neg_infinity() {
        return m;
    }
    let s = x
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != skip)
        .fold(F::zero(), |a, (_, &b)| a + (b - m).exp());
    m + s.ln()
}

/// The non-target distribution of a softmax row: fills `logq[j]` and `q[j]` with the
/// log-probabilities and probabilities of class `j` renormalised over `j != y` (entry `y`
/// is left alone) and returns `log(1 - p_y)`.
///
/// The non-target mass is summed from the row's exponentials when it is not tiny;
/// otherwise (a confident row whose other classes underflow) it is recomputed with its
/// own maximum subtracted, so it stays exact.
fn non_target<F: Float>(r: &RowSoftmax<F>, y: usize, logq: &mut [F], q: &mut [F]) -> F {
    let mass =
        r.e.iter()
            .enumerate()
            .filter(|&(j, _)| j != y)
            .fold(F::zero(), |a, (_, &e)| a + e);
    if mass > F::epsilon() {
        let (l, inv) = (mass.ln(), mass.recip());
        for j in (0..r.z.len()).filter(|&j| j != y) {
            logq[j] = r.z[j] - l;
            q[j] = r.e[j] * inv;
        }
        l - r.lse
    } else {
        let l = lse_except(&r.z, y);
        for j in (0..r.z.len()).filter(|&j| j != y) {
            logq[j] = r.z[j] - l;
            q[j] = logq[j].exp();
        }
        l - r.lse
    }
}

/// Decoupled KD loss (Zhao et al. 2022) with batch-mean reduction, and its analytic
/// gradient with respect to the student logits.
///
/// Classic KD mixes two things: how confident the teacher is in the target class
/// (TCKD, a binary KL on `[p_t, 1 - p_t]`) and how it ranks the other classes (NCKD, a
/// KL over the non-target classes renormalised), with NCKD implicitly down-weighted by
/// `1 - p_t`. DKD weights them separately by `alpha` and `beta`. The log-probabilities
/// of both parts are computed with log-sum-exp over the relevant classes (mdistiller
/// takes `log` of a softmax and masks with `-1000`, which underflows for confident
/// teachers); the result is finite for any finite logits.
///
/// # Errors
///
/// As [`kd_loss`](crate::kd_loss); also [`CoreError::InvalidConfig`] for fewer than two
/// classes.
///
/// ```
/// use compress_distill::{DkdConfig, dkd_loss};
/// use ndarray::array;
/// let s = array![[1.0f64, 0.5, -1.0]];
/// let t = array![[3.0f64, 1.0, -2.0]];
/// let out = dkd_loss(&s, &t, &[0], &DkdConfig::default()).unwrap();
/// assert!(out.tckd >= 0.0 && out.nckd >= 0.0);
/// assert!(out.grad.row(0).sum().abs() < 1e-12);
/// ```
pub fn dkd_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    labels: &[usize],
    config: &DkdConfig,
) -> Result<DkdOutput<F>> {
    config.validate()?;
    let (n, c) = check_logits(student, teacher, labels)?;
    let mut grad = Array2::zeros((n, c));
    if n == 0 {
        return Ok(DkdOutput {
            loss: F::zero(),
            tckd: F::zero(),
            nckd: F::zero(),
            ce: F::zero(),
            grad,
        });
    }
    if c < 2 {
        return Err(CoreError::config("classes", format!("DKD needs at least 2, got {c}")).into());
    }
    let t = config.temperature;
    let inv_t = F::lit(1.0 / t);
    let inv_n = 1.0 / n as f64;
    let (a, b) = (F::lit(config.alpha), F::lit(config.beta));
    let soft = F::lit(t * inv_n); // T^2 * (1 / T) / N
    let hard = F::lit(config.ce_weight * inv_n);
    let (mut ss, mut ts, mut s1) = (RowSoftmax::new(c), RowSoftmax::new(c), RowSoftmax::new(c));
    let (mut lqs, mut qs) = (vec![F::zero(); c], vec![F::zero(); c]);
    let (mut lqt, mut qt) = (vec![F::zero(); c], vec![F::zero(); c]);
    let (mut tckd_sum, mut nckd_sum, mut ce_sum) = (F::zero(), F::zero(), F::zero());
    for (((srow, trow), mut g), &y) in student
        .rows()
        .into_iter()
        .zip(teacher.rows())
        .zip(grad.rows_mut())
        .zip(labels)
    {
        ss.compute(srow.iter(), inv_t);
        ts.compute(trow.iter(), inv_t);
        s1.compute(srow.iter(), F::one());
        // Binary parts: log p_target and log(1 - p_target), both without cancellation.
        let (lsg, sg) = (ss.logp(y), ss.p(y));
        let (ltg, tg) = (ts.logp(y), ts.p(y));
        let lso = non_target(&ss, y, &mut lqs, &mut qs);
        let lto = non_target(&ts, y, &mut lqt, &mut qt);
        let tckd = (tg * (ltg - lsg) + lto.exp() * (lto - lso)).max(F::zero());
        let mut nckd = F::zero();
        for j in (0..c).filter(|&j| j != y) {
            nckd += qt[j] * (lqt[j] - lqs[j]);
            let d_tckd = (tg - sg) * qs[j];
            let d_nckd = qs[j] - qt[j];
            g[j] = soft * (a * d_tckd + b * d_nckd) + hard * s1.p(j);
        }
        g[y] = soft * a * (sg - tg) + hard * (s1.p(y) - F::one());
        tckd_sum += tckd;
        nckd_sum += nckd.max(F::zero());
        ce_sum -= s1.logp(y);
    }
    let inv_n = F::lit(inv_n);
    let (tckd, nckd, ce) = (tckd_sum * inv_n, nckd_sum * inv_n, ce_sum * inv_n);
    let loss = F::lit(config.ce_weight) * ce + F::lit(t * t) * (a * tckd + b * nckd);
    Ok(DkdOutput {
        loss,
        tckd,
        nckd,
        ce,
        grad,
    })
}
