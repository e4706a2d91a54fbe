//! The streaming driver shared by `quantize`, `prune`, `cluster` and `lowrank`.
//!
//! For each input shard, tensors are read one at a time in file order. A selected tensor is
//! converted to f32 and handed to the command's [`Encoder`]; its parts are decoded again with
//! the same code `dequantize` uses, to measure the error that will really be restored, and
//! appended to the output. Other tensors are copied byte for byte in chunks. Nothing is renamed
//! into place until every shard (and the new index) is complete.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::decode::{Part, decode_blocks};
use crate::error::{CheckpointError, Result};
use crate::format::{
    COMMAND_KEY, Encoding, FORMAT_KEY, FORMAT_VERSION, TENSOR_KEY_PREFIX, TensorMeta,
};
use crate::metrics::{ErrMetrics, ErrSums};
use crate::plan::Plan;
use crate::reader::{SafetensorsFile, TensorInfo, bytes_to_f32};
use crate::select::Selector;
use crate::shards::open_checkpoint;
use crate::writer::ShardWriter;

/// Progress of a long operation, reported in bytes of tensor data (the CLI draws a bar).
pub trait Progress {
    /// The operation will process `total` bytes.
    fn start(&mut self, _total: u64) {}
    /// `bytes` more were processed.
    fn advance(&mut self, _bytes: u64) {}
    /// Something the user should know (a pattern that matches nothing, ...).
    fn warn(&mut self, _message: &str) {}
    /// The operation is done.
    fn finish(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// How outputs are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace existing output files (regular files only; the input is never overwritten).
    pub force: bool,
    /// The `netcompress.command` metadata entry [default: `compress-checkpoint COMMAND`].
    pub provenance: Option<String>,
}

/// What an encoder did with one tensor.
#[derive(Debug)]
pub enum Outcome {
    /// Stored as `parts`, described by `encoding`.
    Encoded {
        /// The encoding (part names included).
        encoding: Encoding,
        /// The part tensors.
        parts: Vec<Part>,
        /// Extra per-tensor fields for the report.
        extra: Map<String, Value>,
    },
    /// Stored dense under its own name, dtype and shape, with these bytes.
    Dense {
        /// New data in the original dtype.
        bytes: Vec<u8>,
        /// What was done (for the report).
        action: String,
        /// Extra per-tensor fields for the report.
        extra: Map<String, Value>,
    },
    /// Passed through untouched, for this reason.
    Keep(String),
}

/// A tensor encoded by [`Encoder::encode_stream`]: its parts are already written.
#[derive(Debug)]
pub struct Streamed {
    /// The encoding (part names included).
    pub encoding: Encoding,
    /// Error sums of the decoded parts against the input.
    pub sums: ErrSums,
    /// Bytes written.
    pub bytes_out: u64,
    /// Extra per-tensor fields for the report.
    pub extra: Map<String, Value>,
}

/// One command's tensor transformation.
pub trait Encoder {
    /// How many times [`Encoder::observe`] must see every selected tensor before any is
    /// encoded (global statistics); [`Encoder::finish_prepass`] ends each round.
    fn prepass_rounds(&self) -> usize {
        0
    }

    /// Sees one selected tensor during a pre-pass round.
    ///
    /// # Errors
    ///
    /// Any error stops the command before anything is written.
    fn observe(&mut self, _t: &TensorInfo, _values: &[f32]) -> Result<()> {
        Ok(())
    }

    /// Called after each pre-pass round.
    ///
    /// # Errors
    ///
    /// Any error stops the command before anything is written.
    fn finish_prepass(&mut self) -> Result<()> {
        Ok(())
    }

    /// Encodes `t` straight from the file in chunks, writing its parts to `w` itself (memory
    /// stays at the chunk size); `Ok(None)` when this tensor takes the whole-tensor path
    /// ([`Encoder::encode`]), decided before anything is written.
    ///
    /// # Errors
    ///
    /// Any error stops the command; nothing is left behind.
    fn encode_stream(
        &mut self,
        _t: &TensorInfo,
        _f: &mut SafetensorsFile,
        _w: &mut ShardWriter,
    ) -> Result<Option<Streamed>> {
        Ok(None)
    }

    /// Whether [`Encoder::encode`] needs the stored bytes (else it gets an empty `raw`).
    fn needs_raw(&self) -> bool {
        true
    }

