//! Neural-network compression in Rust: pruning, knowledge distillation, quantization (with
//! weight clustering and binarization), efficient architectures (with low-rank factorization)
//! and dynamic computation, over one shared trait layer ([`core`]).
//!
//! Each technique is its own crate, mounted here as a module behind a feature, so users pull
//! in only what they need:
//!
//! ```toml
//! [dependencies]
//! netcompress = { version = "0.1", features = ["prune", "quant"] }
//! ```
//!
//! ```
//! use netcompress::prelude::*;
//! use ndarray::ArrayD;
//!
//! // Any struct with named parameters works with the statistics and the techniques.
//! struct Dense { weight: Param<f32> }
//! impl Module<f32> for Dense {
//!     fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
//!         path.scoped("weight", |p| v.visit(p, &self.weight));
//!     }
//!     fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>)
//!         -> netcompress::core::Result<()> {
//!         path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))
//!     }
//! }
//! let d = Dense { weight: Param::new(ArrayD::from_elem(vec![2, 2], 1.0)) };
//! assert_eq!(ModelStats::of(&d).params, 4);
//! ```
//!
//! # Crate feature flags
//!
//! - `nn`: reference layers, losses, optimizers, training and data (module `nn`).
//! - `prune`: pruning (module `prune`; implies `nn`).
//! - `quant`: quantization, clustering, binary and ternary weights (module `quant`; implies `nn`).
//! - `distill`: knowledge distillation (module `distill`; implies `nn`).
//! - `arch`: efficient blocks and low-rank factorization (module `arch`; implies `nn`).
//! - `dynamic`: early exits, budgets, slimmable widths (module `dynamic`; implies `nn`).
//! - `transformer`: BERT encoders from Hugging Face model directories, tokenization,
//!   sentence embeddings and fidelity metrics (module `transformer`; implies `nn`).
//! - `checkpoint`: streaming, sharded, atomic safetensors checkpoints, the compressed-tensor
//!   format and `QuantizedModel` files (module `checkpoint`; implies `quant`).
//! - `full`: all of the above.
//! - `proptest`: public proptest strategies for tensors and small models
//!   (`netcompress::core::strategies`), for property tests of a user's own code.
//!
//! With no features only [`core`] is available.
//!
//! # Versions of ndarray and rand
//!
//! The arrays in every signature are [`ndarray`] 0.17 arrays, and constructors take a
//! [`rand`] 0.9 generator. Both are re-exported ([`netcompress::ndarray`](crate::ndarray),
//! [`netcompress::rand`](crate::rand)): use these paths when your crate depends on another
//! version of either, otherwise the compiler reports a trait bound that is "not satisfied"
//! without mentioning the two versions.
//!
//! # One error type
//!
//! [`Error`] wraps every crate's error (`From` for each), so a function can `?` calls into
//! several techniques.
//!
//! **MSRV:** 1.89
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod error;

pub use error::{Error, Result};

/// `#[derive(Module)]`: writes `visit` and `visit_mut` for a struct of layers and
/// parameters. Field attributes: `#[module(skip)]` (not visited), `#[module(rename =
/// "name")]` (another path segment), `#[module(flatten)]` (no path segment),
/// `#[module(bias)]` (a `Param` made with `Param::new` that is a bias, so default filters
/// skip it). The scalar type is the type parameter `F`, an `f32`/`f64` in a field's type, or
/// `#[module(float = f32)]` on the struct.
///
/// ```
/// use netcompress::prelude::*;
/// use netcompress::ndarray::ArrayD;
///
/// #[derive(Module)]
/// struct Dense<F: Float> {
///     weight: Param<F>,
///     #[module(bias)]
///     bias: Param<F>,
/// }
///
/// #[derive(Module)]
/// struct Block<F: Float> {
///     fc1: Dense<F>,
///     #[module(rename = "out")]
///     fc2: Dense<F>,
///     #[module(bias)]
///     shift: Param<F>,
///     #[module(skip)]
///     cache: Option<ArrayD<F>>,
/// }
///
/// let dense = |o: usize, i: usize| Dense::<f32> {
///     weight: Param::new(ArrayD::zeros(vec![o, i])),
///     bias: Param::new(ArrayD::zeros(vec![o])),
/// };
/// let block = Block {
///     fc1: dense(16, 8),
///     fc2: dense(8, 16),
///     shift: Param::new(ArrayD::zeros(vec![8])),
///     cache: None,
/// };
/// assert_eq!(block.num_params(), 8 * 16 + 16 + 16 * 8 + 8 + 8);
/// let paths: Vec<String> = block.named_params().into_iter().map(|p| p.path).collect();
/// assert_eq!(paths, ["fc1.weight", "fc1.bias", "out.weight", "out.bias", "shift"]);
/// assert!(block.cache.is_none());
/// ```
pub use compress_derive::NetcompressModule as Module;

