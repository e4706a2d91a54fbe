//! Stochastic gradient descent with momentum, Nesterov and weight decay.

use std::collections::HashMap;

use crate::kernels;
use compress_core::{CoreError, Float, Module, Param, ParamKind, ParamPath, Result};
use ndarray::{ArrayD, Zip};

use super::Optimizer;

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
        model.visit_mut(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &mut Param<F>| {
                if p.kind() == ParamKind::Buffer || p.grad().is_none() {
                    return Ok(());
                }
                let wd = if p.kind() == ParamKind::Weight {
                    wd_all
                } else {
                    F::zero()
                };
                let key = path.to_string();
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
                let v = velocity
                    .entry(key.clone())
                    .or_insert_with(|| p.zeros_like());
                if v.shape() != p.shape() {
                    return Err(CoreError::shape(key, p.shape(), v.shape()));
                }
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
            },
        )
    }

    fn lr(&self) -> F {
        self.lr
    }

    fn set_lr(&mut self, lr: F) {
        self.lr = lr;
    }

    fn reset(&mut self) {
        self.velocity.clear();
    }
}
