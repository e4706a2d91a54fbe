//! The core trait layer shared by every netcompress crate.
//!
//! - [`Float`]: the scalar bound (`f32`, `f64`); [`TensorExt`]: statistics on any array.
//! - [`Param`]: a named trainable tensor with a gradient and a stack of
//!   [`Parametrization`]s (masks, fake quantization, binarization, clustering).
//! - [`Module`]: anything with named parameters, walked by [`ParamVisitor`] /
//!   [`ParamVisitorMut`] with the path supplied by the traversal ([`ParamPath`]).
//! - [`Layer`]: a module with `forward`, `backward` and an exact per-sample [`Cost`].
//! - [`ModelStats`], [`Precision`]: parameters, non-zeros, sparsity and bytes.
//! - [`CoreError`], [`Result`]: structured errors naming the path and the values.
//!
//! ```
//! use compress_core::{Module, ModelStats, Param, ParamDict};
//! use ndarray::ArrayD;
//!
//! let mut model = ParamDict::<f32>::new();
//! model.insert("fc.weight", Param::new(ArrayD::from_elem(vec![3, 2], 0.5)));
//! assert_eq!(model.num_params(), 6);
//! assert_eq!(model.named_params()[0].path, "fc.weight");
//! assert_eq!(ModelStats::of(&model).sparsity(), 0.0);
//! ```
//!
//! # Crate feature flags
//!
//! - `proptest`: public proptest strategies ([`strategies`]) for tensors with chosen shapes,
//!   ranges and special values, and random small models.
//!
//! **MSRV:** 1.89
//!
//! Other crates: `compress-nn` (layers and training), `compress-prune`, `compress-quant`,
//! `compress-distill`, `compress-arch`, `compress-dynamic`, and the `netcompress` facade.
#![doc(test(attr(deny(warnings))))]

mod error;
mod layer;
mod module;
mod param;
mod parametrize;
mod path;
mod stats;
mod tensor;

#[cfg(feature = "proptest")]
pub mod strategies;

pub use error::{CoreError, Result};
pub use layer::{AsAny, Cost, Layer, Mode};
pub use module::{Module, ParamDict, ParamInfo, ParamVisitor, ParamVisitorMut};
pub use param::{Param, ParamKind};
pub use parametrize::{CloneParametrization, Parametrization};
pub use path::{ParamFilter, ParamPath, glob_match};
pub use stats::{ModelStats, Precision};
pub use tensor::{Float, TensorExt};
