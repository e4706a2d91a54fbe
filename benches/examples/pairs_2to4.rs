//! `Sparse24Linear` against the dense `Linear` (eval mode, one thread) on the 2:4 bench
//! shapes, timed in interleaved pairs: each repetition runs one forward of each, so both
//! see the same machine load, and the ratio is taken of the best times (and of the 10th
//! percentiles). Criterion medians of separate benchmarks drift apart when other jobs
//! share the cores; these ratios do not.
//!
//! `cargo run --release -p compress-benches --example pairs_2to4 [-- REPS]` (300 by
//! default); `NETCOMPRESS_ISA=avx2` caps the kernels at AVX2.

use std::time::Instant;

use compress_benches::random_matrix;
use compress_core::{Layer, Mode};
use compress_nn::Linear;
use compress_prune::{Sparse24Linear, nm_mask};
use rand::{SeedableRng, rngs::StdRng};

/// The `q` quantile of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q) as usize]
}

fn main() {
    let reps: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 300,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("REPS must be a positive integer");
            std::process::exit(2);
        }
    };
    if let Err(e) = compress_core::Isa::requested() {
        eprintln!("{e}");
        std::process::exit(2);
    }
    // Ignored if a pool exists (it cannot: nothing ran on rayon yet).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global();
    println!(
        "kernels: {}, {reps} interleaved pairs, times in us",
        compress_core::Isa::current().name()
    );
    for (m, k, n) in [(64, 1536, 384), (64, 384, 1536)] {
        // The same layers as the `prune/linear_2to4` benches.
        let mut dense = Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(5));
        let mask = nm_mask(&dense.weight.effective(), 2, 4, None, "w").expect("finite");
        *dense.weight.value_mut() *= mask.array();
        let mut sparse = Sparse24Linear::from_linear(&dense, "w").expect("2:4");
        let x = random_matrix(m, k, 6).into_dyn();
        let (mut ts, mut td) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
        for _ in 0..reps {
            let t = Instant::now();
            std::hint::black_box(sparse.forward(&x, Mode::Eval).expect("shapes"));
            ts.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            std::hint::black_box(dense.forward(&x, Mode::Eval).expect("shapes"));
            td.push(t.elapsed().as_secs_f64() * 1e6);
        }
        ts.sort_by(f64::total_cmp);
        td.sort_by(f64::total_cmp);
        println!(
            "{m}x{k}x{n}: 2:4 best {:.1} p10 {:.1} | dense best {:.1} p10 {:.1} | ratio best {:.2}x p10 {:.2}x",
            ts[0],
            quantile(&ts, 0.1),
            td[0],
            quantile(&td, 0.1),
            td[0] / ts[0],
            quantile(&td, 0.1) / quantile(&ts, 0.1),
        );
    }
}
