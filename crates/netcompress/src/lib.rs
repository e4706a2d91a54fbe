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
//! - `nn`: reference layers, losses, optimizers, training and data ([`nn`]).
//! - `prune`: pruning ([`prune`]; implies `nn`).
//! - `quant`: quantization, clustering, binary and ternary weights ([`quant`]; implies `nn`).
//! - `distill`: knowledge distillation ([`distill`]; implies `nn`).
//! - `arch`: efficient blocks and low-rank factorization ([`arch`]; implies `nn`).
//! - `dynamic`: early exits, budgets, slimmable widths ([`dynamic`]; implies `nn`).
//! - `full`: all of the above.
//!
//! With no features only [`core`] is available.
//!
//! **MSRV:** 1.89
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[doc(inline)]
pub use compress_core as core;

/// Reference layers and training (feature `nn`).
#[cfg(feature = "nn")]
pub use compress_nn as nn;

/// Pruning (feature `prune`).
#[cfg(feature = "prune")]
pub use compress_prune as prune;

/// Quantization, clustering, binary and ternary weights (feature `quant`).
#[cfg(feature = "quant")]
pub use compress_quant as quant;

/// Knowledge distillation (feature `distill`).
#[cfg(feature = "distill")]
pub use compress_distill as distill;

/// Efficient architectures and low-rank factorization (feature `arch`).
#[cfg(feature = "arch")]
pub use compress_arch as arch;

/// Dynamic computation (feature `dynamic`).
#[cfg(feature = "dynamic")]
pub use compress_dynamic as dynamic;

/// The traits and types most users need.
pub mod prelude {
    pub use compress_core::{
        Cost, Float, Layer, Mode, ModelStats, Module, Param, ParamFilter, ParamPath, ParamVisitor,
        ParamVisitorMut, Parametrization, Precision, TensorExt,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
