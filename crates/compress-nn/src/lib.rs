//! Reference layers, losses, optimizers, training and data sets for netcompress.
//!
//! Every layer implements [`compress_core::Layer`] and reads its parameters through
//! [`compress_core::Param::effective`], so pruning masks, fake quantization, binarization
//! and clustering (all [`compress_core::Parametrization`]s) apply without the layers knowing.
//!
//! - [`layers`]: [`Linear`], [`Conv2d`] (stride, padding, dilation, groups; im2col + GEMM,
//!   a direct depthwise kernel, a pointwise fast path), activations, [`MaxPool2d`],
//!   [`AvgPool2d`], [`GlobalAvgPool`], [`BatchNorm1d`], [`BatchNorm2d`], [`Dropout`],
//!   [`RandomShift`] (input jitter in training),
//!   [`Flatten`], [`Sequential`]; transformer layers ([`Embedding`], [`LayerNorm`], [`Gelu`],
//!   [`MultiHeadAttention`], [`TransformerEncoderLayer`], [`TransformerEncoder`],
//!   [`Pooling`]; see [`layers::transformer`] for how padding masks flow).
//! - [`loss`], [`optim`] ([`Sgd`], [`Adam`], [`LrSchedule`]), [`train`] ([`Trainer`]).
//! - [`data`]: the embedded UCI digits and an MNIST IDX loader; [`io`]: safetensors
//!   save/load of any [`compress_core::Module`]; [`models`]: reference builders.
//!
//! ```
//! use compress_core::{Layer, Mode};
//! use compress_nn::{Linear, ReLU, Sequential};
//! use ndarray::ArrayD;
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut net = Sequential::<f32>::new()
//!     .with(Linear::new(4, 8, true, &mut rng))
//!     .with(ReLU::new())
//!     .with(Linear::new(8, 3, true, &mut rng));
//! let y = net.forward(&ArrayD::zeros(vec![2, 4]), Mode::Eval).unwrap();
//! assert_eq!(y.shape(), &[2, 3]);
//! assert_eq!(net.cost(&[4]).unwrap().macs, 4 * 8 + 8 * 3);
//! ```
//!
//! **MSRV:** 1.89
#![doc(test(attr(deny(warnings))))]

pub mod data;
mod error;
pub mod gemm;
pub mod init;
pub mod io;
mod kernels;
pub mod layers;
pub mod loss;
pub mod models;
pub mod optim;
pub mod train;

pub use data::Dataset;
pub use error::{NnError, Result};
pub use layers::{
    AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, ConvGeometry, Dropout, Embedding,
    Flatten, Gelu, GeluKind, GlobalAvgPool, HardSwish, LayerNorm, Linear, MaxPool2d,
    MultiHeadAttention, PaddingMask, Pooling, PoolingKind, RandomShift, ReLU, ReLU6, Sequential,
    Sigmoid, Tanh, TransformerConfig, TransformerEncoder, TransformerEncoderLayer, im2col,
    im2col_nhwc,
};
pub use optim::{Adam, LrSchedule, Optimizer, Sgd};
pub use train::{TrainConfig, TrainReport, Trainer};
