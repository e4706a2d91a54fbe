//! Optimizers and learning-rate schedules.

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use compress_core::{Float, Module, Result};

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
