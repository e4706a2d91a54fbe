//! Early exits on the embedded digits: train a 3-exit MLP jointly, calibrate the exit
//! thresholds on a validation split, then run batched dynamic inference on the test set.
//!
//! Run with `cargo run -p compress-dynamic --release --example early_exit_digits [epochs] [seed]`.

use compress_dynamic::{
    CalibrationTarget, EarlyExitNet, ExitDistill, ExitRule, ExitTrainConfig, Thresholds, calibrate,
    train_early_exit,
};
use compress_nn::{Adam, Linear, LrSchedule, ReLU, Sequential, data::digits};
use rand::{SeedableRng, rngs::StdRng};

fn block(i: usize, o: usize, rng: &mut StdRng) -> Sequential<f32> {
    Sequential::new()
        .with(Linear::new(i, o, true, rng))
        .with(ReLU::new())
}

fn main() -> compress_dynamic::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let (train_all, test) = digits::<f32>()?;
    let (train, valid) = train_all.split_stratified(0.2, seed)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = EarlyExitNet::new(&[64])
        .with_stage(block(64, 64, &mut rng))
        .with_exit(Linear::new(64, 10, true, &mut rng))
        .with_stage(block(64, 128, &mut rng))
        .with_exit(Linear::new(128, 10, true, &mut rng))
        .with_stage(block(128, 128, &mut rng))
        .with_exit(Linear::new(128, 10, true, &mut rng));
    let cfg = ExitTrainConfig {
        epochs,
        seed,
        distill: Some(ExitDistill {
            temperature: 3.0,
            alpha: 0.5,
        }),
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        ..ExitTrainConfig::default()
    };
    train_early_exit(&mut net, &mut Adam::new(3e-3), &train, &cfg)?;

    let profile = net.profile(&valid, ExitRule::MaxSoftmax, 256)?;
    println!(
        "validation accuracy per exit: {:?}",
        profile.exit_accuracies()
    );
    let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
    println!("thresholds {:?}", cal.thresholds.taus);

    let full = net.infer(&test.x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))?;
    let dynamic = net.infer(&test.x, &cal.thresholds)?;
    println!(
        "test: full {:.4} at {:.0} MACs; dynamic {:.4} at {:.0} MACs ({:.1}% fewer), exits {:?}",
        full.accuracy(&test.labels),
        full.avg_macs(),
        dynamic.accuracy(&test.labels),
        dynamic.avg_macs(),
        100.0 * (1.0 - dynamic.avg_macs() / full.avg_macs()),
        dynamic.exit_fractions()
    );
    Ok(())
}
