//! Times what a user's debug build runs: one SGD step on a 784-300-100-10 MLP (301K
//! parameters), one full training step on it, and a small distillation on the digits.
//!
//! Prints the figures, never asserts them. Run it the way a user builds: this crate at
//! opt-level 0 and the netcompress crates optimised, e.g. `scripts/debug-speed.sh`.

use std::time::{Duration, Instant};

use netcompress::core::CoreError;
use netcompress::distill::{DistillConfig, DistillLoss, Distiller, KdConfig};
use netcompress::ndarray::{ArrayD, Ix2};
use netcompress::nn::data::digits;
use netcompress::nn::loss::softmax_cross_entropy;
use netcompress::nn::models::mlp;
use netcompress::nn::{Optimizer, Sgd, TrainConfig, Trainer};
use netcompress::prelude::*;
use netcompress::rand::{Rng, SeedableRng, rngs::StdRng};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> netcompress::Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = mlp::<f32, _>(&[784, 300, 100, 10], &mut rng);
    let batch = 64;
    let x = ArrayD::from_shape_fn(vec![batch, 784], |_| rng.random_range(0.0f32..1.0));
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut opt = Sgd::new(0.01f32).momentum(0.9);

    let train_step = |net: &mut netcompress::nn::Sequential<f32>| -> netcompress::Result<()> {
        net.zero_grad();
        let logits = net.forward(&x, Mode::Train)?;
        let logits = logits
            .into_dimensionality::<Ix2>()
            .map_err(CoreError::from)?;
        let (_, grad) = softmax_cross_entropy(&logits, &labels)?;
        net.backward(&grad.into_dyn())?;
        Ok(())
    };
    train_step(&mut net)?;
    let steps: Vec<Duration> = (0..21)
        .map(|_| {
            let t = Instant::now();
            opt.step(&mut net).expect("step");
            t.elapsed()
        })
        .collect();
    let fulls: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            train_step(&mut net).expect("forward/backward");
            opt.step(&mut net).expect("step");
            t.elapsed()
        })
        .collect();
    println!(
        "sgd step, {} params: {:.3} ms (median of 21)",
        net.num_params(),
        median(steps).as_secs_f64() * 1e3
    );
    println!(
        "train step (batch {batch}: forward, loss, backward, sgd): {:.3} ms (median of 7)",
        median(fulls).as_secs_f64() * 1e3
    );

    let t = Instant::now();
    let (train, test) = digits::<f32>()?;
    let config = |epochs| TrainConfig {
        epochs,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let mut teacher = mlp::<f32, _>(&[64, 256, 128, 10], &mut StdRng::seed_from_u64(11));
    Trainer::new(config(10)).fit(&mut teacher, &mut Sgd::new(0.1).momentum(0.9), &train, None)?;
    let mut student = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(1));
    let loss = DistillLoss::Kd(KdConfig::new(4.0, 0.9)?);
    let mut distiller = Distiller::new(&mut teacher, DistillConfig::new(loss, config(10)))?;
    distiller.fit(
        &mut student,
        &mut Sgd::new(0.1).momentum(0.9),
        &train,
        Some(&test),
    )?;
    let report = distiller.evaluate(&mut student, &test)?;
    println!(
        "distillation (teacher 64-256-128-10 10 epochs, student 64-32-10 10 epochs, digits): {:.2} s, {report:?}",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
