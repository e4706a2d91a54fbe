//! `netcompress dequantize`: restores every compressed tensor to a dense float tensor with its
//! original name and shape (and its original dtype unless `--dtype` says otherwise).

use clap::{Args, ValueEnum};
use compress_checkpoint::{Dtype, dequantize_checkpoint};

use super::IoArgs;
use super::pipeline::{Bar, print_summary, write_options};
use crate::error::Result;

/// Output float types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DtypeArg {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl DtypeArg {
    fn dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::Bf16 => Dtype::BF16,
        }
    }
}

/// Arguments of `dequantize`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DequantizeArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    /// Write every float tensor in this dtype [default: each tensor's original dtype].
    #[arg(long, value_enum)]
    pub(crate) dtype: Option<DtypeArg>,
}

/// Runs `dequantize`.
///
/// # Errors
///
/// Option, input, decoding and output errors; nothing is left behind on error.
pub(crate) fn run(a: &DequantizeArgs) -> Result<()> {
    let s = dequantize_checkpoint(
        &a.io.input,
        &a.io.output,
        &write_options(&a.io),
        a.dtype.map(DtypeArg::dtype),
        &mut Bar::new(a.io.json),
    )?;
    print_summary(&s, a.io.json)
}
