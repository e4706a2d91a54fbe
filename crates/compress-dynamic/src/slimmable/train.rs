//! Sandwich-rule training with inplace distillation, and batch-norm recalibration.

use compress_core::{CoreError, Float, Layer, Mode, Module};
use compress_nn::loss::softmax_cross_entropy;
use compress_nn::train::{Epoch, Minibatches, check_loss};
use compress_nn::{Dataset, LrSchedule, Optimizer};
use ndarray::Array2;
use rand::seq::SliceRandom;

use super::SlimmableNet;
use crate::output::logits_2d;
use crate::{DynamicError, Result, distill_loss};

/// Sandwich-rule settings (Yu & Huang, Universally Slimmable Networks). Defaults:
/// 20 epochs, batch 32, seed 0, 2 random widths per step, inplace distillation on at
/// temperature 1, constant learning rate.
#[derive(Debug, Clone, PartialEq)]
pub struct SandwichConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Seed of shuffles and width sampling.
    pub seed: u64,
    /// Widths drawn (without replacement) per step from the configured widths strictly
    /// between the smallest and the largest.
    pub random_widths: usize,
    /// Train the smaller widths on the largest width's soft predictions (inplace
    /// distillation) instead of the labels.
    pub inplace_distill: bool,
    /// Softmax temperature of the inplace distillation.
    pub temperature: f64,
    /// Learning-rate schedule over epochs.
    pub schedule: LrSchedule,
}

impl Default for SandwichConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 32,
            seed: 0,
            random_widths: 2,
            inplace_distill: true,
            temperature: 1.0,
            schedule: LrSchedule::Constant,
        }
    }
}

/// One epoch of sandwich training.
#[derive(Debug, Clone, PartialEq)]
pub struct SandwichEpoch {
    /// Epoch index from 0.
    pub epoch: usize,
    /// Mean label loss of the largest width.
    pub loss_max: f64,
    /// Mean loss of the smallest width (distillation or label loss).
    pub loss_min: f64,
}

/// Summary of sandwich training.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SandwichReport {
    /// Per-epoch statistics.
    pub epochs: Vec<SandwichEpoch>,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// Trains `net` by the sandwich rule: every step runs the largest width (label loss), the
/// smallest and `random_widths` random widths (inplace distillation from the largest, or
/// label loss), accumulates every width's gradients, then takes one optimizer step.
/// Leaves the network at its largest width.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for a zero batch size or a bad temperature,
/// [`NnError::Diverged`](compress_nn::NnError::Diverged) when a loss stops being finite, any layer or label error.
pub fn train_sandwich<F: Float>(
    net: &mut SlimmableNet<F>,
    optimizer: &mut dyn Optimizer<F>,
    train: &Dataset<F>,
    config: &SandwichConfig,
) -> Result<SandwichReport> {
    let mut minibatches = Minibatches::new(train.len(), config.batch_size, config.seed)?
        .epochs(config.epochs, config.schedule);
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return Err(DynamicError::config(
            "temperature",
            format!("{} must be finite and positive", config.temperature),
        ));
    }
    let widths = net.widths().to_vec();
    let (w_min, w_max) = (widths[0], widths[widths.len() - 1]);
    let middle: Vec<f64> = widths
        .get(1..widths.len().saturating_sub(1))
        .map(<[f64]>::to_vec)
        .unwrap_or_default();
    let mut report = SandwichReport::default();
    while let Some(Epoch {
        index: epoch,
        batches,
        rng,
        ..
    }) = minibatches.next_epoch(&mut *optimizer)
    {
        let (mut sum_max, mut sum_min) = (0.0, 0.0);
        for idx in batches {
            let (x, y) = train.batch(idx);
            net.zero_grad();
            // Largest width: label loss; its logits teach the others.
            net.set_width(w_max)?;
            let out = net.forward(&x, Mode::Train)?;
            let teacher: Array2<F> = logits_2d(&out, &"largest width")?.to_owned();
            let (l, g) = softmax_cross_entropy(&teacher, &y)?;
            check_loss(l, epoch, report.steps)?;
            sum_max += l.as_f64() * idx.len() as f64;
            net.backward(&g.into_dyn())?;
            let mut sub = vec![w_min];
            let mut mid = middle.clone();
            mid.shuffle(rng);
            sub.extend(mid.into_iter().take(config.random_widths));
            for (j, &w) in sub.iter().enumerate() {
                if (w - w_max).abs() < 1e-12 {
                    continue;
                }
                net.set_width(w)?;
                let out = net.forward(&x, Mode::Train)?;
                let z = logits_2d(&out, &"sub-network")?;
                let (l, g) = if config.inplace_distill {
                    distill_loss(&z, &teacher, config.temperature)?
                } else {
                    softmax_cross_entropy(&z, &y)?
                };
                check_loss(l, epoch, report.steps)?;
                if j == 0 {
                    sum_min += l.as_f64() * idx.len() as f64;
                }
                net.backward(&g.into_dyn())?;
            }
            optimizer.step(net)?;
            report.steps += 1;
        }
        let n = train.len().max(1) as f64;
        report.epochs.push(SandwichEpoch {
            epoch,
            loss_max: sum_max / n,
            loss_min: sum_min / n,
        });
    }
    net.set_width(w_max)?;
    Ok(report)
}

/// Recomputes the batch-norm statistics of width `w` from `data` (Universally Slimmable
/// Networks' post-training recalibration): the width's running statistics are reset and
/// replaced by the cumulative average over the batches of `batch_size` samples (at most
/// `max_batches`). No parameter changes. The network is left at width `w`, with the
/// momentum reset to PyTorch's `0.1`.
///
/// # Errors
///
/// An unknown width, a zero batch size, an empty data set, any layer error.
pub fn recalibrate_bn<F: Float>(
    net: &mut SlimmableNet<F>,
    w: f64,
    data: &Dataset<F>,
    batch_size: usize,
    max_batches: usize,
) -> Result<()> {
    if batch_size == 0 || data.is_empty() {
        return Err(CoreError::config(
            "recalibration",
            format!(
                "needs a batch size >= 1 and samples, got {batch_size} and {}",
                data.len()
            ),
        )
        .into());
    }
    net.set_width(w)?;
    net.reset_bn_stats();
    net.set_bn_momentum(None)?;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size).take(max_batches.max(1)) {
        let (x, _) = data.batch(chunk);
        net.forward(&x, Mode::Train)?;
    }
    net.set_bn_momentum(Some(0.1))?;
    Ok(())
}
