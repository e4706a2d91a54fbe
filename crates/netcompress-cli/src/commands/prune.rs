//! `netcompress prune`: magnitude (per tensor or global), N:M, or whole-row pruning, written as
//! sparse tensors (keep bitmask + kept values, or kept rows) so the file really shrinks.

use clap::Args;
use compress_checkpoint::{PruneEncoder, PruneOptions};

use super::pipeline::run_and_print;
use super::{IoArgs, SelectArgs};
use crate::error::Result;

/// Arguments of `prune`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: PruneOptions,
}

/// Runs `prune`.
///
/// # Errors
///
/// Option, input, pruning and output errors.
pub(crate) fn run(a: &PruneArgs) -> Result<()> {
    let mut enc = PruneEncoder::new(&a.options)?;
    run_and_print("prune", &a.io, &a.select, &mut enc)
}
