//! Chooses `T` and `alpha` for the `distill` experiment on a **validation split** of the
//! digits training set (the test set is never looked at): a 64-1200-1200-10 teacher with
//! dropout 0.5, students of the given widths trained alone and distilled over seeds.
//!
//! ```text
//! cargo run --release -p compress-distill --example tune_digits -- [epochs] [seeds]
//! ```
//!
//! Environment: `HIDDENS` (student hidden widths, default `10`), `LRS` (student learning
//! rates, default `0.02`), `TEMPS` (default `1,2,4,8,20`), `ALPHAS` (default `0.5,0.7,0.9`),
//! `TEACHER_EPOCHS` (default: `epochs`). With 40 epochs and 10 seeds, hidden 10 and lr 0.02,
//! `T = 4, alpha = 0.9` closed 45-51 % of the validation gap (two teachers), the best or
//! tied for best.

use compress_distill::{DistillConfig, DistillLoss, Distiller, KdConfig};
use compress_nn::data::digits;
use compress_nn::layers::Dropout;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Dataset, Linear, ReLU, Sequential, Sgd, TrainConfig, Trainer};
use rand::{SeedableRng, rngs::StdRng};

fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|x| x.trim().parse().ok().expect("a number"))
        .collect()
}

fn config(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        seed,
        ..TrainConfig::default()
    }
}

fn teacher(train: &Dataset<f32>, epochs: usize) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(100);
    let mut t = Sequential::new()
        .with(Linear::new(64, 1200, true, &mut rng))
        .with(ReLU::new())
        .with(Dropout::new(0.5, 2).expect("p in [0, 1]"))
        .with(Linear::new(1200, 1200, true, &mut rng))
        .with(ReLU::new())
        .with(Dropout::new(0.5, 3).expect("p in [0, 1]"))
        .with(Linear::new(1200, 10, true, &mut rng));
    Trainer::new(config(epochs, 100))
        .fit(&mut t, &mut Sgd::new(0.01).momentum(0.9), train, None)
        .expect("teacher trains");
    t
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let epochs = args.first().copied().unwrap_or(40);
    let seeds = args.get(1).copied().unwrap_or(10) as u64;
    let hiddens: Vec<usize> = list("HIDDENS", "10");
    let lrs: Vec<f32> = list("LRS", "0.02");
    let temps: Vec<f64> = list("TEMPS", "1,2,4,8,20");
    let alphas: Vec<f64> = list("ALPHAS", "0.5,0.7,0.9");
    let teacher_epochs = list::<usize>("TEACHER_EPOCHS", &epochs.to_string())[0];

    let (full, _) = digits::<f32>().expect("embedded digits");
    let (train, valid) = full.split_stratified(0.2, 99).expect("valid fraction");
    let start = std::time::Instant::now();
    let mut t = teacher(&train, teacher_epochs);
    let t_acc = evaluate(&mut t, &valid, 512).expect("evaluate");
    println!(
        "teacher valid {t_acc:.4} ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
    for &hidden in &hiddens {
        for &lr in &lrs {
            let student =
                |seed: u64| mlp::<f32, _>(&[64, hidden, 10], &mut StdRng::seed_from_u64(seed));
            let alone: Vec<f64> = (0..seeds)
                .map(|seed| {
                    let mut s = student(seed);
                    Trainer::new(config(epochs, seed))
                        .fit(&mut s, &mut Sgd::new(lr).momentum(0.9), &train, None)
                        .expect("student trains");
                    evaluate(&mut s, &valid, 512).expect("evaluate")
                })
                .collect();
            let a = mean(&alone);
            println!("hidden {hidden} lr {lr}: alone valid mean {a:.4}");
            for &temp in &temps {
                for &alpha in &alphas {
                    let kd = KdConfig::new(temp, alpha).expect("valid T and alpha");
                    let accs: Vec<f64> = (0..seeds)
                        .map(|seed| {
                            let mut s = student(seed);
                            let cfg = DistillConfig::new(DistillLoss::Kd(kd), config(epochs, seed));
                            let mut d = Distiller::new(&mut t, cfg).expect("valid config");
                            d.fit(&mut s, &mut Sgd::new(lr).momentum(0.9), &train, None)
                                .expect("student trains");
                            evaluate(&mut s, &valid, 512).expect("evaluate")
                        })
                        .collect();
                    let m = mean(&accs);
                    println!(
                        "  T {temp:>4} alpha {alpha:.2}: valid mean {m:.4}, gap closed {:.2}",
                        (m - a) / (t_acc - a)
                    );
                }
            }
        }
    }
    println!("total {:.1} s", start.elapsed().as_secs_f64());
}
