//! Structured pruning that really shrinks layers: whole neurons of a `Linear` or filters of
//! a `Conv2d` are removed together with the matching batch-norm channels and the next
//! layer's inputs, so the model has fewer parameters and MACs, not just zeros. Removed
//! channels pass through depthwise convs (MobileNet's depthwise → pointwise pairs) and may
//! end in a grouped conv when every group keeps the same number of inputs.

mod algorithm;
mod coupled;
mod plan;
mod score;
mod shrink;

pub use algorithm::{LayerShrink, ShrinkConfig, ShrinkReport, prune_structured};
pub use coupled::{CoupledShrinkReport, GroupShrink, prune_coupled, shrink_group};
pub use plan::prunable_layers;
pub use score::{UnitCriterion, apoz, unit_norms};
pub use shrink::shrink_layer;
