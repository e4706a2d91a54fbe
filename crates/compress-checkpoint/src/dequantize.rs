//! Restoring a compressed checkpoint: every compressed tensor becomes a dense float tensor
//! with its original name and shape (and its original dtype unless another is asked for).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::decode::decode_blocks;
use crate::error::{CheckpointError, Result};
use crate::format::{TensorMeta, encode_values, tensor_metas};
use crate::pipeline::{Progress, Summary, TensorReport, Totals, WriteOptions};
use crate::plan::Plan;
use crate::reader::{Dtype, SafetensorsFile, bytes_to_f32};
use crate::shards::open_checkpoint;
use crate::writer::ShardWriter;

/// Maps each part name to the tensor that owns it.
fn owners(
    f: &SafetensorsFile,
    metas: &BTreeMap<String, TensorMeta>,
) -> Result<HashMap<String, String>> {
    let mut owner = HashMap::new();
    for (name, m) in metas {
        if f.tensors.iter().any(|t| &t.name == name) {
            return Err(CheckpointError::format(
                f.path(),
                format!("tensor `{name}`"),
                "is both a compressed tensor and a stored one",
            ));
        }
        for p in m.encoding.parts() {
            if owner.insert(p.to_string(), name.clone()).is_some() {
                return Err(CheckpointError::format(
                    f.path(),
                    format!("part `{p}`"),
                    "is claimed by two compressed tensors",
                ));
            }
        }
    }
    Ok(owner)
}

/// Values per block when a tensor is decoded into the output.
const BLOCK: usize = 1 << 20;

/// Decodes compressed tensor `name` of `f` into `w` as `dtype`, block by block (a low-rank
/// tensor is never dense in memory as a whole), checking every value finite; returns the
/// bytes written. On error the half-written output is discarded with the writer.
fn restore(
    f: &mut SafetensorsFile,
    w: &mut ShardWriter,
    name: &str,
    meta: &TensorMeta,
    dtype: Dtype,
) -> Result<u64> {
    let path = f.path().to_path_buf();
    let field = format!("tensor `{name}`");
    let numel = meta
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            CheckpointError::format(
                &path,
                &field,
                format!("shape {:?} is empty or overflows", meta.shape),
            )
        })?;
    let len = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| CheckpointError::format(&path, &field, "byte size overflows"))?
        as u64;
    let mut at = 0usize;
    let mut failure: Option<CheckpointError> = None;
    let mut started = false;
    let decoded = decode_blocks(meta, f, BLOCK, &mut |block| {
        if let Some(i) = block.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "decodes to the non-finite value {} at flat index {} (corrupt scales, codebook or factors)",
                block[i],
                at + i
            ));
        }
        let r = if started {
            Ok(())
        } else {
            started = true;
            w.begin(name, dtype.name(), &meta.shape, len)
        };
        if let Err(e) = r.and_then(|()| w.append(&encode_values(block, dtype))) {
            failure = Some(e);
            return Err(String::new());
        }
        at += block.len();
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    decoded.map_err(|r| CheckpointError::format(&path, &field, r))?;
    if at != numel {
        return Err(CheckpointError::format(
            &path,
            &field,
            format!("decodes to {at} values, the shape holds {numel}"),
        ));
    }
    Ok(len)
}

