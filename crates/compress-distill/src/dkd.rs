//! Decoupled knowledge distillation (Zhao et al., CVPR 2022).

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::Result;
use crate::softmax::{
    check_labels, check_pair, check_temperature, check_weight, copy_row, log_softmax_row,
};

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
#[inline]
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
    check_pair(student, teacher, "logits")?;
    let (n, c) = student.dim();
    check_labels(n, c, labels)?;
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
    let (mut s, mut tt) = (vec![F::zero(); c], vec![F::zero(); c]);
    let (mut ls, mut lt, mut l1) = (vec![F::zero(); c], vec![F::zero(); c], vec![F::zero(); c]);
    let (mut tckd_sum, mut nckd_sum, mut ce_sum) = (F::zero(), F::zero(), F::zero());
    for (((srow, trow), mut g), &y) in student
        .rows()
        .into_iter()
        .zip(teacher.rows())
        .zip(grad.rows_mut())
        .zip(labels)
    {
        copy_row(&mut s, srow.iter());
        copy_row(&mut tt, trow.iter());
        log_softmax_row(&s, inv_t, &mut ls);
        log_softmax_row(&tt, inv_t, &mut lt);
        log_softmax_row(&s, F::one(), &mut l1);
        // Binary parts: log p_target and log(1 - p_target), both by log-sum-exp.
        let (lsg, lso) = (ls[y], lse_except(&ls, y));
        let (ltg, lto) = (lt[y], lse_except(&lt, y));
        let (sg, tg, to) = (lsg.exp(), ltg.exp(), lto.exp());
        let tckd = (tg * (ltg - lsg) + to * (lto - lso)).max(F::zero());
        // Non-target parts: log-probabilities renormalised over j != y.
        let mut nckd = F::zero();
        for j in (0..c).filter(|&j| j != y) {
            let (lns, lnt) = (ls[j] - lso, lt[j] - lto);
            nckd += lnt.exp() * (lnt - lns);
            let (ps, pt) = (lns.exp(), lnt.exp());
            let d_tckd = (tg - sg) * ps;
            let d_nckd = ps - pt;
            g[j] = soft * (a * d_tckd + b * d_nckd) + hard * l1[j].exp();
        }
        g[y] = soft * a * (sg - tg) + hard * (l1[y].exp() - F::one());
        tckd_sum += tckd;
        nckd_sum += nckd.max(F::zero());
        ce_sum -= l1[y];
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
