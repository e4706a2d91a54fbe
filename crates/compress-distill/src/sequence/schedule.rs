//! Per-step learning-rate schedule with warm-up, and global gradient-norm clipping.

use compress_core::{CoreError, Float, Module, Param, ParamKind, ParamPath};

use crate::Result;

/// How the rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decay {
    /// Straight down to `min_factor` at the last step (BERT, DistilBERT).
    #[default]
    Linear,
    /// Half a cosine down to `min_factor`.
    Cosine,
    /// Constant after the warm-up.
    Constant,
}

/// Learning-rate factor per optimizer step: linear warm-up from `1 / (warmup + 1)` to 1
/// over the first `warmup` steps, then [`Decay`] from 1 to `min_factor` at step
/// `total - 1`. Multiply the base rate by [`factor`](Self::factor).
///
/// ```
/// use compress_distill::{Decay, WarmupSchedule};
/// let s = WarmupSchedule { warmup: 9, total: 110, decay: Decay::Linear, min_factor: 0.0 };
/// assert!((s.factor(4) - 0.5).abs() < 1e-12);
/// assert_eq!(s.factor(9), 1.0);
/// assert!(s.factor(109).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupSchedule {
    /// Warm-up steps.
    pub warmup: usize,
    /// Total steps of the run.
    pub total: usize,
    /// The decay after the warm-up.
    pub decay: Decay,
    /// Final factor (`0` decays to zero).
    pub min_factor: f64,
}

impl WarmupSchedule {
    /// The factor at step `step` (0-based); `min_factor` past the end.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return (step + 1) as f64 / (self.warmup + 1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup + 1);
        if span == 0 {
            return 1.0;
        }
        let t = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let m = self.min_factor;
        match self.decay {
            Decay::Linear => m + (1.0 - m) * (1.0 - t),
            Decay::Cosine => m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            Decay::Constant => 1.0,
        }
    }
}

/// Scales every accumulated gradient of `model` (buffers excepted) so that their global
/// L2 norm is at most `max_norm` (`torch.nn.utils.clip_grad_norm_`); returns the norm
/// before clipping.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] naming `max_norm` unless it is finite and `> 0`, and
/// [`CoreError::NonFinite`] naming the first parameter whose gradient is not finite.
pub fn clip_grad_norm<F: Float>(model: &mut dyn Module<F>, max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(CoreError::config(
            "max_norm",
            format!("must be finite and > 0, got {max_norm}"),
        )
        .into());
    }
    let mut sq = 0.0f64;
    let mut bad: Option<CoreError> = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            if p.kind() == ParamKind::Buffer {
                return;
            }
            if let Some(g) = p.grad() {
                for (index, &v) in g.iter().enumerate() {
                    let v = v.as_f64();
                    if !v.is_finite() && bad.is_none() {
                        bad = Some(CoreError::NonFinite {
                            path: format!("{path}.grad"),
                            index,
                            value: v,
                        });
                    }
                    sq += v * v;
                }
            }
        },
    );
    if let Some(e) = bad {
        return Err(e.into());
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let k = F::lit(max_norm / norm);
        model.visit_mut(
            &mut ParamPath::root(),
            &mut |_: &ParamPath, p: &mut Param<F>| {
                if p.kind() != ParamKind::Buffer {
                    p.scale_grad(k);
                }
                Ok(())
            },
        )?;
    }
    Ok(norm)
}
