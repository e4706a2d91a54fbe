//! Benchmark suites, one per crate; group names are `<crate>/<technique>`.

pub(crate) mod arch;
pub(crate) mod distill;
pub(crate) mod dynamic;
pub(crate) mod nn;
pub(crate) mod nn_bert;
pub(crate) mod nn_gemm;
pub(crate) mod prune;
pub(crate) mod quant;
pub(crate) mod quant_bert;
pub(crate) mod quant_cluster;
