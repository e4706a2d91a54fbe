//! Criterion benchmarks for netcompress: one binary, one suite per crate.
//!
//! Run one group with `cargo bench -p compress-benches --bench main -- 'quant/'`.

mod suites;

criterion::criterion_main!(
    suites::arch::benches,
    suites::distill::benches,
    suites::dynamic::benches,
    suites::nn::benches,
    suites::prune::benches,
    suites::quant::benches,
    suites::quant_cluster::benches
);
