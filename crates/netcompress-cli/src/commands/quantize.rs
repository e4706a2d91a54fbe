//! `netcompress quantize`: packed integer codes with scales (and zero points).

use std::path::PathBuf;

use clap::Args;
use compress_checkpoint::{QuantizeEncoder, QuantizeOptions};

use super::pipeline::EncoderArgs;
use super::quantize_dir::{DirJob, MethodArg, run_dir};
use crate::error::{CliError, Result};

/// Arguments of `quantize`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) file: EncoderArgs<QuantizeOptions>,
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
    let (io, options) = (&a.file.io, &a.file.options);
    if io.input.is_dir() {
        return run_dir(&DirJob {
            input: &io.input,
            output: &io.output,
            method: a.method.unwrap_or(MethodArg::Rtn),
            bits: options.bits,
            group_size: options.group_size,
            calib: a.calib.as_deref(),
            act_order: !a.no_act_order,
            mixed_bits: &a.mixed_bits,
            force: io.force,
            json: io.json,
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
    a.file.run("quantize", QuantizeEncoder::new)
}
