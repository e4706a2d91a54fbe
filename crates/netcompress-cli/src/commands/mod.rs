//! The file commands: `quantize`, `dequantize`, `prune`, `cluster`, `lowrank`, `diff`.
//!
//! Each works on a `.safetensors` file or a sharded checkpoint (`*.safetensors.index.json`),
//! streams one tensor at a time, and writes its output atomically; the work is done by the
//! `compress-checkpoint` library, these modules parse arguments and print. `cluster` (k-means
//! weight sharing: a codebook per tensor or output channel and packed, optionally
//! Huffman-coded indices) and `lowrank` (truncated SVD into two factors, kept only when
//! smaller) need nothing but their encoder's options ([`pipeline::EncoderArgs`]).

pub(crate) mod dequantize;
pub(crate) mod diff;
pub(crate) mod embed;
pub(crate) mod eval;
pub(crate) mod pipeline;
pub(crate) mod prune;
pub(crate) mod quantize;
pub(crate) mod quantize_dir;
pub(crate) mod sentences;
pub(crate) mod sparse_dir;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Input, output and overwrite options shared by the commands that write a checkpoint.
#[derive(Debug, Clone, Args)]
pub(crate) struct IoArgs {
    /// Input checkpoint: a .safetensors file or a sharded *.safetensors.index.json.
    pub(crate) input: PathBuf,
    /// Output: a .safetensors file, or an *.safetensors.index.json for sharded input (the
    /// shards are written beside it).
    pub(crate) output: PathBuf,
    /// Replace an existing output (the input is never overwritten).
    #[arg(long)]
    pub(crate) force: bool,
    /// Print the summary as one JSON object on the last line (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which tensors are transformed (others pass through untouched).
#[derive(Debug, Clone, Args)]
pub(crate) struct SelectArgs {
    /// Only transform tensors whose name matches this glob (repeatable; `*`, `?`, `[a-z]`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Never transform tensors whose name matches this glob (repeatable), e.g. '*embed*'.
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
}

impl SelectArgs {
    /// The compiled selector.
    ///
    /// # Errors
    ///
    /// A malformed glob.
    pub(crate) fn selector(&self) -> crate::error::Result<compress_checkpoint::Selector> {
        Ok(compress_checkpoint::Selector::new(
            &self.include,
            &self.exclude,
        )?)
    }
}

/// A progress bar over `total` bytes on stderr; hidden with `--json` or when stderr is not a
/// terminal.
pub(crate) fn byte_bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "[{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The command line, for the output's `__metadata__` (informational).
pub(crate) fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args.push("(library)".into());
    }
    format!("netcompress {}", args.join(" "))
}

/// Width of a table's name column: the longest name, at least 6 (`tensor`).
pub(crate) fn name_column<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max(6)
}

/// `1.50 MiB`-style sizes.
pub(crate) fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_format() {
        assert_eq!(super::fmt_bytes(12), "12 B");
        assert_eq!(super::fmt_bytes(1536), "1.50 KiB");
        assert_eq!(super::fmt_bytes(3 << 30), "3.00 GiB");
    }
}
