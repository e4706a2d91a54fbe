//! Exit rules (confidence scores) and the distillation loss used to train exits.

use compress_core::{CoreError, Float};
use compress_nn::loss::{log_softmax, softmax};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::Result;

/// When a sample may leave at an exit, judged from that exit's logits.
///
/// Each rule turns a row of logits into a *confidence score* where higher means more
/// confident ([`ExitRule::score`]); a sample exits when its score reaches the exit's
/// threshold expressed in the same units ([`ExitRule::score_threshold`]).
///
/// ```
/// use compress_dynamic::ExitRule;
/// let confident = [4.0, 0.0, 0.0];
/// let unsure = [0.1, 0.0, 0.0];
/// let rule = ExitRule::MaxSoftmax;
/// assert!(rule.exits(&confident, 0.9));
/// assert!(!rule.exits(&unsure, 0.9));
/// // BranchyNet's rule: entropy of the softmax at most tau (in nats).
/// assert!(ExitRule::Entropy.exits(&confident, 0.2));
/// assert!(!ExitRule::Entropy.exits(&unsure, 0.2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExitRule {
    /// Exit when the largest softmax probability is at least `tau` (`tau` in `[0, 1]`).
    #[default]
    MaxSoftmax,
    /// Exit when the entropy of the softmax (natural log) is at most `tau` (BranchyNet).
    Entropy,
}

impl ExitRule {
    /// The confidence score of one row of logits: the max softmax probability, or the
    /// negated entropy. Higher is more confident. NaN logits give `-inf` (never exit).
    pub fn score<F: Float>(self, logits: &[F]) -> f64 {
        if logits.is_empty() || logits.iter().any(|v| !v.is_finite()) {
            return f64::NEG_INFINITY;
        }
        let m = logits
            .iter()
            .fold(f64::NEG_INFINITY, |a, v| a.max(v.as_f64()));
        let z: f64 = logits.iter().map(|v| (v.as_f64() - m).exp()).sum();
        match self {
            Self::MaxSoftmax => 1.0 / z,
            Self::Entropy => {
                // H = log z - sum p (l - m), with p = exp(l - m) / z.
                let lz = z.ln();
                let h: f64 = logits
                    .iter()
                    .map(|v| {
                        let d = v.as_f64() - m;
                        let p = d.exp() / z;
                        -p * (d - lz)
                    })
                    .sum();
                -h.max(0.0)
            }
        }
    }

    /// Scores of every row of `[N, C]` logits.
    pub fn scores<F: Float>(self, logits: &ArrayRef<F, Ix2>) -> Vec<f64> {
        logits
            .rows()
            .into_iter()
            .map(|r| match r.as_slice() {
                Some(s) => self.score(s),
                None => self.score(&r.to_vec()),
            })
            .collect()
    }

    /// A user threshold `tau` in score units (`tau` itself, or `-tau` for entropy).
    pub fn score_threshold(self, tau: f64) -> f64 {
        match self {
            Self::MaxSoftmax => tau,
            Self::Entropy => -tau,
        }
    }

    /// The user threshold for a threshold in score units (inverse of
    /// [`ExitRule::score_threshold`]).
    pub fn tau_from_score(self, s: f64) -> f64 {
        match self {
            Self::MaxSoftmax => s,
            Self::Entropy => -s,
        }
    }

    /// Whether a sample with these logits leaves at threshold `tau`.
    pub fn exits<F: Float>(self, logits: &[F], tau: f64) -> bool {
        self.score(logits) >= self.score_threshold(tau)
    }

    /// Checks that `tau` is a meaningful threshold for this rule.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for NaN, for max-softmax outside `[0, 1]`, or for a
    /// negative entropy.
    pub fn check_tau(self, tau: f64) -> Result<()> {
        let ok = match self {
            Self::MaxSoftmax => (0.0..=1.0).contains(&tau),
            Self::Entropy => tau >= 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(CoreError::config(
                "tau",
                format!("{tau} is not a valid threshold for {self:?}"),
            )
            .into())
        }
    }
}

/// Hinton's distillation loss with its gradient with respect to the student logits:
/// `T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))`, gradient
/// `T * (softmax(s / T) - softmax(t / T)) / N`. The teacher is treated as a constant.
///
/// # Errors
///
/// A shape mismatch when the two logit arrays differ, and an invalid temperature
/// (not finite and positive).
///
/// ```
/// use compress_dynamic::distill_loss;
/// use ndarray::array;
/// let s = array![[1.0f64, 0.0]];
/// let (l, g) = distill_loss(&s, &s, 2.0).unwrap();
/// assert!(l.abs() < 1e-12 && g.iter().all(|v| v.abs() < 1e-12));
/// ```
pub fn distill_loss<F: Float>(
    student: &ArrayRef<F, Ix2>,
    teacher: &ArrayRef<F, Ix2>,
    temperature: f64,
) -> Result<(F, Array2<F>)> {
    if student.shape() != teacher.shape() {
        return Err(CoreError::shape("teacher logits", student.shape(), teacher.shape()).into());
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(CoreError::config(
            "temperature",
            format!("{temperature} must be finite and positive"),
        )
        .into());
    }
    let n = student.nrows();
    if n == 0 {
        return Ok((F::zero(), student.to_owned()));
    }
    let t = F::lit(temperature);
    let ls = log_softmax(&student.mapv(|v| v / t));
    let lt = log_softmax(&teacher.mapv(|v| v / t));
    let pt = lt.mapv(|v| v.exp());
    let mut kl = F::zero();
    ndarray::Zip::from(&pt)
        .and(&lt)
        .and(&ls)
        .for_each(|&p, &a, &b| {
            if p > F::zero() {
                kl += p * (a - b);
            }
        });
    let inv_n = F::one() / F::lit(n as f64);
    let loss = t * t * kl * inv_n;
    let grad = (softmax(&student.mapv(|v| v / t)) - &pt).mapv(|v| v * t * inv_n);
    Ok((loss, grad))
}
