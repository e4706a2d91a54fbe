//! The per-tensor encoders: integer quantization, pruning, clustering and low-rank
//! factorization, each an [`Encoder`](crate::Encoder) driven by
//! [`encode_checkpoint`](crate::encode_checkpoint) over a whole checkpoint, with its options
//! type (the flags of the matching `netcompress` command).

mod cluster;
mod gram;
mod lowrank;
mod prune;
mod quantize;

pub use cluster::{ClusterEncoder, ClusterOptions};
pub use lowrank::{LowrankEncoder, LowrankOptions};
pub use prune::{MethodArg, PruneEncoder, PruneOptions};
pub(crate) use quantize::int_parts;
pub use quantize::{
    CalibrateArg, GranularityArg, QuantizeEncoder, QuantizeOptions, ScaleDtypeArg, SchemeArg,
    qtensor_outcome,
};

/// `--bits` must lie in `range`; `supported` names the accepted values in the error.
fn check_bits(
    bits: u32,
    range: std::ops::RangeInclusive<u32>,
    supported: &str,
) -> crate::error::Result<()> {
    if range.contains(&bits) {
        return Ok(());
    }
    Err(crate::error::CheckpointError::option(
        "--bits",
        format!("{bits} is not supported: use {supported}"),
    ))
}
