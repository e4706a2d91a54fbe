//! Tunes T and alpha for distilling a 64-1200-1200-10 teacher into a small student on a
//! validation split of the digits training set (the test set is not looked at).
//!
//! `cargo run --release -p compress-distill --example tune_digits -- [hidden] [epochs] [seeds]`

use compress_distill::{DistillConfig, DistillLoss, Distiller, KdConfig};
use compress_nn::data::digits;
use compress_nn::layers::Dropout;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Dataset, Linear, ReLU, Sequential, Sgd, TrainConfig, Trainer};
use rand::{SeedableRng, rngs::StdRng};

fn teacher(train: &Dataset<f32>, epochs: usize, p_in: f64, p_h: f64, lr: f32) -> Sequential<f32> {
    let mut rng = StdRng::seed_from_u64(100);
    let mut t = Sequential::new()
        .with(Dropout::new(p_in, 1).unwrap())
        .with(Linear::new(64, 1200, true, &mut rng))
        .with(ReLU::new())
        .with(Dropout::new(p_h, 2).unwrap())
        .with(Linear::new(1200, 1200, true, &mut rng))
        .with(ReLU::new())
        .with(Dropout::new(p_h, 3).unwrap())
        .with(Linear::new(1200, 10, true, &mut rng));
    let cfg = TrainConfig { epochs, batch_size: 32, seed: 100, ..TrainConfig::default() };
    Trainer::new(cfg).fit(&mut t, &mut Sgd::new(lr).momentum(0.9), train, None).unwrap();
    t
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let hidden = args.first().copied().unwrap_or(16);
    let epochs = args.get(1).copied().unwrap_or(30);
    let seeds = args.get(2).copied().unwrap_or(3) as u64;
    let lr: f32 = std::env::var("LR").map_or(0.05, |v| v.parse().unwrap());
    let temps: Vec<f64> = std::env::var("TEMPS").map_or(vec![1.0, 2.0, 4.0, 8.0, 20.0], |v| v.split(',').map(|x| x.parse().unwrap()).collect());
    let alphas: Vec<f64> = std::env::var("ALPHAS").map_or(vec![0.5, 0.9, 0.99], |v| v.split(',').map(|x| x.parse().unwrap()).collect());
    let (full, _) = digits::<f32>().unwrap();
    let (train, valid) = full.split_stratified(0.2, 99).unwrap();
    let start = std::time::Instant::now();
    if std::env::var("TEACHER_SWEEP").is_ok() {
        for (p_in, p_h) in [(0.0, 0.0), (0.0, 0.5), (0.2, 0.5)] {
            for lr in [0.01f32, 0.05] {
                let st = std::time::Instant::now();
                let mut t = teacher(&train, epochs, p_in, p_h, lr);
                let a = evaluate(&mut t, &valid, 512).unwrap();
                println!("teacher p_in {p_in} p_h {p_h} lr {lr}: {a:.4} ({:.1}s)", st.elapsed().as_secs_f64());
            }
        }
        return;
    }
    let te: usize = std::env::var("TEACHER_EPOCHS").map_or(epochs, |v| v.parse().unwrap());
    let mut t = teacher(&train, te, 0.0, 0.5, 0.01);
    let tacc = evaluate(&mut t, &valid, 512).unwrap();
    println!("teacher valid {tacc:.4} ({:.1}s)", start.elapsed().as_secs_f64());
    let sched = if std::env::var("COSINE").is_ok() { compress_nn::LrSchedule::Cosine { min_lr: 0.0 } } else { compress_nn::LrSchedule::Constant };
    let cfg = |seed| TrainConfig { epochs, batch_size: 32, seed, schedule: sched, ..TrainConfig::default() };
    let hiddens: Vec<usize> = std::env::var("HIDDENS").map_or(vec![hidden], |v| v.split(',').map(|x| x.parse().unwrap()).collect());
    let lrs: Vec<f32> = std::env::var("LRS").map_or(vec![lr], |v| v.split(',').map(|x| x.parse().unwrap()).collect());
    for &hidden in &hiddens {
    for &lr in &lrs {
    let mut alone = Vec::new();
    for seed in 0..seeds {
        let mut s = mlp::<f32, _>(&[64, hidden, 10], &mut StdRng::seed_from_u64(seed));
        Trainer::new(cfg(seed)).fit(&mut s, &mut Sgd::new(lr).momentum(0.9), &train, None).unwrap();
        alone.push(evaluate(&mut s, &valid, 512).unwrap());
    }
    let ma = alone.iter().sum::<f64>() / seeds as f64;
    println!("hidden {hidden} lr {lr}: alone valid mean {ma:.4} {alone:?}");
    if std::env::var("ALONE").is_ok() { continue; }
    for &temp in &temps {
        for &alpha in &alphas {
            let mut accs = Vec::new();
            for seed in 0..seeds {
                let mut s = mlp::<f32, _>(&[64, hidden, 10], &mut StdRng::seed_from_u64(seed));
                let loss = DistillLoss::Kd(KdConfig::new(temp, alpha).unwrap());
                let mut d = Distiller::new(&mut t, DistillConfig::new(loss, cfg(seed))).unwrap();
                d.fit(&mut s, &mut Sgd::new(lr).momentum(0.9), &train, None).unwrap();
                accs.push(evaluate(&mut s, &valid, 512).unwrap());
            }
            let m = accs.iter().sum::<f64>() / seeds as f64;
            println!(
                "  T {temp:>4} alpha {alpha:.2}: valid mean {m:.4} gap closed {:.2}",
                (m - ma) / (tacc - ma)
            );
        }
    }
    }
    }
    println!("total {:.1}s", start.elapsed().as_secs_f64());
}
