//! Exit rules (confidence scores) and the distillation loss used to train exits.

use compress_core::{CoreError, Float, softmax};
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
        // Computed in `F` (f32 exp is much cheaper than f64 on the inference path).
        let m = logits.iter().fold(F::neg_infinity(), |a, &v| a.max(v));
        let z = logits.iter().fold(F::zero(), |a, &v| a + (v - m).exp());
        match self {
            Self::MaxSoftmax => (F::one() / z).as_f64(),
            Self::Entropy => {
                // H = log z - sum p (l - m), with p = exp(l - m) / z.
                let lz = z.ln();
                let h = logits.iter().fold(F::zero(), |a, &v| {
                    let d = v - m;
                    a - (d.exp() / z) * (d - lz)
                });
                -h.as_f64().max(0.0)
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

/// The test `score(logits) >= threshold` of one exit, prepared once for a batch.
///
/// For [`ExitRule::MaxSoftmax`] the gap `g` between the two largest of `C` logits bounds
/// the score: `1 / (1 + (C - 1) e^-g) <= max softmax <= 1 / (1 + e^-g)`. Solving both
/// bounds for `g` once gives two gap thresholds, so most rows are decided by one pass
/// over their logits with no `exp`; rows near the threshold (within a relative `1e-4` in
/// score units) and rows with non-finite logits take the exact score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExitTest {
    rule: ExitRule,
    threshold: f64,
    /// A row whose top-2 gap is at least this passes without the exact score.
    pass_gap: f64,
    /// A row whose top-2 gap is below this fails without the exact score.
    fail_gap: f64,
}

impl ExitTest {
    /// The test for `threshold` (score units) on rows of `classes` logits.
    pub(crate) fn new(rule: ExitRule, threshold: f64, classes: usize) -> Self {
        let (mut pass_gap, mut fail_gap) = (f64::INFINITY, f64::NEG_INFINITY);
        if rule == ExitRule::MaxSoftmax && classes >= 2 && threshold.is_finite() {
            let margin = 1e-4 * threshold.abs() + 1e-9;
            // lower(g) >= hi  <=>  g >= ln((C - 1) hi / (1 - hi)), for 0 < hi < 1.
            let hi = threshold + margin;
            if hi > 0.0 && hi < 1.0 {
                pass_gap = ((classes - 1) as f64 * hi / (1.0 - hi)).ln();
            }
            // upper(g) < lo  <=>  g < ln(lo / (1 - lo)), for 0 < lo < 1.
            let lo = threshold - margin;
            if lo > 0.0 && lo < 1.0 {
                fail_gap = (lo / (1.0 - lo)).ln();
            } else if lo >= 1.0 {
                // No row reaches a score above 1: every row fails.
                fail_gap = f64::INFINITY;
            }
        }
        Self {
            rule,
            threshold,
            pass_gap,
            fail_gap,
        }
    }

    /// Whether the row `logits` passes, exactly as `rule.score(logits) >= threshold`.
    #[cfg(test)]
    pub(crate) fn passes<F: Float>(&self, logits: &[F]) -> bool {
        self.passes_rows(logits, logits.len().max(1))
            .first()
            .copied()
            .unwrap_or(false)
    }

    /// [`ExitTest::passes`] for every row of the row-major `logits` (`classes > 0` per
    /// row; a trailing partial row is ignored).
    pub(crate) fn passes_rows<F: Float>(&self, logits: &[F], classes: usize) -> Vec<bool> {
        let exact = |row: &[F]| self.rule.score(row) >= self.threshold;
        if self.threshold == f64::NEG_INFINITY {
            return vec![true; logits.len() / classes.max(1)];
        }
        if classes < 2 || !(self.pass_gap.is_finite() || self.fail_gap.is_finite()) {
            return logits.chunks_exact(classes.max(1)).map(exact).collect();
        }
        // Blocks of `LANES` rows are transposed into columns so that the top two and the
        // finiteness of every row are element-wise selects over short arrays, which the
        // compiler turns into vector `max`/`min`/`and` (one row alone is a serial chain of
        // compare-select latencies). NaN never wins a compare, and a row with a NaN or an
        // infinity takes the exact path.
        const LANES: usize = 8;
        let mut out = Vec::with_capacity(logits.len() / classes);
        let mut blocks = logits.chunks_exact(classes * LANES);
        let mut col = [F::zero(); LANES];
        for block in &mut blocks {
            let mut m1 = [F::neg_infinity(); LANES];
            let mut m2 = [F::neg_infinity(); LANES];
            let mut finite = [true; LANES];
            for c in 0..classes {
                for (r, v) in col.iter_mut().enumerate() {
                    *v = block[r * classes + c];
                }
                for r in 0..LANES {
                    top2_step(col[r], &mut m1[r], &mut m2[r], &mut finite[r]);
                }
            }
            for (r, row) in block.chunks_exact(classes).enumerate() {
                let by_gap = finite[r].then(|| self.by_gap(m1[r], m2[r])).flatten();
                out.push(by_gap.unwrap_or_else(|| exact(row)));
            }
        }
        for row in blocks.remainder().chunks_exact(classes) {
            let (mut m1, mut m2, mut finite) = (F::neg_infinity(), F::neg_infinity(), true);
            for &v in row {
                top2_step(v, &mut m1, &mut m2, &mut finite);
            }
            let by_gap = finite.then(|| self.by_gap(m1, m2)).flatten();
            out.push(by_gap.unwrap_or_else(|| exact(row)));
        }
        out
    }

    /// The decision from a finite row's top two logits when their gap settles it.
    #[inline]
    fn by_gap<F: Float>(&self, m1: F, m2: F) -> Option<bool> {
        let g = (m1 - m2).as_f64();
        if g >= self.pass_gap {
            Some(true)
        } else if g < self.fail_gap {
            Some(false)
        } else {
            None
        }
    }
}

/// Folds `v` into a row's top two (`m1 >= m2`) and its finiteness with plain selects
/// (`maxss`/`minss`, no branch; NaN never wins a compare).
#[inline(always)]
fn top2_step<F: Float>(v: F, m1: &mut F, m2: &mut F, finite: &mut bool) {
    *finite &= v.abs() <= F::max_value();
    let lo = if v > *m1 { *m1 } else { v };
    *m1 = if v > *m1 { v } else { *m1 };
    *m2 = if lo > *m2 { lo } else { *m2 };
}

/// Hinton's distillation loss with its gradient with respect to the student logits:
/// `T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))`, gradient
/// `T * (softmax(s / T) - softmax(t / T)) / N`. The teacher is treated as a constant; the
/// KL divergence is [`compress_core::softmax::kl_div`]'s.
///
/// # Errors
///
/// A shape mismatch when the two logit arrays differ, an invalid temperature (not finite
/// and positive), non-finite logits.
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
    softmax::check_temperature("temperature", temperature)?;
    let t = F::lit(temperature);
    let (kl, grad) = softmax::kl_div(student, teacher, t)?;
    let t2 = t * t;
    Ok((t2 * kl, grad.mapv(|v| v * t2)))
}