    /// Encodes one selected tensor (`values` in f32, `raw` as stored or empty).
    ///
    /// # Errors
    ///
    /// Any error stops the command; nothing is left behind.
    fn encode(&mut self, t: &TensorInfo, values: &[f32], raw: &[u8]) -> Result<Outcome>;
}

/// One tensor's line in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Input dtype.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Encoding label, or `pass (reason)`.
    pub action: String,
    /// Input bytes.
    pub bytes_in: u64,
    /// Output bytes (all parts).
    pub bytes_out: u64,
    /// Error of the stored tensor (absent for pass-through tensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrMetrics>,
    /// Command-specific fields (rank, sparsity, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Totals of a command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Tensors in the input.
    pub tensors: usize,
    /// Tensors transformed.
    pub transformed: usize,
    /// Tensors passed through.
    pub passed: usize,
    /// Tensor data bytes of the input.
    pub bytes_in: u64,
    /// Input bytes with every float tensor counted as f32 (4 bytes per element).
    pub bytes_in_f32: u64,
    /// Input file sizes (headers included).
    pub file_bytes_in: u64,
    /// Tensor data bytes of the output.
    pub bytes_out: u64,
    /// Output shard file sizes (headers included, index excluded).
    pub file_bytes_out: u64,
    /// `file_bytes_out / file_bytes_in`.
    pub ratio: f64,
    /// `file_bytes_out / bytes_in_f32`.
    pub ratio_f32: f64,
    /// Mean SQNR (dB) over transformed tensors that are not bit-identical.
    pub mean_sqnr_db: Option<f64>,
    /// Lowest SQNR (dB) over transformed tensors.
    pub min_sqnr_db: Option<f64>,
    /// SQNR (dB) of all transformed tensors taken together.
    pub total_sqnr_db: Option<f64>,
    /// Fraction of zeros written over the transformed tensors (`prune` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
}

/// The result of a command.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `quantize`, `prune`, ...
    pub command: String,
    /// The input path.
    pub input: String,
    /// Every output file written.
    pub outputs: Vec<String>,
    /// Per-tensor lines.
    pub tensors: Vec<TensorReport>,
    /// Totals.
    pub totals: Totals,
}

fn report(t: &TensorInfo, action: String, bytes_out: u64) -> TensorReport {
    TensorReport {
        name: t.name.clone(),
        dtype: t.dtype.name().to_string(),
        shape: t.shape.clone(),
        action,
        bytes_in: t.nbytes(),
        bytes_out,
        error: None,
        extra: Map::new(),
    }
}

fn pass_through(f: &mut SafetensorsFile, w: &mut ShardWriter, t: &TensorInfo) -> Result<()> {
    let path = f.path().to_path_buf();
    let src = f.seek_to(t)?;
    w.add_from(&t.name, t.dtype.name(), &t.shape, t.nbytes(), src, &path)
}

/// Runs `enc` over the checkpoint `input` (a file or a shard index), writing `output` (a
/// file, or an index with its shards beside it) atomically. `command` names the operation in
/// the summary and the default provenance.
///
/// # Errors
///
/// Planning, reading, encoding and writing errors; on error no output is left behind.
pub fn encode_checkpoint(
    command: &str,
    input: &Path,
    output: &Path,
    options: &WriteOptions,
    sel: &Selector,
    enc: &mut dyn Encoder,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let plan = Plan::new(input, output, options.force)?;
    let mut files = open_checkpoint(input)?;
    for f in &files {
        if f.metadata.contains_key(FORMAT_KEY) {
            return Err(CheckpointError::format(
                f.path(),
                format!("__metadata__.{FORMAT_KEY}"),
                "the file is already compressed by netcompress; dequantize it first",
            ));
        }
    }
    let names: Vec<&str> = files
        .iter()
        .flat_map(|f| f.tensors.iter().map(|t| t.name.as_str()))
        .collect();
    for g in sel.unmatched(&names) {
        progress.warn(&format!("pattern `{g}` matches no tensor"));
    }
    let total: u64 = files.iter().map(SafetensorsFile::data_bytes).sum();
    let rounds = enc.prepass_rounds();
    progress.start(total * (1 + rounds as u64));
    for _ in 0..rounds {
        prepass(&mut files, sel, enc, progress)?;
    }
    let mut totals = Totals::default();
    let mut reports = Vec::new();
    let mut pendings = Vec::new();
    let mut written = Vec::new();
    let mut all = ErrSums::default();
    let line = options
        .provenance
        .clone()
        .unwrap_or_else(|| format!("compress-checkpoint {command}"));
    for (f, (_, out)) in files.iter_mut().zip(&plan.shards) {
        totals.file_bytes_in += f.file_bytes();
        let mut w = ShardWriter::with_reserve(out, header_estimate(f, sel, &line))?;
        for (k, v) in &f.metadata {
            w.set_metadata(k.clone(), v.clone());
        }
        w.set_metadata(FORMAT_KEY, FORMAT_VERSION);
        w.set_metadata(COMMAND_KEY, line.clone());
        for t in f.tensors.clone() {
            totals.tensors += 1;
            totals.bytes_in += t.nbytes();
            totals.bytes_in_f32 += if t.dtype.is_float() {
                4 * t.numel() as u64
            } else {
                t.nbytes()
            };
            let r = encode_one(f, &mut w, &t, sel, enc, &mut all)?;
            if r.error.is_some() {
                totals.transformed += 1;
            } else {
                totals.passed += 1;
            }
            totals.bytes_out += r.bytes_out;
            reports.push(r);
            progress.advance(t.nbytes());
        }
        written.push((
            out.clone(),
            w.names().map(String::from).collect::<Vec<_>>(),
            w.data_bytes(),
        ));
        pendings.push(w.assemble()?);
    }
    let (outputs, shard_bytes) = plan.commit_outputs(pendings, &written)?;
    totals.file_bytes_out = shard_bytes;
    progress.finish();
    finish_totals(&mut totals, &reports, &all);
    Ok(Summary {
        command: command.to_string(),
        input: input.display().to_string(),
        outputs,
        tensors: reports,
        totals,
    })
}

