//! Optimizers and learning-rate schedules.

/// The [`Optimizer::lr`] and [`Optimizer::set_lr`] of an optimizer that keeps its
/// learning rate in its field `lr`.
macro_rules! lr_field {
    () => {
        fn lr(&self) -> F {
            self.lr
        }

        fn set_lr(&mut self, lr: F) {
            self.lr = lr;
        }
    };
}

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use std::collections::HashMap;

use compress_core::{CoreError, Float, Module, Param, ParamKind, ParamPath, Result};

/// Updates a model's parameters from their accumulated gradients.
///
/// Updates go through [`compress_core::Param::update`], so parametrizations project the
/// stored weights and step their own state after every update.
pub trait Optimizer<F: Float>: std::fmt::Debug {
    /// Applies one update to every parameter that has a gradient (buffers are skipped).
    ///
    /// # Errors
    ///
    /// A shape mismatch if a parameter changed shape since the optimizer saw it.
    fn step(&mut self, model: &mut dyn Module<F>) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> F;
    /// Sets the learning rate (schedules call this once per epoch).
    fn set_lr(&mut self, lr: F);
    /// Forgets per-parameter state (momentum, moments), e.g. after a rewind.
    fn reset(&mut self);
}

/// Calls `f` on every parameter an optimizer updates (not buffers, only those with a
/// gradient) with its path and the weight decay that applies to it (`weight_decay` for
/// weights, zero for biases and norms).
fn for_each_trained<F: Float>(
    model: &mut dyn Module<F>,
    weight_decay: F,
    mut f: impl FnMut(String, F, &mut Param<F>) -> Result<()>,
) -> Result<()> {
    model.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            if p.kind() == ParamKind::Buffer || p.grad().is_none() {
                return Ok(());
            }
            let wd = if p.kind() == ParamKind::Weight {
                weight_decay
            } else {
                F::zero()
            };
            f(path.to_string(), wd, p)
        },
    )
}

/// The optimizer state of the parameter at `key`, created by `init` on first use.
///
/// # Errors
///
/// A shape mismatch if the parameter changed shape since the state was created.
fn state_of<'a, F: Float, S>(
    states: &'a mut HashMap<String, S>,
    key: String,
    p: &Param<F>,
    init: impl FnOnce() -> S,
    shape: impl Fn(&S) -> &[usize],
) -> Result<&'a mut S> {
    let s = states.entry(key.clone()).or_insert_with(init);
    if shape(s) != p.shape() {
        return Err(CoreError::shape(key, p.shape(), shape(s)));
    }
    Ok(s)
}
