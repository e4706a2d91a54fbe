//! Efficient building blocks as [`Layer`](compress_core::Layer)s with forward, backward and
//! exact per-sample [`Cost`](compress_core::Cost): depthwise separable convolution
//! (MobileNet), inverted residual (MobileNetV2), ShuffleNet unit, SqueezeNet Fire, an
//! Xception separable stack, the Ghost module, and a MobileNet v1 builder.
//!
//! Each block's closed-form cost is in [`crate::cost`]; tests check that the formulas equal
//! what `cost` counts.

mod chain;
mod fire;
mod ghost;
mod inverted;
mod mobilenet;
mod separable;
mod shuffle;
mod xception;

pub use chain::{Act, SequentialExt};
pub use fire::{Fire, FireConfig};
pub use ghost::{GhostConfig, GhostModule};
pub use inverted::{InvertedConfig, InvertedResidual};
pub use mobilenet::MobileNetConfig;
pub use separable::{DepthwiseSeparableConv, Pointwise, SeparableConfig};
pub use shuffle::{ChannelShuffle, ShuffleConfig, ShuffleUnit};
pub use xception::{XceptionBlock, XceptionConfig};
