//! Joint training of all exits: a weighted sum of the exits' losses, optionally distilling
//! the last exit into the earlier ones.

use compress_core::{CoreError, Float, Mode, Module};
use compress_nn::loss::{argmax_rows, softmax_cross_entropy};
use compress_nn::train::{Epoch, Minibatches, check_loss};
use compress_nn::{Dataset, LrSchedule, Optimizer};
use ndarray::Array2;

use super::EarlyExitNet;
use super::net::EarlyHeads;
use crate::{DynamicError, Result, distill_loss};

/// Distillation of the last exit (teacher, held constant) into the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExitDistill {
    /// Softmax temperature (> 0).
    pub temperature: f64,
    /// Weight of the distillation term in an early exit's loss, in `[0, 1]`; the label
    /// term gets `1 - alpha`.
    pub alpha: f64,
}

/// Joint training settings. Defaults: 20 epochs, batch 32, seed 0, every exit weighted 1,
/// no distillation, constant learning rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitTrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per minibatch.
    pub batch_size: usize,
    /// Seed of the minibatch shuffles.
    pub seed: u64,
    /// Weight of each exit's loss (`None` = all 1).
    pub exit_weights: Option<Vec<f64>>,
    /// Optional distillation of the last exit into earlier ones.
    pub distill: Option<ExitDistill>,
    /// Learning-rate schedule over epochs.
    pub schedule: LrSchedule,
}

impl Default for ExitTrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 32,
            seed: 0,
            exit_weights: None,
            distill: None,
            schedule: LrSchedule::Constant,
        }
    }
}

/// One epoch of joint training.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitEpochStats {
    /// Epoch index from 0.
    pub epoch: usize,
    /// Mean weighted loss.
    pub loss: f64,
    /// Training accuracy of each exit measured during the epoch.
    pub exit_accuracy: Vec<f64>,
}

/// Summary of joint training.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExitTrainReport {
    /// Per-epoch statistics.
    pub epochs: Vec<ExitEpochStats>,
    /// Optimizer steps taken.
    pub steps: usize,
}

impl ExitTrainConfig {
    fn weights(&self, k: usize) -> Result<Vec<f64>> {
        if let Some(d) = self.distill
            && !(d.temperature.is_finite() && d.temperature > 0.0 && (0.0..=1.0).contains(&d.alpha))
        {
            return Err(DynamicError::config(
                "distill",
                format!(
                    "temperature {} must be > 0 and alpha {} in [0, 1]",
                    d.temperature, d.alpha
                ),
            ));
        }
        let w = self.exit_weights.clone().unwrap_or_else(|| vec![1.0; k]);
        if w.len() != k {
            return Err(CoreError::shape("exit_weights", &[k], &[w.len()]).into());
        }
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(DynamicError::config(
                "exit_weights",
                format!("{w:?} must be finite and non-negative"),
            ));
        }
        Ok(w)
    }
}

/// The joint loss of all exits for one batch and its gradient per exit.
///
/// `loss = sum_k w_k L_k`, where the last exit has `L = CE` and an earlier exit has
/// `L = (1 - alpha) CE + alpha KD(exit, last exit)` with distillation, else `CE`.
///
/// # Errors
///
/// Label or shape errors, wrong weight count.
pub fn joint_exit_loss<F: Float>(
    logits: &[Array2<F>],
    labels: &[usize],
    weights: &[f64],
    distill: Option<ExitDistill>,
) -> Result<(F, Vec<Array2<F>>)> {
    if weights.len() != logits.len() || logits.is_empty() {
        return Err(CoreError::shape("exit_weights", &[logits.len()], &[weights.len()]).into());
    }
    let last = logits.len() - 1;
    let mut total = F::zero();
    let mut grads = Vec::with_capacity(logits.len());
    for (k, z) in logits.iter().enumerate() {
        let w = F::lit(weights[k]);
        let (ce, gce) = softmax_cross_entropy(z, labels)?;
        let (l, g) = match distill {
            Some(d) if k < last => {
                let a = F::lit(d.alpha);
                let (kd, gkd) = distill_loss(z, &logits[last], d.temperature)?;
                let b = F::one() - a;
                (b * ce + a * kd, gce.mapv(|v| v * b) + gkd.mapv(|v| v * a))
            }
            _ => (ce, gce),
        };
        total += w * l;
        grads.push(g.mapv(|v| v * w));
    }
    Ok((total, grads))
}

