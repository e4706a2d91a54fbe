//! Checkpoints for compressed models: streaming, shard-aware safetensors reading and atomic
//! writing, and the one versioned format for quantized, sparse, clustered and low-rank tensors
//! (`docs/format.md`) that both `netcompress` and [`QuantizedModel`] files use.
//!
//! ```
//! use compress_checkpoint::{QuantizeOptions, ShardWriter, commit, f32_bytes, quantize_file};
//! # fn main() -> Result<(), compress_checkpoint::CheckpointError> {
//! let dir = std::env::temp_dir().join(format!("ckpt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).map_err(|e| compress_checkpoint::CheckpointError::io(&dir, e))?;
//! let (input, output) = (dir.join("model.safetensors"), dir.join("model-int4.safetensors"));
//! // A small checkpoint: one 64 x 64 weight and a bias.
//! let w: Vec<f32> = (0..64 * 64).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
//! let mut writer = ShardWriter::with_reserve(&input, 0)?;
//! writer.add("fc.weight", "F32", &[64, 64], &f32_bytes(&w))?;
//! writer.add("fc.bias", "F32", &[64], &f32_bytes(&[0.0; 64]))?;
//! commit(vec![writer.assemble()?])?;
//!
//! // Quantize it to 4 bits with a scale per group of 32 weights.
//! let options = QuantizeOptions { group_size: Some(32), ..QuantizeOptions::new(4) };
//! let summary = quantize_file(&input, &output, &options)?;
//! assert_eq!(summary.totals.transformed, 1); // the bias (1-D) passes through
//! assert!(summary.totals.ratio < 0.3); // headers included
//! assert!(summary.totals.min_sqnr_db.is_some_and(|db| db > 20.0));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! # Pieces
//!
//! - [`SafetensorsFile`]: a validated header, then tensors read one at a time (or in chunks),
//!   so memory stays near the largest tensor; [`open_checkpoint`] opens a single file or every
//!   shard of a `*.safetensors.index.json` and checks the index against them.
//! - [`ShardWriter`] + [`commit`]: tensors streamed to a temporary file beside the output, the
//!   header written last, every output renamed into place only when all are complete.
//!   [`interrupt_writes`] (for a SIGINT/SIGTERM handler) removes the temporary files.
//! - [`format`](mod@format) and [`decode`]: the compressed-tensor descriptions and their decoder.
//! - [`encode`]: the per-tensor [`Encoder`]s and their options; [`encode_checkpoint`] drives
//!   one over a checkpoint; [`quantize_file`], [`prune_file`], [`cluster_file`],
//!   [`lowrank_file`] and [`dequantize_file`] are the one-call versions.
//! - [`QuantizedModelFile`]: `save` / `load` of a [`QuantizedModel`] in the same format.
//!
//! [`fuzzing`] holds the reader checks that the cargo-fuzz targets and the property tests share.
//!
//! Every error is a [`CheckpointError`] naming the file and the field (or the option, or the
//! tensor) at fault; no input, however corrupt, makes these functions panic.
//!
//! # Crate feature flags
//!
//! - `clap`: derives `clap::Args` / `clap::ValueEnum` on the option types (for CLIs).
//!
//! **MSRV:** 1.89.

#![doc(test(attr(deny(warnings))))]

pub mod decode;
mod dequantize;
pub mod encode;
mod error;
pub mod format;
pub mod fuzzing;
mod header;
pub mod metrics;
mod model;
pub mod model_dir;
mod pipeline;
mod plan;
pub mod reader;
pub mod select;
pub mod shards;
mod tempfiles;
mod writer;

use std::path::Path;

pub use compress_quant::QuantizedModel;
pub use dequantize::dequantize_checkpoint;
pub use encode::{
    ClusterEncoder, ClusterOptions, LowrankEncoder, LowrankOptions, PruneEncoder, PruneOptions,
    QuantizeEncoder, QuantizeOptions,
};
pub use error::{CheckpointError, Result};
pub use metrics::{ErrMetrics, ErrSums};
pub use model::{QuantizedModelFile, load_quantized_model, save_quantized_model};
pub use pipeline::{
    Encoder, NoProgress, Outcome, Progress, Streamed, Summary, TensorReport, Totals, WriteOptions,
    encode_checkpoint,
};
pub use reader::{Dtype, SafetensorsFile, TensorInfo};
pub use select::Selector;
pub use shards::open_checkpoint;
pub use tempfiles::interrupt_writes;
pub use writer::{Pending, ShardWriter, commit, f32_bytes};

/// Quantizes every selected float tensor (2-D and larger, all of them) of the checkpoint
/// `input` to packed integers, writing `output` (an existing output is not replaced).
///
/// # Errors
///
/// As [`encode_checkpoint`], and [`CheckpointError::InvalidOption`] for bad options.
pub fn quantize_file(input: &Path, output: &Path, options: &QuantizeOptions) -> Result<Summary> {
    let mut enc = QuantizeEncoder::new(options)?;
    run_default("quantize", input, output, &mut enc)
}

/// Prunes every 2-D-and-larger float tensor of `input` into `output`.
///
/// # Errors
///
/// As [`quantize_file`].
pub fn prune_file(input: &Path, output: &Path, options: &PruneOptions) -> Result<Summary> {
    let mut enc = PruneEncoder::new(options)?;
    run_default("prune", input, output, &mut enc)
}

/// Clusters every 2-D-and-larger float tensor of `input` into `output`.
///
/// # Errors
///
/// As [`quantize_file`].
pub fn cluster_file(input: &Path, output: &Path, options: &ClusterOptions) -> Result<Summary> {
    let mut enc = ClusterEncoder::new(options)?;
    run_default("cluster", input, output, &mut enc)
}

/// Factorizes every 2-D-and-larger float tensor of `input` into `output` (where the factors
/// are smaller).
///
/// # Errors
///
/// As [`quantize_file`].
pub fn lowrank_file(input: &Path, output: &Path, options: &LowrankOptions) -> Result<Summary> {
    let mut enc = LowrankEncoder::new(options)?;
    run_default("lowrank", input, output, &mut enc)
}

/// Restores the compressed checkpoint `input` to dense tensors in their original dtypes.
///
/// # Errors
///
/// As [`dequantize_checkpoint`].
pub fn dequantize_file(input: &Path, output: &Path) -> Result<Summary> {
    dequantize_checkpoint(
        input,
        output,
        &WriteOptions::default(),
        None,
        &mut NoProgress,
    )
}

fn run_default(
    command: &str,
    input: &Path,
    output: &Path,
    enc: &mut dyn Encoder,
) -> Result<Summary> {
    encode_checkpoint(
        command,
        input,
        output,
        &WriteOptions::default(),
        &Selector::default(),
        enc,
        &mut NoProgress,
    )
}