/// A generous estimate of the output header of shard `f`: each transformed tensor gets up to
/// three part entries and a JSON description (about `8 * name + 750` bytes in all), others
/// their own entry; plus the copied metadata and the command line.
fn header_estimate(f: &SafetensorsFile, sel: &Selector, line: &str) -> u64 {
    let per: u64 = f
        .tensors
        .iter()
        .map(|t| {
            let name = t.name.len() as u64;
            if sel.check(t).is_ok() {
                8 * name + 750
            } else {
                name + 120
            }
        })
        .sum();
    let meta: u64 = f
        .metadata
        .iter()
        .map(|(k, v)| (k.len() + v.len() + 8) as u64)
        .sum();
    per + meta + line.len() as u64 + 256
}

fn prepass(
    files: &mut [SafetensorsFile],
    sel: &Selector,
    enc: &mut dyn Encoder,
    progress: &mut dyn Progress,
) -> Result<()> {
    for f in files.iter_mut() {
        for t in f.tensors.clone() {
            if sel.check(&t).is_ok() {
                let raw = f.read_raw(&t)?;
                enc.observe(&t, &bytes_to_f32(&raw, t.dtype))?;
            }
            progress.advance(t.nbytes());
        }
    }
    enc.finish_prepass()
}

fn encode_one(
    f: &mut SafetensorsFile,
    w: &mut ShardWriter,
    t: &TensorInfo,
    sel: &Selector,
    enc: &mut dyn Encoder,
    all: &mut ErrSums,
) -> Result<TensorReport> {
    if let Err(skip) = sel.check(t) {
        pass_through(f, w, t)?;
        return Ok(report(t, format!("pass ({})", skip.reason()), t.nbytes()));
    }
    if let Some(s) = enc.encode_stream(t, f, w)? {
        let meta = TensorMeta {
            dtype: t.dtype.name().to_string(),
            shape: t.shape.clone(),
            encoding: s.encoding,
        };
        w.set_metadata(
            format!("{TENSOR_KEY_PREFIX}{}", t.name),
            serde_json::to_string(&meta)?,
        );
        all.add(&s.sums);
        let mut r = report(t, meta.encoding.label(), s.bytes_out);
        r.extra = s.extra;
        r.error = Some(s.sums.metrics());
        return Ok(r);
    }
    let (raw, values) = if enc.needs_raw() {
        let raw = f.read_raw(t)?;
        let values = bytes_to_f32(&raw, t.dtype);
        (raw, values)
    } else {
        (Vec::new(), f.read_f32_lean(t)?)
    };
    let (r, sums) = match enc.encode(t, &values, &raw)? {
        Outcome::Keep(reason) => {
            drop(raw);
            drop(values);
            pass_through(f, w, t)?;
            return Ok(report(t, format!("pass ({reason})"), t.nbytes()));
        }
        Outcome::Dense {
            bytes,
            action,
            extra,
        } => {
            drop(raw);
            let back = bytes_to_f32(&bytes, t.dtype);
            check_finite(t, &back, "output value")?;
            let sums = ErrSums::of(&values, &back);
            w.add(&t.name, t.dtype.name(), &t.shape, &bytes)?;
            let mut r = report(t, action, bytes.len() as u64);
            r.extra = extra;
            (r, sums)
        }
        Outcome::Encoded {
            encoding,
            parts,
            extra,
        } => {
            drop(raw);
            let meta = TensorMeta {
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                encoding,
            };
            let sums = measure_decoded(t, &meta, &parts, &values)?;
            let mut bytes_out = 0;
            for p in &parts {
                w.add(&p.name, p.dtype.name(), &p.shape, &p.bytes)?;
                bytes_out += p.bytes.len() as u64;
            }
            w.set_metadata(
                format!("{TENSOR_KEY_PREFIX}{}", t.name),
                serde_json::to_string(&meta)?,
            );
            let mut r = report(t, meta.encoding.label(), bytes_out);
            r.extra = extra;
            (r, sums)
        }
    };
    all.add(&sums);
    Ok(TensorReport {
        error: Some(sums.metrics()),
        ..r
    })
}

