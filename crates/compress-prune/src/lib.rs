//! Pruning for netcompress that makes models smaller and faster, not just masked.
//!
//! - [`Mask`]: a [`compress_core::Parametrization`] (`w * m` forward, `g * m` backward,
//!   pruned weights re-zeroed after every optimizer step; masks only grow; `bake` to finish).
//! - [`prune`] with [`PruneConfig`]: magnitude, random or Taylor scores, per-parameter,
//!   per-layer or global scope, parameters chosen by [`compress_core::ParamFilter`] globs.
//!   The threshold is found in O(n) ([`magnitude_threshold`]).
//! - Calibrated pruning of the linear layers of any model ([`prune_calibrated`]): Wanda
//!   ([`wanda_prune`]) and SparseGPT ([`sparsegpt_prune`]), unstructured or N:M, on inputs
//!   captured while the model runs ([`Capture::attach_paths`]).
//! - 2:4 storage ([`NmMatrix`]) and [`Sparse24Linear`], faster than the dense layer.
//!
//! ```
//! use compress_core::{Layer, Mode, Module};
//! use compress_nn::models::mlp;
//! use compress_prune::{PruneConfig, prune};
//! use ndarray::ArrayD;
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let mut net = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
//! let report = prune(&mut net, &PruneConfig::new(0.8)).unwrap();
//! assert!((report.sparsity() - 0.8).abs() < 1e-3);
//! let y = net.forward(&ArrayD::zeros(vec![1, 64]), Mode::Eval).unwrap();
//! assert_eq!(y.shape(), &[1, 10]);
//! net.bake(); // masks become plain zeros
//! ```
//!
//! **MSRV:** 1.89
#![doc(test(attr(deny(warnings))))]

mod calibrated;
mod error;
mod kernels;
mod lottery;
pub mod magnitude;
mod mask;
mod nm;
mod schedule;
mod select;
pub mod sparse;
mod sparsegpt;
pub mod structured;
mod wanda;

pub use calibrated::{
    CalibratedMethod, CalibratedPruneConfig, CalibrationRun, LayerPruneReport, Stage,
    prune_calibrated,
};
pub use compress_core::capture::{Capture, CaptureLayer, InputStats};
pub use error::{PruneError, Result};
pub use lottery::{LotteryConfig, LotteryReport, LotteryRound, Rewind, lottery_ticket};
pub use magnitude::{
    Importance, ParamReport, PruneConfig, PruneReport, Scope, StreamingThreshold, Threshold,
    magnitude_mask, magnitude_mask_array, magnitude_mask_into, magnitude_prune_array,
    magnitude_prune_inplace, magnitude_threshold, mask_report, prune,
};
pub use mask::{Mask, attach_mask, copy_masks, mask_of, reapply_masks, remove_masks};
pub use nm::{is_nm_sparse, nm_mask, nm_prune, nm_storage_bytes};
pub use schedule::{
    GradualPruning, PolynomialSchedule, iterative_sparsities, prune_iteratively, prune_remaining,
};
pub use sparse::{
    ColIndices, Csr, IndexWidth, NmMatrix, RelativeIndex, Sparse24Linear, SparseLinear,
    relative_index_encode, sparsify_24, sparsify_linears,
};
pub use sparsegpt::{SparseGptConfig, sparsegpt_prune};
pub use structured::{
    CoupledShrinkReport, GroupShrink, LayerShrink, ShrinkConfig, ShrinkReport, UnitCriterion, apoz,
    prunable_layers, prune_coupled, prune_structured, shrink_group, shrink_layer, unit_norms,
};
pub use wanda::{SparsityPattern, row_mask, wanda_prune, wanda_scores};
