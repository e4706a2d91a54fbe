//! Calibrated (data-aware) post-training quantization of linear layers: capturing layer
//! inputs on any model ([`Capture`]), GPTQ ([`gptq_quantize`]), AWQ scaling and clipping
//! ([`awq_search`], [`clip_search`]), SmoothQuant scaling,
//! and the round-to-nearest baseline they are measured against ([`quantize_rtn`]).

mod clip;
mod gptq;
mod grid;
mod intn;
mod mixed;
mod model;
mod scaling;

pub use clip::{ClipConfig, ClipSearch, clip_search, quantize_clipped};
pub use compress_core::capture::{Capture, CaptureLayer, CaptureSpec, InputStats, capture_inputs};
pub use gptq::{GptqConfig, gptq_quantize};
pub use grid::{Grid, QuantizedWeight, WeightQuant, quantize_rtn};
pub use intn::{InputScaled, IntNLinear};
pub use mixed::{LayerChoices, LayerOption, choose_bits, layer_sensitivity};
pub use model::{
    AwqConfig, Method, QuantizedLinear, ScaleGroup, kernel_name, quantize_linears, quantized_layer,
    swap_in,
};
pub use scaling::{AwqScales, ScaleSource, awq_search, fold_scales, smoothquant_scales};
