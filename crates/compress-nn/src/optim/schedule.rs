//! Learning-rate schedules.

/// Learning rate as a function of the epoch.
///
/// ```
/// use compress_nn::LrSchedule;
/// let s = LrSchedule::Step { step_size: 10, gamma: 0.1 };
/// assert!((s.lr_at(0.5, 10, 100) - 0.05).abs() < 1e-12);
/// let c = LrSchedule::Cosine { min_lr: 0.0 };
/// assert!((c.lr_at(1.0, 50, 100) - 0.5).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// Cosine annealing from the base rate down to `min_lr` over the run.
    Cosine {
        /// Final learning rate.
        min_lr: f64,
    },
}

impl LrSchedule {
    /// The rate at `epoch` of `total` epochs, starting from `base`.
    pub fn lr_at(&self, base: f64, epoch: usize, total: usize) -> f64 {
        match *self {
            Self::Constant => base,
            Self::Step { step_size, gamma } => base * gamma.powi((epoch / step_size.max(1)) as i32),
            Self::Cosine { min_lr } => {
                let t = epoch as f64 / total.max(1) as f64;
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}
