//! `netcompress cluster`: k-means weight sharing (Deep Compression): a codebook of `2^bits`
//! centroids per tensor (or per output channel) and packed indices, optionally Huffman-coded.

use clap::Args;
use compress_checkpoint::{ClusterEncoder, ClusterOptions};

use super::pipeline::run_and_print;
use super::{IoArgs, SelectArgs};
use crate::error::Result;

/// Arguments of `cluster`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: ClusterOptions,
}

/// Runs `cluster`.
///
/// # Errors
///
/// Option, input, clustering and output errors.
pub(crate) fn run(a: &ClusterArgs) -> Result<()> {
    let mut enc = ClusterEncoder::new(&a.options)?;
    run_and_print("cluster", &a.io, &a.select, &mut enc)
}
