//! Unstructured (element-wise) pruning: magnitude, random and Taylor scores; per-parameter,
//! per-layer or global scope; monotone masks; an O(n) threshold on plain slices.

mod algorithm;
mod array;
mod config;
mod stream;

pub(crate) use algorithm::apply_masks;
pub use algorithm::{ParamReport, PruneReport, mask_report, prune};
pub use array::{
    Threshold, magnitude_mask, magnitude_mask_array, magnitude_mask_into, magnitude_prune_array,
    magnitude_prune_inplace, magnitude_threshold,
};
pub use config::{Importance, PruneConfig, Scope};
pub use stream::StreamingThreshold;
