//! `baseline`: the reference MLP (64-128-64-10 on digits, LeNet-300-100 on MNIST), dense f32.

use compress_core::Module;
use compress_nn::models::{mlp, small_cnn};
use compress_nn::train::CrossEntropy;
use compress_nn::train::evaluate;
use compress_nn::{Adam, Dataset, LrSchedule, Optimizer, Sequential, Sgd, TrainConfig, Trainer};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::json;

use super::{Ctx, DataSource, Metrics, Report};
use crate::error::Result;
use crate::progress::EpochBar;

/// Widths of the reference MLP for the context's data set.
pub(crate) fn mlp_widths(ctx: &Ctx) -> Vec<usize> {
    match ctx.data {
        DataSource::Digits => vec![64, 128, 64, 10],
        DataSource::Mnist(_) => vec![784, 300, 100, 10],
    }
}

/// Trains `net` with `opt` under `config` behind a progress bar labelled `label` (softmax
/// cross-entropy); returns the test accuracy. Every experiment trains through this.
pub(crate) fn fit_eval(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    opt: &mut dyn Optimizer<f32>,
    config: TrainConfig,
    (train, test): (&Dataset<f32>, &Dataset<f32>),
) -> Result<f64> {
    let mut bar = EpochBar::new(label, config.epochs, ctx.progress);
    let trainer = Trainer::new(config);
    trainer.fit_with(net, opt, train, None, &mut CrossEntropy, &mut bar)?;
    bar.finish();
    Ok(evaluate(net, test, 512)?)
}

/// The usual configuration: `epochs` of batch-32 minibatches shuffled from the context's seed.
pub(crate) fn config(ctx: &Ctx, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        seed: ctx.seed,
        ..TrainConfig::default()
    }
}

/// [`config`] with the rate cosine-annealed down to `min_lr`.
pub(crate) fn cosine_config(ctx: &Ctx, epochs: usize, min_lr: f64) -> TrainConfig {
    TrainConfig {
        schedule: LrSchedule::Cosine { min_lr },
        ..config(ctx, epochs)
    }
}

/// Trains `net` with SGD (rate `lr`, momentum 0.9) under `cfg`; returns the test accuracy.
pub(crate) fn fit_sgd(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    data: (&Dataset<f32>, &Dataset<f32>),
    cfg: TrainConfig,
    lr: f32,
) -> Result<f64> {
    fit_eval(ctx, label, net, &mut Sgd::new(lr).momentum(0.9), cfg, data)
}

/// A fine-tuning recipe: SGD (rate `lr`, momentum 0.9) with the rate cosine-annealed to 0,
/// batch 32, minibatches shuffled from the context's seed plus `seed_offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FineTune {
    /// The initial learning rate.
    pub(crate) lr: f32,
    /// Added to the context's seed for the shuffle.
    pub(crate) seed_offset: u64,
}

impl FineTune {
    /// Fine-tunes `net` for `epochs` behind a progress bar labelled `label`; returns the
    /// test accuracy.
    pub(crate) fn run(
        self,
        ctx: &Ctx,
        label: &str,
        net: &mut Sequential<f32>,
        data: (&Dataset<f32>, &Dataset<f32>),
        epochs: usize,
    ) -> Result<f64> {
        let cfg = TrainConfig {
            seed: ctx.seed + self.seed_offset,
            ..cosine_config(ctx, epochs, 0.0)
        };
        fit_sgd(ctx, label, net, data, cfg, self.lr)
    }
}

/// Trains `net` with SGD + momentum 0.9 for `epochs`; returns the test accuracy.
pub(crate) fn train_sgd(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    train: &Dataset<f32>,
    test: &Dataset<f32>,
    epochs: usize,
    lr: f32,
) -> Result<f64> {
    fit_sgd(ctx, label, net, (train, test), config(ctx, epochs), lr)
}

/// The small CNN for the context's images, initialised from the context's seed.
pub(crate) fn seeded_small_cnn(ctx: &Ctx) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(ctx.seed);
    small_cnn::<f32, _>(1, ctx.image_side(), 10, &mut rng)
}

/// Trains the reference MLP on the context's data; returns the model and its test accuracy.
pub(crate) fn train_reference_mlp(
    ctx: &Ctx,
    train: &Dataset<f32>,
    test: &Dataset<f32>,
) -> Result<(Sequential<f32>, f64)> {
    let mut rng = StdRng::seed_from_u64(ctx.seed);
    let mut net = mlp::<f32, _>(&mlp_widths(ctx), &mut rng);
    let epochs = ctx.epochs(30, 15);
    let acc = train_sgd(ctx, "reference MLP", &mut net, train, test, epochs, 0.05)?;
    Ok((net, acc))
}

/// A fresh reference MLP holding `src`'s stored state: the starting point of a control.
pub(crate) fn copy_mlp(widths: &[usize], src: &Sequential<f32>) -> Result<Sequential<f32>> {
    let mut net = mlp::<f32, _>(widths, &mut StdRng::seed_from_u64(0));
    net.load_state(&src.stored_dict())?;
    Ok(net)
}

/// Trains the small CNN on images `[N, 1, side, side]`; returns the model and test accuracy.
pub(crate) fn train_small_cnn(
    ctx: &Ctx,
    train: &Dataset<f32>,
    test: &Dataset<f32>,
) -> Result<(Sequential<f32>, f64)> {
    let mut net = seeded_small_cnn(ctx);
    let cfg = cosine_config(ctx, ctx.epochs(10, 6), 1e-4);
    let acc = fit_eval(
        ctx,
        "small CNN",
        &mut net,
        &mut Adam::new(3e-3),
        cfg,
        (train, test),
    )?;
    Ok((net, acc))
}

/// Runs `baseline`.
pub(crate) fn run(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let (net, acc) = train_reference_mlp(ctx, &train, &test)?;
    let m = Metrics::dense_f32(&net, &[ctx.input_dim()], acc)?;
    let (itrain, itest) = ctx.load_images()?;
    let (cnn, cnn_acc) = train_small_cnn(ctx, &itrain, &itest)?;
    let side = ctx.image_side();
    let c = Metrics::dense_f32(&cnn, &[1, side, side], cnn_acc)?;
    let extra = json!({
        "mlp": mlp_widths(ctx),
        "cnn": c,
        "train_samples": train.len(),
        "test_samples": test.len(),
        "targets": {
            "mlp_accuracy_ge_95pct": acc >= 0.95,
            "cnn_accuracy_ge_97pct": cnn_acc >= 0.97,
        },
    });
    Ok(Report::new("baseline", ctx, m, m, extra))
}
