//! Stochastic gradient descent with momentum, Nesterov and weight decay.

use std::collections::HashMap;

use crate::kernels;
use compress_core::{Float, Module, Result};
use ndarray::{ArrayD, Zip};

use super::{Optimizer, for_each_trained, state_of};

/// SGD as in PyTorch: `v = mu v + (g + wd w)`, `w -= lr v` (or the Nesterov form
/// `w -= lr (g + wd w + mu v)`).
///
/// Defaults: momentum 0, no Nesterov, weight decay 0.
#[derive(Debug, Clone)]
pub struct Sgd<F: Float> {
    lr: F,
    momentum: F,
    nesterov: bool,
    weight_decay: F,
    velocity: HashMap<String, ArrayD<F>>,
}

impl<F: Float> Sgd<F> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: F) -> Self {
        Self {
            lr,
            momentum: F::zero(),
            nesterov: false,
            weight_decay: F::zero(),
            velocity: HashMap::new(),
        }
    }

    /// Sets the momentum coefficient.
    #[must_use]
    pub fn momentum(mut self, mu: F) -> Self {
        self.momentum = mu;
        self
    }

    /// Uses Nesterov momentum.
    #[must_use]
    pub fn nesterov(mut self, yes: bool) -> Self {
        self.nesterov = yes;
        self
    }

    /// Sets L2 weight decay (applied to weights only, not biases or norms).
    #[must_use]
    pub fn weight_decay(mut self, wd: F) -> Self {
        self.weight_decay = wd;
        self
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn step(&mut self, model: &mut dyn Module<F>) -> Result<()> {
        let (lr, mu, nesterov) = (self.lr, self.momentum, self.nesterov);
        let velocity = &mut self.velocity;
        let wd_all = self.weight_decay;
        for_each_trained(model, wd_all, |key, wd, p| {
            if mu == F::zero() {
                p.update(|w, g| {
                    if let (Some(ws), Some(gs)) = (w.as_slice_mut(), g.as_slice()) {
                        return kernels::sgd(ws, gs, lr, wd);
                    }
                    Zip::from(w)
                        .and(g)
                        .for_each(|w, &g| *w = *w - lr * (g + wd * *w));
                });
                return Ok(());
            }
            let v = state_of(velocity, key, p, || p.zeros_like(), |v| v.shape())?;
            p.update(|w, g| {
                if let (Some(ws), Some(vs), Some(gs)) =
                    (w.as_slice_mut(), v.as_slice_mut(), g.as_slice())
                {
                    return kernels::sgd_momentum(ws, vs, gs, lr, wd, mu, nesterov);
                }
                Zip::from(w).and(g).and(&mut *v).for_each(|w, &g, v| {
                    let d = g + wd * *w;
                    *v = mu * *v + d;
                    let step = if nesterov { d + mu * *v } else { *v };
                    *w -= lr * step;
                });
            });
            Ok(())
        })
    }

    lr_field!();

    fn reset(&mut self) {
        self.velocity.clear();
    }
}
