//! Factorizes the two largest layers of an MLP trained on the embedded digits to 90% of
//! their energy, then fine-tunes (docs/guide/lowrank.md).
//!
//! Run with `cargo run -p compress-arch --release --example lowrank_mlp`.

use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_sequential, largest_linears};
use compress_core::Module;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{LrSchedule, Sgd, TrainConfig, Trainer};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train, test) = compress_nn::data::digits::<f32>()?;
    let mut net = mlp::<f32, _>(&[64, 128, 64, 10], &mut StdRng::seed_from_u64(0));
    let trainer = |epochs| {
        Trainer::new(TrainConfig {
            epochs,
            schedule: LrSchedule::Cosine { min_lr: 0.0 },
            ..TrainConfig::default()
        })
    };
    // Weight decay shrinks the random part of the initial weights, so the energy
    // concentrates in few singular values.
    let mut opt = Sgd::new(0.05).momentum(0.9).weight_decay(5e-3);
    trainer(15).fit(&mut net, &mut opt, &train, None)?;
    let (params, acc) = (net.num_params(), evaluate(&mut net, &test, 512)?);
    println!("baseline: {params} params, accuracy {acc:.4}");

    let targets = largest_linears(&net, 2); // layers 0 and 2
    let report = factorize_sequential(
        &mut net,
        &targets,
        &LowRankConfig::new(RankRule::Energy(0.9)),
    )?;
    for r in &report {
        println!(
            "layer {}: {}x{} -> rank {} ({} -> {} weights, energy {:.3}, rel. error {:.3})",
            r.index,
            r.rows,
            r.cols,
            r.rank,
            r.weights_before,
            r.weights_after,
            r.kept_energy,
            r.relative_error
        );
    }
    println!(
        "before fine-tuning: accuracy {:.4}",
        evaluate(&mut net, &test, 512)?
    );
    let mut opt = Sgd::new(0.02).momentum(0.9).weight_decay(5e-3);
    trainer(8).fit(&mut net, &mut opt, &train, None)?;
    let acc = evaluate(&mut net, &test, 512)?;
    println!(
        "factorized: {} params ({:.1}%), accuracy {acc:.4}",
        net.num_params(),
        100.0 * net.num_params() as f64 / params as f64
    );
    Ok(())
}
