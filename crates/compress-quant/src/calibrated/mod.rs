//! Calibrated (data-aware) post-training quantization of linear layers: capturing layer
//! inputs on any model ([`Capture`]), GPTQ ([`gptq_quantize`]), AWQ and SmoothQuant scaling,
//! and the round-to-nearest baseline they are measured against ([`quantize_rtn`]).

mod capture;
mod gptq;
mod grid;

pub use capture::{Capture, CaptureLayer, CaptureSpec, InputStats, capture_inputs};
pub use gptq::{GptqConfig, gptq_quantize};
pub use grid::{Grid, QuantizedWeight, WeightQuant, quantize_rtn};
