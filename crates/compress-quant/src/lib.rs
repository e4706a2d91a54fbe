//! Quantization for netcompress: quantized tensors and schemes, calibration, quantization-aware
//! training, integer kernels, k-means weight clustering, Huffman coding, binary and ternary
//! weights.
//!
//! **MSRV:** 1.89
#![doc(test(attr(deny(warnings))))]

mod arrays;
mod error;

pub use arrays::{Int8Rows, matmul_i8, matmul_i8_t};
pub use error::QuantError;

// --- quantization: QTensor, calibration, QAT, int8 kernels ---
pub mod calibrate;
pub mod calibrated;
mod dynamic;
mod fake_quant;
mod int_linear;
pub mod kernels;
pub mod pack;
mod ptq;
mod qconv;
mod qlinear;
mod qtensor;
mod scheme;
mod swap;

pub use calibrate::{Calibration, Observer, calibrate_range, quantize_calibrated};
pub use dynamic::{
    DynamicQLinear, InputShare, TokenQuant, W4A8Linear, int4_to_w4a8, quantize_dynamic,
    share_attention_inputs,
};
pub use fake_quant::{ActRange, FakeQuant, FakeQuantAct, attach_fake_quant};
pub use ptq::{
    ParamReport, PtqConfig, PtqReport, QuantizedModel, QuantizedParam, fake_quantize_model,
    quantize_model,
};
pub use qconv::QConv2d;
pub use qlinear::{ActQuant, Int4Linear, QLinear};
pub use qtensor::{QTensor, qparams_from_range, sqnr_db};
pub use scheme::{Granularity, IntScheme, QuantScheme, ScaleDtype};
pub use swap::quantize_layers;

// --- clustering, Huffman, binary, ternary ---
pub mod binary;
pub mod cluster;
pub mod huffman;
pub mod ternary;

pub use cluster::{
    ClusterConfig, ClusterGradient, ClusterGranularity, ClusterInit, ClusterLayerReport,
    ClusterParametrization, ClusteredTensor, KMeans1d, KMeansConfig, PackedIndices, cluster_tensor,
    cluster_weights, export_clustered, kmeans_1d,
};
