//! Times the MiniLM-shaped teacher (6 layers, random weights) against its 3-layer student
//! (every other layer, as distill-minilm builds it) on `B` sequences of 128 tokens,
//! interleaved forward by forward, and the parts of a forward that do not scale
//! with the layers (embeddings): a diagnostic, not a benchmark.
//! Usage: `RAYON_NUM_THREADS=1 cargo run --release -p compress-transformer --example student_speed -- [B] [REPS]`.

use std::time::Instant;

use compress_core::Mode;
use compress_transformer::{BertConfig, BertModel, every_kth_layer, truncated_student};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Wall milliseconds of one call.
fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (batch, reps) = (
        args.first().copied().unwrap_or(32),
        args.get(1).copied().unwrap_or(5),
    );
    let cfg = BertConfig::minilm_l6();
    let mut teacher = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    let keep = every_kth_layer(cfg.num_hidden_layers, 2).expect("2 divides 6");
    let mut student = truncated_student(&teacher, &keep).expect("layers exist");
    let mut rng = StdRng::seed_from_u64(0);
    let ids = Array2::from_shape_simple_fn((batch, 128), || rng.random_range(0..cfg.vocab_size));
    {
        let fwd = |m: &mut BertModel<f32>| {
            ms(|| {
                std::hint::black_box(m.forward(&ids, None, Mode::Eval).expect("valid ids"));
            })
        };
        fwd(&mut teacher);
        fwd(&mut student);
        let (mut t, mut s, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..reps {
            let (a, b) = if i % 2 == 0 {
                let a = fwd(&mut teacher);
                (a, fwd(&mut student))
            } else {
                let b = fwd(&mut student);
                (fwd(&mut teacher), b)
            };
            println!("teacher {a:8.1} ms  student {b:8.1} ms  ratio {:.3}", a / b);
            t.push(a);
            s.push(b);
            r.push(a / b);
        }
        let emb: Vec<f64> = (0..reps)
            .map(|_| {
                ms(|| {
                    std::hint::black_box(
                        teacher
                            .embeddings
                            .forward(&ids, None, Mode::Eval)
                            .expect("valid ids"),
                    );
                })
            })
            .collect();
        println!(
            "median: teacher {:.1} ms, student {:.1} ms, ratio of medians {:.3}, median ratio {:.3}, embeddings {:.1} ms",
            median(t.clone()),
            median(s.clone()),
            median(t) / median(s.clone()),
            median(r),
            median(emb)
        );
    }
}