#[cfg(test)]
mod tests {
    use super::{ExitRule, ExitTest};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_max_softmax_decision_equals_the_exact_one(
            logits in prop::collection::vec(-30.0f32..30.0, 2..12),
            t in 0.0f64..=1.0,
        ) {
            let r = ExitRule::MaxSoftmax;
            let c = logits.len();
            prop_assert_eq!(ExitTest::new(r, t, c).passes(&logits), r.score(&logits) >= t);
            // At the row's own score (a calibrated threshold sits on a sample's score).
            let s = r.score(&logits);
            prop_assert!(ExitTest::new(r, s, c).passes(&logits));
            for d in [1e-7, 1e-5, 1e-3] {
                for u in [s - d, s + d] {
                    prop_assert_eq!(ExitTest::new(r, u, c).passes(&logits), s >= u);
                }
            }
            let e = ExitRule::Entropy;
            prop_assert_eq!(ExitTest::new(e, -t, c).passes(&logits), e.score(&logits) >= -t);
            prop_assert!(ExitTest::new(r, f64::NEG_INFINITY, c).passes(&logits));
        }

        #[test]
        fn fast_decision_handles_ties_and_non_finite_logits(
            v in -5.0f64..5.0,
            c in 2usize..6,
            t in 0.0f64..=1.0,
            bad in prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        ) {
            let r = ExitRule::MaxSoftmax;
            let tie = vec![v; c];
            prop_assert_eq!(ExitTest::new(r, t, c).passes(&tie), r.score(&tie) >= t);
            let mut odd = tie.clone();
            odd[c - 1] = bad;
            prop_assert_eq!(ExitTest::new(r, t, c).passes(&odd), r.score(&odd) >= t);
        }

        #[test]
        fn batched_decisions_equal_the_exact_score_row_by_row(
            c in 2usize..13,
            vals in prop::collection::vec(prop_oneof![
                20 => -30.0f32..30.0,
                1 => prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e38, -3e38]),
            ], 0..300),
            q in 0.0f64..1.0,
        ) {
            let logits = &vals[..vals.len() / c * c];
            for rule in [ExitRule::MaxSoftmax, ExitRule::Entropy] {
                let scores: Vec<f64> = logits.chunks_exact(c).map(|row| rule.score(row)).collect();
                // Thresholds at a row's own score (as calibrated ones are) and between.
                let mut thresholds = vec![rule.score_threshold(q)];
                thresholds.extend(scores.iter().filter(|s| s.is_finite()).take(3));
                for t in thresholds {
                    let got = ExitTest::new(rule, t, c).passes_rows(logits, c);
                    let want: Vec<bool> = scores.iter().map(|&s| s >= t).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }
}
