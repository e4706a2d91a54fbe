//! Shared test fixtures for the netcompress crates (not published).
//!
//! - Seeded arrays: [`seeded_tensor`], [`seeded_matrix`], [`uniform_tensor`], and
//!   [`max_abs_diff`] to compare outputs, [`randomize_params`] for non-trivial parameters.
//! - Gradient checks by central finite differences (`f64`): [`GradCheck`] for layers (input
//!   and every parameter, via the `Module` visitor) and module objectives, [`fd_grad`] and
//!   [`assert_grad_close`] for plain functions of arrays (losses).
//! - [`ConvSpec`]: the 2-D convolution by its definition (and which input pixel a kernel
//!   tap reads), the reference of the float and integer convolution tests.
//! - Test parametrizations: [`FixedMask`] (a fixed 0/1 mask) and [`Affine`] (`k w + b`).
//! - [`strategies`]: the core proptest strategies (tensors, small models).
//!
//! compress-core's own tests cannot use this crate (it depends on compress-core).

mod arrays;
mod conv;
mod gradcheck;
mod parametrize;

pub use compress_core::strategies;

pub use arrays::{max_abs_diff, randomize_params, seeded_matrix, seeded_tensor, uniform_tensor};
pub use conv::ConvSpec;
pub use gradcheck::{GradCheck, GradReport, GradSample, Wrt, assert_grad_close, fd_grad};
pub use parametrize::{Affine, FixedMask};