#[doc(inline)]
pub use compress_core as core;

/// The `ndarray` version every signature here uses (0.17).
pub use ndarray;

/// The `rand` version every constructor here takes (0.9).
pub use rand;

/// Proptest strategies for tensors and small models (feature `proptest`).
#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub use compress_core::strategies;

/// The `proptest` crate the [`strategies`] are built on (feature `proptest`), so property
/// tests need no direct dependency on it.
#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub use proptest;

/// Reference layers and training (feature `nn`).
#[cfg(feature = "nn")]
#[cfg_attr(docsrs, doc(cfg(feature = "nn")))]
pub use compress_nn as nn;

/// Pruning (feature `prune`).
#[cfg(feature = "prune")]
#[cfg_attr(docsrs, doc(cfg(feature = "prune")))]
pub use compress_prune as prune;

/// Quantization, clustering, binary and ternary weights (feature `quant`).
#[cfg(feature = "quant")]
#[cfg_attr(docsrs, doc(cfg(feature = "quant")))]
pub use compress_quant as quant;

/// Knowledge distillation (feature `distill`).
#[cfg(feature = "distill")]
#[cfg_attr(docsrs, doc(cfg(feature = "distill")))]
pub use compress_distill as distill;

/// Efficient architectures and low-rank factorization (feature `arch`).
#[cfg(feature = "arch")]
#[cfg_attr(docsrs, doc(cfg(feature = "arch")))]
pub use compress_arch as arch;

/// Dynamic computation (feature `dynamic`).
#[cfg(feature = "dynamic")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamic")))]
pub use compress_dynamic as dynamic;

/// Checkpoint files: streaming safetensors, the compressed-tensor format, `QuantizedModel`
/// save/load (feature `checkpoint`).
#[cfg(feature = "checkpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "checkpoint")))]
pub use compress_checkpoint as checkpoint;
/// BERT encoders, tokenization and sentence embeddings (feature `transformer`).
#[cfg(feature = "transformer")]
#[cfg_attr(docsrs, doc(cfg(feature = "transformer")))]
pub use compress_transformer as transformer;

/// The traits and types most users need.
pub mod prelude {
    pub use crate::Module;
    pub use compress_core::{
        Cost, Float, Layer, Mode, ModelStats, Module, Param, ParamFilter, ParamKind, ParamPath,
        ParamVisitor, ParamVisitorMut, Parametrization, Precision, TensorExt,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The guides in `docs/guide/`, written against this facade (`netcompress::quant::...`),
/// compiled and run as doctests (`cargo test -p netcompress --features full --doc`).
#[cfg(all(doctest, feature = "full"))]
pub mod guides {
    #[doc = include_str!("../../../docs/guide/getting-started.md")]
    pub struct GettingStarted;
    #[doc = include_str!("../../../docs/guide/pruning.md")]
    pub struct Pruning;
    #[doc = include_str!("../../../docs/guide/quantization.md")]
    pub struct Quantization;
    #[doc = include_str!("../../../docs/guide/clustering.md")]
    pub struct Clustering;
    #[doc = include_str!("../../../docs/guide/binary.md")]
    pub struct Binary;
    #[doc = include_str!("../../../docs/guide/distillation.md")]
    pub struct Distillation;
    #[doc = include_str!("../../../docs/guide/architecture.md")]
    pub struct Architecture;
    #[doc = include_str!("../../../docs/guide/lowrank.md")]
    pub struct LowRank;
    #[doc = include_str!("../../../docs/guide/dynamic.md")]
    pub struct Dynamic;
    #[doc = include_str!("../../../docs/guide/transformers.md")]
    pub struct Transformers;
}