/// Trains every exit jointly with `optimizer` (one step per minibatch on the gradient of
/// [`joint_exit_loss`] through all heads and the shared stages).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for a zero batch size, bad weights or distillation
/// settings; [`NnError::Diverged`](compress_nn::NnError::Diverged) when the loss stops being finite; any layer error.
pub fn train_early_exit<F: Float>(
    net: &mut EarlyExitNet<F>,
    optimizer: &mut dyn Optimizer<F>,
    train: &Dataset<F>,
    config: &ExitTrainConfig,
) -> Result<ExitTrainReport> {
    train_loop(net, optimizer, train, config, false)
}

/// Trains only the early heads (every exit but the last) on a frozen backbone: the stages
/// and the last exit keep their weights, so the network's static accuracy is the trained
/// static network's, exactly. The stages and the last head run in [`Mode::Eval`] (batch
/// statistics untouched); each early head learns from [`joint_exit_loss`] (labels and, with
/// `config.distill`, the frozen last exit as teacher). The last exit's weight in
/// `config.exit_weights` only scales the reported loss.
///
/// This is how early exits are added to a trained network without lowering its own
/// accuracy: train the static network, attach heads with
/// [`EarlyExitNet::insert_exit`], then call this.
///
/// # Errors
///
/// As [`train_early_exit`]; also [`CoreError::InvalidConfig`] for a network with one exit
/// (nothing to train).
pub fn train_exit_heads<F: Float>(
    net: &mut EarlyExitNet<F>,
    optimizer: &mut dyn Optimizer<F>,
    train: &Dataset<F>,
    config: &ExitTrainConfig,
) -> Result<ExitTrainReport> {
    if net.num_exits() < 2 {
        return Err(DynamicError::config(
            "exits",
            format!(
                "a frozen backbone needs an early exit to train, the network has {} exit(s)",
                net.num_exits()
            ),
        ));
    }
    train_loop(net, optimizer, train, config, true)
}

/// The training loop of [`train_early_exit`] and (with `frozen`) [`train_exit_heads`].
fn train_loop<F: Float>(
    net: &mut EarlyExitNet<F>,
    optimizer: &mut dyn Optimizer<F>,
    train: &Dataset<F>,
    config: &ExitTrainConfig,
    frozen: bool,
) -> Result<ExitTrainReport> {
    net.validate()?;
    let k = net.num_exits();
    let mut minibatches = Minibatches::new(train.len(), config.batch_size, config.seed)?
        .epochs(config.epochs, config.schedule);
    let weights = config.weights(k)?;
    let mut report = ExitTrainReport::default();
    while let Some(Epoch {
        index: epoch,
        batches,
        ..
    }) = minibatches.next_epoch(&mut *optimizer)
    {
        let mut loss_sum = 0.0;
        let mut correct = vec![0usize; k];
        for idx in batches {
            let (x, y) = train.batch(idx);
            let logits = if frozen {
                EarlyHeads(net).zero_grad();
                net.forward_frozen(&x)?
            } else {
                net.zero_grad();
                net.forward_all(&x, Mode::Train)?
            };
            let (l, grads) = joint_exit_loss(&logits, &y, &weights, config.distill)?;
            check_loss(l, epoch, report.steps)?;
            for (c, z) in correct.iter_mut().zip(&logits) {
                *c += argmax_rows(z)
                    .iter()
                    .zip(&y)
                    .filter(|(a, b)| a == b)
                    .count();
            }
            loss_sum += l.as_f64() * idx.len() as f64;
            if frozen {
                net.backward_early_heads(&grads)?;
                optimizer.step(&mut EarlyHeads(net))?;
            } else {
                net.backward_all(&grads)?;
                optimizer.step(net)?;
            }
            report.steps += 1;
        }
        let n = train.len().max(1) as f64;
        report.epochs.push(ExitEpochStats {
            epoch,
            loss: loss_sum / n,
            exit_accuracy: correct.iter().map(|&c| c as f64 / n).collect(),
        });
    }
    Ok(report)
}
