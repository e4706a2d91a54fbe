//! Runs the MiniLM-shaped encoder (random weights) on `B` sequences of 128 tokens `N`
//! times: a profiling target (`perf record`), not a benchmark. Prints the mean, the
//! median and the fastest forward (wall time; on a shared machine the fastest is the one
//! least disturbed by other processes).
//! Usage: `cargo run --release -p compress-transformer --example encode_loop -- B N`.

use compress_core::Mode;
use compress_transformer::{BertConfig, BertModel};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (batch, n) = (
        args.first().copied().unwrap_or(1),
        args.get(1).copied().unwrap_or(20).max(1),
    );
    let cfg = BertConfig::minilm_l6();
    let mut model = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    let mut rng = StdRng::seed_from_u64(0);
    let ids = Array2::from_shape_simple_fn((batch, 128), || rng.random_range(0..cfg.vocab_size));
    std::hint::black_box(model.forward(&ids, None, Mode::Eval).expect("valid ids"));
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(model.forward(&ids, None, Mode::Eval).expect("valid ids"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let mean = times.iter().sum::<f64>() / n as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "{mean:.2} ms per forward (median {:.2}, fastest {:.2})",
        times[n / 2],
        times[0]
    );
}
