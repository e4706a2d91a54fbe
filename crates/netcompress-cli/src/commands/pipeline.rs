//! The streaming driver shared by `quantize`, `prune`, `cluster` and `lowrank`.
//!
//! For each input shard, tensors are read one at a time in file order. A selected tensor is
//! converted to f32 and handed to the command's [`Encoder`]; its parts are decoded again with
//! the same code `dequantize` uses, to measure the error that will really be restored, and
//! appended to the output. Other tensors are copied byte for byte in chunks. Nothing is renamed
//! into place until every shard (and the new index) is complete.

use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{Map, Value};

use super::metrics::{ErrMetrics, ErrSums};
use super::plan::Plan;
use super::{IoArgs, byte_bar, command_line, fmt_bytes};
use crate::decode::{Part, decode};
use crate::error::{CliError, Result};
use crate::format::{
    COMMAND_KEY, Encoding, FORMAT_KEY, FORMAT_VERSION, TENSOR_KEY_PREFIX, TensorMeta,
};
use crate::safetensors_io::{SafetensorsFile, TensorInfo, bytes_to_f32};
use crate::select::Selector;
use crate::writer::{ShardWriter, commit};

/// What an encoder did with one tensor.
#[derive(Debug)]
pub(crate) enum Outcome {
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
pub(crate) struct Streamed {
    /// The encoding (part names included).
    pub(crate) encoding: Encoding,
    /// Error sums of the decoded parts against the input.
    pub(crate) sums: ErrSums,
    /// Bytes written.
    pub(crate) bytes_out: u64,
    /// Extra per-tensor fields for the report.
    pub(crate) extra: Map<String, Value>,
}

/// One command's tensor transformation.
pub(crate) trait Encoder {
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
pub(crate) struct TensorReport {
    /// Tensor name.
    pub(crate) name: String,
    /// Input dtype.
    pub(crate) dtype: String,
    /// Shape.
    pub(crate) shape: Vec<usize>,
    /// Encoding label, or `pass (reason)`.
    pub(crate) action: String,
    /// Input bytes.
    pub(crate) bytes_in: u64,
    /// Output bytes (all parts).
    pub(crate) bytes_out: u64,
    /// Error of the stored tensor (absent for pass-through tensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ErrMetrics>,
    /// Command-specific fields (rank, sparsity, ...).
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

/// Totals of a command.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Totals {
    /// Tensors in the input.
    pub(crate) tensors: usize,
    /// Tensors transformed.
    pub(crate) transformed: usize,
    /// Tensors passed through.
    pub(crate) passed: usize,
    /// Tensor data bytes of the input.
    pub(crate) bytes_in: u64,
    /// Input bytes with every float tensor counted as f32 (4 bytes per element).
    pub(crate) bytes_in_f32: u64,
    /// Input file sizes (headers included).
    pub(crate) file_bytes_in: u64,
    /// Tensor data bytes of the output.
    pub(crate) bytes_out: u64,
    /// Output shard file sizes (headers included, index excluded).
    pub(crate) file_bytes_out: u64,
    /// `file_bytes_out / file_bytes_in`.
    pub(crate) ratio: f64,
    /// `file_bytes_out / bytes_in_f32`.
    pub(crate) ratio_f32: f64,
    /// Mean SQNR (dB) over transformed tensors that are not bit-identical.
    pub(crate) mean_sqnr_db: Option<f64>,
    /// Lowest SQNR (dB) over transformed tensors.
    pub(crate) min_sqnr_db: Option<f64>,
    /// SQNR (dB) of all transformed tensors taken together.
    pub(crate) total_sqnr_db: Option<f64>,
    /// Fraction of zeros written over the transformed tensors (`prune` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sparsity: Option<f64>,
}

/// The result of a command.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// `quantize`, `prune`, ...
    pub(crate) command: String,
    /// The input path.
    pub(crate) input: String,
    /// Every output file written.
    pub(crate) outputs: Vec<String>,
    /// Per-tensor lines.
    pub(crate) tensors: Vec<TensorReport>,
    /// Totals.
    pub(crate) totals: Totals,
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

/// Opens every shard of a plan (validating all headers before anything is written).
pub(crate) fn open_all(plan: &Plan) -> Result<Vec<SafetensorsFile>> {
    plan.shards
        .iter()
        .map(|(i, _)| SafetensorsFile::open(i))
        .collect()
}

/// Runs `enc` over the checkpoint `io.input`, writing `io.output`.
///
/// # Errors
///
/// Planning, reading, encoding and writing errors; on error no output is left behind.
pub(crate) fn run_encode(
    command: &str,
    io: &IoArgs,
    sel: &Selector,
    enc: &mut dyn Encoder,
) -> Result<Summary> {
    let plan = Plan::new(&io.input, &io.output, io.force)?;
    let mut files = open_all(&plan)?;
    for f in &files {
        if f.metadata.contains_key(FORMAT_KEY) {
            return Err(CliError::Usage(format!(
                "{} was written by netcompress; run `netcompress dequantize` on it first",
                f.path().display()
            )));
        }
    }
    let names: Vec<&str> = files
        .iter()
        .flat_map(|f| f.tensors.iter().map(|t| t.name.as_str()))
        .collect();
    for g in sel.unmatched(&names) {
        eprintln!("warning: pattern `{g}` matches no tensor");
    }
    let total: u64 = files.iter().map(SafetensorsFile::data_bytes).sum();
    let rounds = enc.prepass_rounds();
    let bar = byte_bar(total * (1 + rounds as u64), io.json);
    for _ in 0..rounds {
        prepass(&mut files, sel, enc, &bar)?;
    }
    let mut totals = Totals::default();
    let mut reports = Vec::new();
    let mut pendings = Vec::new();
    let mut written = Vec::new();
    let mut all = ErrSums::default();
    let line = command_line();
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
            bar.inc(t.nbytes());
        }
        written.push((
            out.clone(),
            w.names().map(String::from).collect::<Vec<_>>(),
            w.data_bytes(),
        ));
        pendings.push(w.assemble()?);
    }
    totals.file_bytes_out = pendings.iter().map(|p| p.bytes()).sum();
    if let Some(p) = plan.write_index(&written)? {
        pendings.push(p);
    }
    let outputs = pendings
        .iter()
        .map(|p| p.target().display().to_string())
        .collect();
    commit(pendings)?;
    bar.finish_and_clear();
    finish_totals(&mut totals, &reports, &all);
    Ok(Summary {
        command: command.to_string(),
        input: io.input.display().to_string(),
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
    bar: &ProgressBar,
) -> Result<()> {
    for f in files.iter_mut() {
        for t in f.tensors.clone() {
            if sel.check(&t).is_ok() {
                let raw = f.read_raw(&t)?;
                enc.observe(&t, &bytes_to_f32(&raw, t.dtype))?;
            }
            bar.inc(t.nbytes());
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
            let sums = ErrSums::of(&values, &bytes_to_f32(&bytes, t.dtype));
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
            let back = decode(&meta, &mut parts.as_slice()).map_err(|e| {
                CliError::format(
                    f.path(),
                    format!("tensor `{}`: encoded data does not decode: {e}", t.name),
                )
            })?;
            let sums = ErrSums::of(&values, &back);
            drop(back);
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

/// Prints the summary table, and the JSON object as the last line with `json`.
///
/// # Errors
///
/// [`CliError::Json`] if serialization fails.
pub(crate) fn print_summary(s: &Summary, json: bool) -> Result<()> {
    let w = s
        .tensors
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
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

/// An error about one tensor (bad values or options that do not fit its shape).
pub(crate) fn tensor_err(t: &TensorInfo, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("tensor `{}` {:?}: {e}", t.name, t.shape))
}
