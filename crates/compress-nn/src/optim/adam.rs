//! Adam and AdamW.

use std::collections::HashMap;

use crate::kernels;
use compress_core::{Float, Module, Result};
use ndarray::{ArrayD, Zip};

use super::{Optimizer, for_each_trained, state_of};

/// Adam (Kingma & Ba) with bias correction; with `decoupled(true)` it is AdamW
/// (weight decay applied to the weights directly, not through the gradient).
///
/// Defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0, coupled.
#[derive(Debug, Clone)]
pub struct Adam<F: Float> {
    lr: F,
    beta1: F,
    beta2: F,
    eps: F,
    weight_decay: F,
    decoupled: bool,
    t: i32,
    moments: HashMap<String, (ArrayD<F>, ArrayD<F>)>,
}

impl<F: Float> Adam<F> {
    /// Adam with learning rate `lr`.
    pub fn new(lr: F) -> Self {
        Self {
            lr,
            beta1: F::lit(0.9),
            beta2: F::lit(0.999),
            eps: F::lit(1e-8),
            weight_decay: F::zero(),
            decoupled: false,
            t: 0,
            moments: HashMap::new(),
        }
    }

    /// Sets the moment decay rates.
    #[must_use]
    pub fn betas(mut self, beta1: F, beta2: F) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets the weight decay (weights only).
    #[must_use]
    pub fn weight_decay(mut self, wd: F) -> Self {
        self.weight_decay = wd;
        self
    }

    /// Decoupled weight decay (AdamW).
    #[must_use]
    pub fn decoupled(mut self, yes: bool) -> Self {
        self.decoupled = yes;
        self
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, model: &mut dyn Module<F>) -> Result<()> {
        self.t += 1;
        let (lr, b1, b2, eps) = (self.lr, self.beta1, self.beta2, self.eps);
        let (wd_all, decoupled) = (self.weight_decay, self.decoupled);
        let c1 = F::one() - b1.powi(self.t);
        let c2 = F::one() - b2.powi(self.t);
        let moments = &mut self.moments;
        for_each_trained(model, wd_all, |key, wd, p| {
            let (m, v) = state_of(
                moments,
                key,
                p,
                || (p.zeros_like(), p.zeros_like()),
                |(m, _)| m.shape(),
            )?;
            p.update(|w, g| {
                if let (Some(ws), Some(ms), Some(vs), Some(gs)) = (
                    w.as_slice_mut(),
                    m.as_slice_mut(),
                    v.as_slice_mut(),
                    g.as_slice(),
                ) {
                    return kernels::adam(ws, ms, vs, gs, lr, b1, b2, c1, c2, eps, wd, decoupled);
                }
                Zip::from(w)
                    .and(g)
                    .and(&mut *m)
                    .and(&mut *v)
                    .for_each(|w, &g, m, v| {
                        let g = if decoupled { g } else { g + wd * *w };
                        *m = b1 * *m + (F::one() - b1) * g;
                        *v = b2 * *v + (F::one() - b2) * g * g;
                        let upd = (*m / c1) / ((*v / c2).sqrt() + eps);
                        let decay = if decoupled { wd * *w } else { F::zero() };
                        *w -= lr * (upd + decay);
                    });
            });
            Ok(())
        })
    }

    lr_field!();

    fn reset(&mut self) {
        self.moments.clear();
        self.t = 0;
    }
}