fn finish_totals(totals: &mut Totals, reports: &[TensorReport], all: &ErrSums) {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    totals.ratio = ratio(totals.file_bytes_out, totals.file_bytes_in);
    totals.ratio_f32 = ratio(totals.file_bytes_out, totals.bytes_in_f32);
    let sq: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.error.and_then(|e| e.sqnr_db))
        .collect();
    if !sq.is_empty() {
        totals.mean_sqnr_db = Some(sq.iter().sum::<f64>() / sq.len() as f64);
        totals.min_sqnr_db = sq.iter().copied().reduce(f64::min);
    }
    totals.total_sqnr_db = all.metrics().sqnr_db;
    let pruned: u64 = reports
        .iter()
        .filter_map(|r| r.extra.get("pruned").and_then(Value::as_u64))
        .sum();
    if reports.iter().any(|r| r.extra.contains_key("pruned")) {
        let n: u64 = reports
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.shape.iter().product::<usize>() as u64)
            .sum();
        totals.sparsity = Some(if n == 0 {
            0.0
        } else {
            pruned as f64 / n as f64
        });
    }
}

/// Values per block when the just-encoded parts are decoded again to measure their error.
const CHECK_BLOCK: usize = 1 << 20;

/// Decodes `parts` block by block (see [`decode_blocks`]), checking every value finite and
/// summing its error against `values`, so a low-rank tensor is never dense in memory twice.
fn measure_decoded(
    t: &TensorInfo,
    meta: &TensorMeta,
    parts: &[Part],
    values: &[f32],
) -> Result<ErrSums> {
    let mut sums = ErrSums::default();
    let mut at = 0usize;
    let mut bad: Option<CheckpointError> = None;
    let decoded = decode_blocks(meta, &mut { parts }, CHECK_BLOCK, &mut |block| {
        let end = at + block.len();
        let Some(reference) = values.get(at..end) else {
            return Err(format!("decodes to more than {} values", values.len()));
        };
        if let Err(e) = check_finite_from(t, block, at, "decoded output value") {
            bad = Some(e);
            return Err(String::new());
        }
        sums.add(&ErrSums::of(reference, block));
        at = end;
        Ok(())
    });
    if let Some(e) = bad {
        return Err(e);
    }
    decoded
        .and_then(|()| {
            if at == values.len() {
                Ok(())
            } else {
                Err(format!("decodes to {at} of {} values", values.len()))
            }
        })
        .map_err(|e| tensor_err(t, format!("encoded data does not decode: {e}")))?;
    Ok(sums)
}

/// An error about one tensor (bad values or options that do not fit its shape).
pub(crate) fn tensor_err(t: &TensorInfo, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::tensor(&t.name, &t.shape, e)
}

/// Refuses an output with a non-finite value (an overflowing scale, a NaN codebook or factor):
/// nothing that `dequantize` would restore as inf/NaN is ever written.
///
/// # Errors
///
/// [`CheckpointError::Tensor`] naming the tensor, the value and its index.
pub(crate) fn check_finite(t: &TensorInfo, values: &[f32], what: &str) -> Result<()> {
    check_finite_from(t, values, 0, what)
}

/// As [`check_finite`] for a block of values starting at flat index `offset`.
fn check_finite_from(t: &TensorInfo, values: &[f32], offset: usize, what: &str) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(tensor_err(
            t,
            format!(
                "{what} {} at flat index {} is not finite (the input's range overflows this encoding); nothing was written",
                values[i],
                offset + i
            ),
        )),
    }
}
