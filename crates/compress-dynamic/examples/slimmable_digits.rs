//! A slimmable MLP on the embedded digits: sandwich-rule training with inplace
//! distillation, then accuracy and MACs at every width.
//!
//! Run with `cargo run -p compress-dynamic --release --example slimmable_digits [epochs]`.

use compress_core::Layer;
use compress_dynamic::{SandwichConfig, SlimmableNet, train_sandwich};
use compress_nn::{Adam, LrSchedule, data::digits, train::evaluate};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> compress_dynamic::Result<()> {
    let epochs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60);
    let (train, test) = digits::<f32>()?;
    let widths = [0.25, 0.5, 0.75, 1.0];
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = SlimmableNet::mlp(&[64, 128, 128, 10], &widths, true, &mut rng)?;
    let cfg = SandwichConfig {
        epochs,
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        ..SandwichConfig::default()
    };
    train_sandwich(&mut net, &mut Adam::new(3e-3), &train, &cfg)?;
    for w in widths {
        net.set_width(w)?;
        let acc = evaluate(&mut net, &test, 512)?;
        println!(
            "width {w:.2}: accuracy {acc:.4}, {} MACs",
            net.cost(&[64])?.macs
        );
    }
    Ok(())
}
