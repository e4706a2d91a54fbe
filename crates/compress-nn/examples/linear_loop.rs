//! Runs eval-mode `Linear` forwards on the shapes of a MiniLM encoder layer (`[m, 384] x
//! [384, 384]` four times, `[m, 384] x [384, 1536]`, `[m, 1536] x [1536, 384]`) over six
//! layers of distinct weights (42 MB, more than a last-level cache, as in the encoder) and
//! prints the best time per product and per layer over windows of 10 passes: a profiling
//! target (`perf record`), not a benchmark. Run it with `RAYON_NUM_THREADS=1` for one
//! thread. On Linux the times are the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so
//! other processes sharing the cores do not count; elsewhere wall time.
#![allow(unsafe_code)]
//! Usage: `cargo run --release -p compress-nn --example linear_loop -- [M] [WINDOWS]`.

use compress_core::{Layer, Mode};
use compress_nn::Linear;
use ndarray::ArrayD;
use rand::{SeedableRng, rngs::StdRng};

/// `(in, out)` of the six products of one layer.
const SHAPES: [(usize, usize); 6] = [
    (384, 384),
    (384, 384),
    (384, 384),
    (384, 384),
    (384, 1536),
    (1536, 384),
];

/// Seconds of CPU time of this thread (Linux), or of wall time since the first call.
fn now() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        /// `CLOCK_THREAD_CPUTIME_ID` on Linux.
        const THREAD_CPU: i32 = 3;
        let mut t = Timespec { sec: 0, nsec: 0 };
        // SAFETY: `t` is a valid `timespec` for the call to write.
        if unsafe { clock_gettime(THREAD_CPU, &mut t) } == 0 {
            return t.sec as f64 + t.nsec as f64 * 1e-9;
        }
    }
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let m = args.first().copied().unwrap_or(128);
    let windows = args.get(1).copied().unwrap_or(50);
    let mut rng = StdRng::seed_from_u64(0);
    let mut layers: Vec<Vec<Linear<f32>>> = (0..6)
        .map(|_| {
            SHAPES
                .iter()
                .map(|&(k, n)| Linear::<f32>::new(k, n, true, &mut rng))
                .collect()
        })
        .collect();
    let input = |k: usize| {
        ArrayD::from_shape_fn(vec![m, k], |d| ((d[0] * 7 + d[1] * 3) % 11) as f32 / 11.0)
    };
    let (xh, xi) = (input(384), input(1536));
    let mut best = [f64::INFINITY; 6];
    let mut best_pass = f64::INFINITY;
    let run = |layers: &mut [Vec<Linear<f32>>], only: Option<usize>| {
        let start = now();
        for _ in 0..10 {
            for layer in layers.iter_mut() {
                for (s, l) in layer.iter_mut().enumerate() {
                    if only.is_some_and(|o| o != s) {
                        continue;
                    }
                    let x = if s == 5 { &xi } else { &xh };
                    std::hint::black_box(
                        l.forward(std::hint::black_box(x), Mode::Eval)
                            .expect("forward"),
                    );
                }
            }
        }
        (now() - start) / 10.0
    };
    for _ in 0..windows {
        best_pass = best_pass.min(run(&mut layers, None));
        for (s, b) in best.iter_mut().enumerate().skip(3) {
            *b = b.min(run(&mut layers, Some(s)) / 6.0);
        }
    }
    for (s, &(k, n)) in SHAPES.iter().enumerate().skip(3) {
        let macs = (m * k * n) as f64;
        println!(
            "{m}x{k}x{n}: {:8.1} us  {:6.1} GMAC/s",
            best[s] * 1e6,
            macs / best[s] / 1e9
        );
    }
    let macs: f64 = SHAPES.iter().map(|&(k, n)| (6 * m * k * n) as f64).sum();
    println!(
        "six layers: {:8.1} us  {:6.1} GMAC/s",
        best_pass * 1e6,
        macs / best_pass / 1e9
    );
}
