//! The core trait layer shared by every netcompress crate.
//!
//! - [`Float`]: the scalar bound (`f32`, `f64`); [`TensorExt`]: statistics on any array.
//! - [`Param`]: a named trainable tensor with a gradient and a stack of
//!   [`Parametrization`]s (masks, fake quantization, binarization, clustering).
//! - [`Module`]: anything with named parameters, walked by [`ParamVisitor`] /
//!   [`ParamVisitorMut`] with the path supplied by the traversal ([`ParamPath`]).
//! - [`Layer`]: a module with `forward`, `backward` and an exact per-sample [`Cost`].
//! - [`capture`]: input statistics of chosen layers of any model on calibration data (the
//!   Hessian and per-channel statistics the calibrated techniques read).
//! - [`surgery`]: reaching and replacing layers by path in any model, and the coupling
//!   groups a model declares for structured shrinking.
//! - [`softmax`]: softmax of logits over a temperature and the KL divergence between two
//!   softened distributions; [`sqnr_db`]: signal-to-quantization-noise ratio.
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
//! - `proptest`: public proptest strategies (the `strategies` module) for tensors with chosen shapes,
//!   ranges and special values, and random small models.
//!
//! **MSRV:** 1.89
//!
//! Other crates: `compress-nn` (layers and training), `compress-prune`, `compress-quant`,
//! `compress-distill`, `compress-arch`, `compress-dynamic`, and the `netcompress` facade.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod capture;
pub mod concrete;
mod error;
mod isa;
mod layer;
mod module;
mod param;
mod param_view;
mod parametrize;
mod path;
pub mod softmax;
mod stats;
pub mod surgery;
mod tensor;

#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod strategies;

/// `#[derive(Module)]` with paths into this crate (`netcompress` users take
/// `netcompress::Module`, which is the same derive with paths into the facade).
pub mod derive {
    /// `#[derive(Module)]`: writes [`Module::visit`](crate::Module::visit) and
    /// [`Module::visit_mut`](crate::Module::visit_mut) for a struct of layers and parameters
    /// (field attributes `skip`, `rename`, `flatten`, `bias`).
    ///
    /// ```
    /// use compress_core::{Float, Module, Param, ParamKind};
    /// use compress_core::derive::Module;
    /// use ndarray::ArrayD;
    ///
    /// #[derive(Module)]
    /// struct Dense<F: Float> {
    ///     weight: Param<F>,
    ///     #[module(bias)]
    ///     shift: Option<Param<F>>,
    ///     #[module(skip)]
    ///     cache: Option<ArrayD<F>>,
    /// }
    ///
    /// #[derive(Module)]
    /// struct Net {
    ///     layers: Vec<Dense<f32>>,
    ///     #[module(rename = "out")]
    ///     head: Dense<f32>,
    /// }
    ///
    /// let dense = |i, o| Dense {
    ///     weight: Param::new(ArrayD::zeros(vec![o, i])),
    ///     shift: Some(Param::new(ArrayD::zeros(vec![o]))),
    ///     cache: None,
    /// };
    /// let mut net = Net { layers: vec![dense(4, 3)], head: dense(3, 2) };
    /// let paths: Vec<String> = net.named_params().into_iter().map(|p| p.path).collect();
    /// assert_eq!(paths, ["layers.0.weight", "layers.0.shift", "out.weight", "out.shift"]);
    /// net.zero_grad(); // a mutable walk marks the `bias` fields
    /// assert_eq!(net.named_params()[1].kind, ParamKind::Bias);
    /// assert!(net.head.cache.is_none());
    /// ```
    pub use compress_derive::Module;
}

pub use error::{CoreError, Result};

/// Support for `#[derive(Module)]`; not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{Float, Param, ParamKind};

    /// Sets the kind of a field marked `#[module(bias)]`.
    pub trait MarkKind<F: Float> {
        /// Sets the kind of every parameter in `self`.
        fn mark_kind(&mut self, kind: ParamKind);
    }

    impl<F: Float> MarkKind<F> for Param<F> {
        fn mark_kind(&mut self, kind: ParamKind) {
            self.set_kind(kind);
        }
    }

    impl<F: Float, T: MarkKind<F>> MarkKind<F> for Option<T> {
        fn mark_kind(&mut self, kind: ParamKind) {
            if let Some(p) = self {
                p.mark_kind(kind);
            }
        }
    }

    impl<F: Float, T: MarkKind<F>> MarkKind<F> for Vec<T> {
        fn mark_kind(&mut self, kind: ParamKind) {
            for p in self {
                p.mark_kind(kind);
            }
        }
    }
}
pub use isa::{CpuFeature, ISA_ENV, Isa};
pub use layer::{AsAny, Cost, Layer, Mode};
pub use module::{Module, ParamDict, ParamInfo, ParamVisitor, ParamVisitorMut};
pub use param::{Param, ParamKind};
pub use parametrize::{CloneParametrization, Parametrization};
pub use path::{ParamFilter, ParamPath, glob_is_valid, glob_match};
pub use stats::{ModelStats, Precision};
pub use surgery::{Coupled, CouplingGroup, CouplingRole, LayerSlot, Walk};
pub use tensor::{Float, TensorExt, sqnr_db, sqnr_db_of_sums};
