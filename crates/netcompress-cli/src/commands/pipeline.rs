//! What the file commands share around the library: running an encoder with a progress bar,
//! and printing the summary.

use clap::Args;
use compress_checkpoint::{Encoder, Summary, WriteOptions, encode_checkpoint};
use indicatif::ProgressBar;

use super::{IoArgs, SelectArgs, byte_bar, command_line, fmt_bytes};
use crate::error::{CliError, Result};

/// The arguments of a file command whose encoder needs only its own options `O` (`cluster`,
/// `lowrank`, and `quantize` on a file): input and output, tensor selection, and the
/// options.
#[derive(Debug, Clone, Args)]
pub(crate) struct EncoderArgs<O: Args> {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    #[command(flatten)]
    pub(crate) options: O,
}

impl<O: Args> EncoderArgs<O> {
    /// Runs command `name` with the encoder `make` builds from the options and prints the
    /// summary.
    ///
    /// # Errors
    ///
    /// Option, input, encoding and output errors.
    pub(crate) fn run<E: Encoder, Err>(
        &self,
        name: &str,
        make: impl FnOnce(&O) -> std::result::Result<E, Err>,
    ) -> Result<()>
    where
        CliError: From<Err>,
    {
        let mut enc = make(&self.options)?;
        run_and_print(name, &self.io, &self.select, &mut enc)
    }
}

/// A progress bar on stderr (hidden with `--json` or when stderr is not a terminal); warnings
/// are printed on stderr.
#[derive(Debug)]
pub(crate) struct Bar {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar that appears once the total is known.
    pub(crate) fn new(json: bool) -> Self {
        Self { json, bar: None }
    }
}

impl compress_checkpoint::Progress for Bar {
    fn start(&mut self, total: u64) {
        self.bar = Some(byte_bar(total, self.json));
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn warn(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }

    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The library's write options for these flags (the command line is recorded in the output).
pub(crate) fn write_options(io: &IoArgs) -> WriteOptions {
    WriteOptions {
        force: io.force,
        provenance: Some(command_line()),
    }
}

/// Runs `enc` over `io.input` into `io.output` and prints the summary.
///
/// # Errors
///
/// Library errors (options, input, encoding, output).
pub(crate) fn run_and_print(
    command: &str,
    io: &IoArgs,
    select: &SelectArgs,
    enc: &mut dyn Encoder,
) -> Result<()> {
    let summary = encode_checkpoint(
        command,
        &io.input,
        &io.output,
        &write_options(io),
        &select.selector()?,
        enc,
        &mut Bar::new(io.json),
    )?;
    print_summary(&summary, io.json)
}

/// Prints the summary table, and the JSON object as the last line with `json`.
///
/// # Errors
///
/// A JSON error if serialization fails.
pub(crate) fn print_summary(s: &Summary, json: bool) -> Result<()> {
    let w = super::name_column(s.tensors.iter().map(|r| r.name.as_str()));
    println!(
        "{:<w$} {:<5} {:<18} {:<28} {:>10} {:>10} {:>8}",
        "tensor", "dtype", "shape", "action", "in", "out", "SQNR dB"
    );
    for r in &s.tensors {
        let sqnr = match r.error {
            Some(e) if e.identical => "exact".to_string(),
            Some(e) => e.sqnr_db.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            None => String::new(),
        };
        println!(
            "{:<w$} {:<5} {:<18} {:<28} {:>10} {:>10} {:>8}",
            r.name,
            r.dtype,
            format!("{:?}", r.shape),
            r.action,
            fmt_bytes(r.bytes_in),
            fmt_bytes(r.bytes_out),
            sqnr
        );
    }
    let t = &s.totals;
    let db = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} dB"));
    if s.command == "dequantize" {
        println!(
            "dequantize: {} tensors ({} restored, {} passed through); {} -> {}",
            t.tensors,
            t.transformed,
            t.passed,
            fmt_bytes(t.file_bytes_in),
            fmt_bytes(t.file_bytes_out),
        );
    } else {
        let sparsity = t
            .sparsity
            .map_or_else(String::new, |v| format!(", sparsity {:.2}%", 100.0 * v));
        println!(
            "{}: {} tensors ({} transformed, {} passed through); {} -> {} ({:.2}% of the input, {:.2}% of its f32 size); mean SQNR {}, min {}{sparsity}",
            s.command,
            t.tensors,
            t.transformed,
            t.passed,
            fmt_bytes(t.file_bytes_in),
            fmt_bytes(t.file_bytes_out),
            100.0 * t.ratio,
            100.0 * t.ratio_f32,
            db(t.mean_sqnr_db),
            db(t.min_sqnr_db),
        );
    }
    for o in &s.outputs {
        println!("wrote {o}");
    }
    if json {
        println!("{}", serde_json::to_string(s)?);
    }
    Ok(())
}
