//! tests

// issue 5: clustering, Huffman, binary, ternary
mod binary;
mod cluster;
mod huffman;
mod ternary;

// issue 4: quantization, calibration, QAT, integer kernels
mod quant_calibrate;
mod quant_layers;
mod quant_ptq;
mod quant_qat;
mod quant_qtensor;
