//! `netcompress quantize`: packed integer codes with scales (and zero points).

use std::path::PathBuf;

use clap::Args;
use compress_checkpoint::{QuantizeEncoder, QuantizeOptions};

use super::pipeline::run_and_print;
use super::quantize_dir::{DirJob, MethodArg, run_dir};
use super::{IoArgs, SelectArgs};
use crate::error::{CliError, Result};

/// Arguments of `quantize`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: QuantizeOptions,
    /// Method for a model directory input (GPTQ, AWQ and SmoothQuant calibrate on
    /// `--calib`); a single-file input is always quantized round-to-nearest.
    #[arg(long, value_enum)]
    pub(crate) method: Option<MethodArg>,
    /// Calibration sentences for a model directory, one per non-empty line (default: the
    /// calibration half of the project's sentence file, lines 1-150; `eval` measures on the
    /// other half by default).
    #[arg(long, value_name = "SENTENCES")]
    pub(crate) calib: Option<PathBuf>,
    /// GPTQ: quantize columns in their original order instead of by decreasing Hessian
    /// diagonal (act-order).
    #[arg(long)]
    pub(crate) no_act_order: bool,
    /// Mixed precision for a model directory: the widths (besides `--bits`) each layer may
    /// take, chosen by measured sensitivity under the byte budget of uniform `--bits`
    /// (methods rtn and gptq), e.g. `--mixed-bits 3,8`.
    #[arg(long, value_delimiter = ',', value_name = "BITS")]
    pub(crate) mixed_bits: Vec<u32>,
}

/// Runs `quantize`.
///
/// # Errors
///
/// Option, input, encoding and output errors.
pub(crate) fn run(a: &QuantizeArgs) -> Result<()> {
    if a.io.input.is_dir() {
        return run_dir(&DirJob {
            input: &a.io.input,
            output: &a.io.output,
            method: a.method.unwrap_or(MethodArg::Rtn),
            bits: a.options.bits,
            group_size: a.options.group_size,
            calib: a.calib.as_deref(),
            act_order: !a.no_act_order,
            mixed_bits: &a.mixed_bits,
            force: a.io.force,
            json: a.io.json,
        });
    }
    if a.method.is_some_and(|m| m != MethodArg::Rtn)
        || a.calib.is_some()
        || !a.mixed_bits.is_empty()
    {
        return Err(CliError::Usage(
            "--method gptq|awq|smoothquant, --calib and --mixed-bits need a model directory as input".into(),
        ));
    }
    let mut enc = QuantizeEncoder::new(&a.options)?;
    run_and_print("quantize", &a.io, &a.select, &mut enc)
}