/// Restores the compressed checkpoint `input` (a file or a shard index) into `output`,
/// writing every float tensor in `dtype` (`None`: each tensor's original dtype). Decoded
/// values are checked finite before anything is written.
///
/// # Errors
///
/// Input, decoding and output errors; nothing is left behind on error.
pub fn dequantize_checkpoint(
    input: &Path,
    output: &Path,
    options: &WriteOptions,
    dtype: Option<Dtype>,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    if let Some(d) = dtype
        && !d.is_float()
    {
        return Err(CheckpointError::option(
            "--dtype",
            format!("{} is not a float dtype", d.name()),
        ));
    }
    let plan = Plan::new(input, output, options.force)?;
    let mut files = open_checkpoint(input)?;
    let total: u64 = files.iter().map(SafetensorsFile::data_bytes).sum();
    progress.start(total);
    let force = dtype;
    let mut totals = Totals::default();
    let (mut reports, mut pendings, mut written) = (Vec::new(), Vec::new(), Vec::new());
    for (f, (_, out)) in files.iter_mut().zip(&plan.shards) {
        totals.file_bytes_in += f.file_bytes();
        let metas = tensor_metas(&f.metadata)
            .map_err(|(field, r)| CheckpointError::format(f.path(), field, r))?;
        let owner = owners(f, &metas)?;
        let mut w = ShardWriter::with_reserve(out, f.file_bytes() - f.data_bytes())?;
        for (k, v) in &f.metadata {
            if !k.starts_with("netcompress.") {
                w.set_metadata(k.clone(), v.clone());
            }
        }
        let mut done: HashSet<String> = HashSet::new();
        for t in f.tensors.clone() {
            totals.bytes_in += t.nbytes();
            progress.advance(t.nbytes());
            if let Some(name) = owner.get(&t.name) {
                if !done.insert(name.clone()) {
                    continue;
                }
                let meta = &metas[name];
                let dtype =
                    force.unwrap_or_else(|| Dtype::parse(&meta.dtype).unwrap_or(Dtype::F32));
                let bytes_out = restore(f, &mut w, name, meta, dtype)?;
                let parts_in: u64 = meta
                    .encoding
                    .parts()
                    .iter()
                    .filter_map(|p| f.tensors.iter().find(|x| x.name == *p))
                    .map(|x| x.nbytes())
                    .sum();
                reports.push(TensorReport {
                    name: name.clone(),
                    dtype: dtype.name().to_string(),
                    shape: meta.shape.clone(),
                    action: format!("restored ({})", meta.encoding.label()),
                    bytes_in: parts_in,
                    bytes_out,
                    error: None,
                    extra: serde_json::Map::new(),
                });
                totals.transformed += 1;
                totals.bytes_out += bytes_out;
                continue;
            }
            let (dtype, converted) = match force {
                Some(d) if t.dtype.is_float() && t.dtype != d => {
                    let raw = f.read_raw(&t)?;
                    let bytes = encode_values(&bytes_to_f32(&raw, t.dtype), d);
                    w.add(&t.name, d.name(), &t.shape, &bytes)?;
                    (d, true)
                }
                _ => {
                    let path = f.path().to_path_buf();
                    let src = f.seek_to(&t)?;
                    w.add_from(&t.name, t.dtype.name(), &t.shape, t.nbytes(), src, &path)?;
                    (t.dtype, false)
                }
            };
            let bytes_out = (t.numel() * dtype.size()) as u64;
            totals.passed += 1;
            totals.bytes_out += bytes_out;
            reports.push(TensorReport {
                name: t.name.clone(),
                dtype: dtype.name().to_string(),
                shape: t.shape.clone(),
                action: if converted {
                    "cast".into()
                } else {
                    "pass".into()
                },
                bytes_in: t.nbytes(),
                bytes_out,
                error: None,
                extra: serde_json::Map::new(),
            });
        }
        if let Some(missing) = metas.keys().find(|k| !done.contains(*k)) {
            return Err(CheckpointError::format(
                f.path(),
                format!("__metadata__.netcompress.tensor.{missing}"),
                "describes a tensor none of whose parts is stored",
            ));
        }
        written.push((
            out.clone(),
            w.names().map(String::from).collect::<Vec<_>>(),
            w.data_bytes(),
        ));
        pendings.push(w.assemble()?);
    }
    totals.tensors = reports.len();
    let (outputs, shard_bytes) = plan.commit_outputs(pendings, &written)?;
    totals.file_bytes_out = shard_bytes;
    progress.finish();
    if totals.file_bytes_in > 0 {
        totals.ratio = totals.file_bytes_out as f64 / totals.file_bytes_in as f64;
    }
    Ok(Summary {
        command: "dequantize".into(),
        input: input.display().to_string(),
        outputs,
        tensors: reports,
        totals,
    })
}
