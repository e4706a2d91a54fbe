//! Criterion benchmarks for netcompress: one binary, one suite per crate.
//!
//! Run one group with `cargo bench -p compress-benches --bench main -- 'quant/'`.
//!
//! Benchmarks run on one thread (the figures compared with the peers), unless
//! `RAYON_NUM_THREADS` is set; ids ending in `_2threads` install a pool of two threads
//! themselves. `NETCOMPRESS_ISA=avx2` caps the kernels at AVX2 (see `compress_core::Isa`).

mod suites;

fn main() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Ignored if a pool already exists (it cannot, this is the first thing main does).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global();
    }
    if let Err(e) = compress_core::Isa::requested() {
        eprintln!("{e}");
        std::process::exit(2);
    }
    eprintln!(
        "kernels: {} (cpu: {}), rayon threads: {}",
        compress_core::Isa::current().name(),
        compress_core::Isa::detected().name(),
        rayon::current_num_threads()
    );
    suites::arch::benches();
    suites::distill::benches();
    suites::dynamic::benches();
    suites::nn::benches();
    suites::nn_bert::benches();
    suites::nn_gemm::benches();
    suites::prune::benches();
    suites::quant::benches();
    suites::quant_bert::benches();
    suites::quant_cluster::benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
