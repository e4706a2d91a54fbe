//! `netcompress quantize`: packed integer codes with scales (and zero points).

use clap::Args;
use compress_checkpoint::{QuantizeEncoder, QuantizeOptions};

use super::pipeline::run_and_print;
use super::{IoArgs, SelectArgs};
use crate::error::Result;

/// Arguments of `quantize`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: QuantizeOptions,
}

/// Runs `quantize`.
///
/// # Errors
///
/// Option, input, encoding and output errors.
pub(crate) fn run(a: &QuantizeArgs) -> Result<()> {
    let mut enc = QuantizeEncoder::new(&a.options)?;
    run_and_print("quantize", &a.io, &a.select, &mut enc)
}
