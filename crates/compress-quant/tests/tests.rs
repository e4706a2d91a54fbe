//! tests

// clustering, Huffman, binary, ternary
mod binary;
mod cluster;
mod huffman;
mod ternary;

// quantization, calibration, QAT, integer kernels, layer swaps
mod calibrated;
mod calibrated_clip;
mod calibrated_scaling;
mod quant_calibrate;
mod quant_layers;
mod quant_ptq;
mod quant_qat;
mod quant_qtensor;
mod quant_surgery;
