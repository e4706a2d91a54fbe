//! `netcompress lowrank`: truncated SVD of each weight (seen as `[shape[0], rest]`) into two
//! factors, kept only when they are smaller than the original.

use clap::Args;
use compress_checkpoint::{LowrankEncoder, LowrankOptions};

use super::pipeline::run_and_print;
use super::{IoArgs, SelectArgs};
use crate::error::Result;

/// Arguments of `lowrank`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LowrankArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: LowrankOptions,
}

/// Runs `lowrank`.
///
/// # Errors
///
/// Option, input, factorization and output errors.
pub(crate) fn run(a: &LowrankArgs) -> Result<()> {
    let mut enc = LowrankEncoder::new(&a.options)?;
    run_and_print("lowrank", &a.io, &a.select, &mut enc)
}
