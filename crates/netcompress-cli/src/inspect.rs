//! `netcompress inspect`: per-tensor statistics of a checkpoint, streamed one tensor at a time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use compress_checkpoint::format::tensor_metas;
use compress_checkpoint::{CheckpointError, open_checkpoint};

use crate::error::Result;

/// Statistics of one tensor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct TensorStats {
    /// Tensor name.
    pub(crate) name: String,
    /// Shard file name.
    pub(crate) file: String,
    /// dtype name.
    pub(crate) dtype: String,
    /// Shape.
    pub(crate) shape: Vec<usize>,
    /// Element count.
    pub(crate) params: usize,
    /// Stored bytes.
    pub(crate) bytes: u64,
    /// Fraction of exact zeros (floats only).
    pub(crate) sparsity: Option<f64>,
    /// Minimum (floats only).
    pub(crate) min: Option<f64>,
    /// Maximum (floats only).
    pub(crate) max: Option<f64>,
    /// Mean absolute value (floats only).
    pub(crate) mean_abs: Option<f64>,
    /// NaN or infinite elements (floats only).
    pub(crate) non_finite: Option<usize>,
}

/// Totals over a checkpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub(crate) struct Totals {
    /// Tensors.
    pub(crate) tensors: usize,
    /// Elements of all tensors.
    pub(crate) params: usize,
    /// Elements of float tensors.
    pub(crate) float_params: usize,
    /// Exact zeros among float elements.
    pub(crate) zeros: usize,
    /// Bytes of tensor data.
    pub(crate) bytes: u64,
}

/// Reads every tensor of the checkpoint at `path` and computes its statistics.
pub(crate) fn collect(path: &Path) -> Result<(Vec<TensorStats>, Totals)> {
    let mut out = Vec::new();
    let mut totals = Totals::default();
    for mut f in open_checkpoint(path)? {
        let file = f
            .path()
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let (mut scratch, mut chunk) = (Vec::new(), Vec::new());
        for t in f.tensors.clone() {
            let mut s = TensorStats {
                name: t.name.clone(),
                file: file.clone(),
                dtype: t.dtype.name().to_string(),
                shape: t.shape.clone(),
                params: t.numel(),
                bytes: t.nbytes(),
                sparsity: None,
                min: None,
                max: None,
                mean_abs: None,
                non_finite: None,
            };
            totals.tensors += 1;
            totals.params += t.numel();
            totals.bytes += t.nbytes();
            if t.dtype.is_float() {
                // Streamed in 1 Mi-element chunks: memory stays small whatever the tensor.
                let n = t.numel();
                let (mut zeros, mut n_fin) = (0usize, 0usize);
                let (mut lo, mut hi, mut abs) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
                let mut start = 0;
                while start < n {
                    let count = (1usize << 20).min(n - start);
                    f.read_f32_range(&t, start, count, &mut scratch, &mut chunk)?;
                    for &x in &chunk {
                        zeros += usize::from(x == 0.0);
                        if x.is_finite() {
                            let x = f64::from(x);
                            lo = lo.min(x);
                            hi = hi.max(x);
                            abs += x.abs();
                            n_fin += 1;
                        }
                    }
                    start += count;
                }
                s.sparsity = Some(if n == 0 { 0.0 } else { zeros as f64 / n as f64 });
                s.min = (n_fin > 0).then_some(lo);
                s.max = (n_fin > 0).then_some(hi);
                s.mean_abs = Some(if n_fin == 0 { 0.0 } else { abs / n_fin as f64 });
                s.non_finite = Some(n - n_fin);
                totals.float_params += n;
                totals.zeros += zeros;
            }
            out.push(s);
        }
    }
    Ok((out, totals))
}

fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

/// Runs `inspect`.
pub(crate) fn run(path: &Path, json: bool) -> Result<()> {
    let (stats, totals) = collect(path)?;
    println!(
        "{:<40} {:<5} {:<18} {:>11} {:>8} {:>10} {:>10} {:>10}",
        "tensor", "dtype", "shape", "params", "sparsity", "min", "max", "mean|w|"
    );
    for s in &stats {
        println!(
            "{:<40} {:<5} {:<18} {:>11} {:>8} {:>10} {:>10} {:>10}",
            s.name,
            s.dtype,
            format!("{:?}", s.shape),
            s.params,
            s.sparsity
                .map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0)),
            opt(s.min, 4),
            opt(s.max, 4),
            opt(s.mean_abs, 5),
        );
    }
    let sparsity = if totals.float_params == 0 {
        0.0
    } else {
        totals.zeros as f64 / totals.float_params as f64
    };
    println!(
        "total: {} tensors, {} params ({} float), {} bytes, sparsity {:.2}%",
        totals.tensors,
        totals.params,
        totals.float_params,
        totals.bytes,
        sparsity * 100.0
    );
    let compressed = compressed_tensors(path)?;
    if !compressed.is_empty() {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for label in compressed.values() {
            *counts.entry(label.as_str()).or_default() += 1;
        }
        let list: Vec<String> = counts.iter().map(|(l, n)| format!("{n} x {l}")).collect();
        println!(
            "netcompress: {} compressed tensors stored as parts ({}); `netcompress dequantize` restores them",
            compressed.len(),
            list.join(", ")
        );
    }
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "tensors": stats,
            "totals": totals,
            "compressed": compressed,
        });
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(())
}

/// The netcompress-compressed tensors of a checkpoint and their encoding labels.
fn compressed_tensors(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in open_checkpoint(path)? {
        let metas = tensor_metas(&f.metadata)
            .map_err(|(field, r)| CheckpointError::format(f.path(), field, r))?;
        out.extend(metas.into_iter().map(|(k, m)| (k, m.encoding.label())));
    }
    Ok(out)
}
