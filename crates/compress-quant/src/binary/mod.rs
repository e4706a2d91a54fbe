//! Binary weights: BinaryConnect (deterministic and stochastic) with XNOR-Net scaling as a
//! [`Parametrization`](compress_core::Parametrization), 1-bit packed matrices, and inference
//! kernels (binary weights x real activations; XNOR-popcount GEMM with AVX2 and popcnt paths
//! beside a portable one).

mod connect;
mod gemm;
mod kernels;
mod matrix;

pub use connect::{Binarization, BinaryConnect, BinaryScale};
pub use gemm::{binary_linear, xnor_gemm, xnor_gemm_into, xnor_linear};
pub use kernels::XnorKernel;
pub use matrix::BinaryMatrix;
