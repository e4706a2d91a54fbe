//! The checks behind the coverage-guided fuzz targets (`fuzz/` in the repository, run with
//! cargo-fuzz) and the bounded property tests that run the same checks in CI.
//!
//! Each function feeds arbitrary bytes to one reader, the way a user's corrupt or hand-edited
//! file would reach it, and checks the reader's contract: it returns (never panics), every
//! error names the file and the field at fault, and whatever it accepts is consistent. A
//! broken contract is returned as `Err(description)`; the fuzz targets panic on it (so the
//! fuzzer records the input), the property tests assert it is `Ok`.
//!
//! Allocation from a lying header is checked by the fuzzer's limits (`-malloc_limit_mb`,
//! `-rss_limit_mb`), which stop the run at the first oversized allocation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::decode::decode_blocks;
use crate::error::CheckpointError;
use crate::format::{FORMAT_KEY, TENSOR_KEY_PREFIX, tensor_metas};
use crate::writer::{ShardWriter, commit, f32_bytes, u32_bytes};
use crate::{SafetensorsFile, dequantize_file, open_checkpoint};

/// A violated contract: what went wrong, with the input's error message.
pub type Violation = String;

/// Checks that `e` names `file` (its path) and, for a format error, a non-empty field.
fn names_file_and_field(e: &CheckpointError, file: &Path) -> Result<(), Violation> {
    let msg = e.to_string();
    let path = file.display().to_string();
    match e {
        CheckpointError::Format { path: p, field, .. } if p == &path && !field.is_empty() => Ok(()),
        CheckpointError::Io { path: p, .. } if p == &path => Ok(()),
        _ => Err(format!(
            "error does not name the file {path} and a field: {msg}"
        )),
    }
}

/// Writes `bytes` as `dir/fuzz.safetensors`, opens it and reads every tensor both raw and
/// as f32. Errors must name the file and the field; an accepted header must describe tensors
/// that tile the data section and read back at their stated sizes.
///
/// # Errors
///
/// The violated contract.
pub fn safetensors_file(dir: &Path, bytes: &[u8]) -> Result<(), Violation> {
    let path = dir.join("fuzz.safetensors");
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write the input: {e}"))?;
    let mut f = match SafetensorsFile::open(&path) {
        Ok(f) => f,
        Err(e) => return names_file_and_field(&e, &path),
    };
    if f.file_bytes() != bytes.len() as u64 {
        return Err(format!(
            "accepted a header whose tensors cover {} bytes of a {}-byte file",
            f.file_bytes(),
            bytes.len()
        ));
    }
    for t in f.tensors.clone() {
        let raw = f.read_raw(&t).map_err(|e| format!("accepted, then: {e}"))?;
        if raw.len() != t.numel() * t.dtype.size() {
            return Err(format!("tensor `{}`: {} bytes read", t.name, raw.len()));
        }
        if let Some(v) = f.read_f32(&t).map_err(|e| format!("accepted, then: {e}"))?
            && v.len() != t.numel()
        {
            return Err(format!("tensor `{}`: {} floats read", t.name, v.len()));
        }
    }
    Ok(())
}

/// Writes two one-tensor shards (`a.safetensors` holding `x`, `b.safetensors` holding `y`)
/// in `dir` when missing, then `bytes` as the index `m.safetensors.index.json`, and opens the
/// checkpoint. Errors must name the index or a shard and the field; an accepted index must
/// list every stored tensor exactly once.
///
/// # Errors
///
/// The violated contract.
pub fn shard_index(dir: &Path, bytes: &[u8]) -> Result<(), Violation> {
    for (file, name) in [("a.safetensors", "x"), ("b.safetensors", "y")] {
        let p = dir.join(file);
        if !p.exists() {
            let mut w = ShardWriter::with_reserve(&p, 0).map_err(|e| e.to_string())?;
            w.add(name, "F32", &[1], &f32_bytes(&[1.0]))
                .map_err(|e| e.to_string())?;
            commit(vec![w.assemble().map_err(|e| e.to_string())?]).map_err(|e| e.to_string())?;
        }
    }
    let idx = dir.join("m.safetensors.index.json");
    std::fs::write(&idx, bytes).map_err(|e| format!("cannot write the input: {e}"))?;
    match open_checkpoint(&idx) {
        Ok(files) => {
            let n: usize = files.iter().map(|f| f.tensors.len()).sum();
            let listed = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("weight_map")?.as_object().map(serde_json::Map::len));
            if listed != Some(n) {
                return Err(format!(
                    "accepted an index listing {listed:?} tensors for {n} stored"
                ));
            }
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            let named = match &e {
                CheckpointError::Format { path, field, .. } => {
                    !field.is_empty()
                        && (path.ends_with("m.safetensors.index.json")
                            || path.ends_with(".safetensors"))
                }
                CheckpointError::Io { path, .. } => !path.is_empty(),
                _ => false,
            };
            if named {
                Ok(())
            } else {
                Err(format!("error does not name the file and field: {msg}"))
            }
        }
    }
}

/// Described tensors above this many values (256 MiB as f32) are not restored to a file by
/// [`tensor_description`]: only their first block is decoded (a few stored rows may describe a
/// huge tensor, which `dequantize` would write out in full, as asked).
const LARGE: usize = 1 << 26;

/// Decodes the first block of a large described tensor: memory must stay at the parts plus
/// one block (the fuzzer's `-malloc_limit_mb` catches anything else), errors must name a field.
fn first_block_only(p: &Path, meta: &crate::format::TensorMeta) -> Result<(), Violation> {
    let mut f = SafetensorsFile::open(p).map_err(|e| e.to_string())?;
    let block = 1 << 16;
    let mut first = None;
    let r = decode_blocks(meta, &mut f, block, &mut |b| {
        first = Some(b.len());
        Err("stop".into())
    });
    match (r, first) {
        (Err(e), None) if !e.is_empty() => Ok(()),
        (Err(_), Some(n)) => {
            let cols = meta.shape.iter().skip(1).product::<usize>().max(1);
            if n <= block.max(cols) {
                Ok(())
            } else {
                Err(format!("first block of {n} values for blocks of {block}"))
            }
        }
        (r, _) => Err(format!("a large tensor was decoded whole: {r:?}")),
    }
}

/// The parts stored beside a fuzzed description: one small tensor for every part name the
/// encodings use, so any description can find parts to decode (or to be refused over).
fn parts() -> Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)> {
    vec![
        ("w.__codes", "U8", vec![4], vec![0x1b, 0xe4, 0x80, 0x7f]),
        ("w.__scales", "F32", vec![2], f32_bytes(&[0.5, 0.25])),
        ("w.__zeros", "U8", vec![1], vec![0x21]),
        (
            "w.__codebook",
            "F32",
            vec![4],
            f32_bytes(&[-1.0, 0.0, 0.5, 2.0]),
        ),
        ("w.__lengths", "U8", vec![4], vec![1, 2, 3, 3]),
        ("w.__mask", "U8", vec![1], vec![0b1010_0101]),
        (
            "w.__values",
            "F32",
            vec![4],
            f32_bytes(&[1.0, -2.0, 3.0, 4.0]),
        ),
        (
            "w.__half",
            "F16",
            vec![2, 2],
            vec![0, 0x3c, 0, 0xc0, 0, 0x40, 0, 0],
        ),
        ("w.__rows", "U32", vec![2], u32_bytes(&[0, 2])),
        (
            "w.__kept",
            "F32",
            vec![2, 2],
            f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
        ),
        ("w.__u", "F32", vec![4, 1], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
        (
            "w.__v",
            "F32",
            vec![1, 4],
            f32_bytes(&[0.5, -1.0, 1.5, 2.0]),
        ),
    ]
}

/// Writes `dir/c.safetensors` holding every part of `parts` and the metadata
/// `netcompress.format = version`, `netcompress.tensor.w = description`, checks the
/// description parser, then dequantizes the file to `dir/d.safetensors`. Errors must name
/// the file and the field and leave no output; an accepted file must restore `w` with the
/// described shape. A description of more than 2^26 values is decoded only up to its first
/// block, which must stay one block.
///
/// # Errors
///
/// The violated contract.
pub fn tensor_description(dir: &Path, version: &str, description: &str) -> Result<(), Violation> {
    let mut md = BTreeMap::new();
    md.insert(FORMAT_KEY.to_string(), version.to_string());
    md.insert(format!("{TENSOR_KEY_PREFIX}w"), description.to_string());
    match tensor_metas(&md) {
        Ok(metas) if version == "1" && metas.contains_key("w") => {}
        Ok(_) => return Err("accepted an unknown format version".into()),
        Err((field, reason)) => {
            if !field.starts_with("__metadata__.") || reason.is_empty() {
                return Err(format!("unclear metadata error: {field}: {reason}"));
            }
        }
    }
    let p = dir.join("c.safetensors");
    let out = dir.join("d.safetensors");
    for f in [&p, &out] {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
            _ => {}
        }
    }
    let mut w = ShardWriter::with_reserve(&p, 0).map_err(|e| e.to_string())?;
    for (name, dtype, shape, bytes) in parts() {
        w.add(name, dtype, &shape, &bytes)
            .map_err(|e| e.to_string())?;
    }
    w.set_metadata(FORMAT_KEY, version);
    w.set_metadata(format!("{TENSOR_KEY_PREFIX}w"), description);
    commit(vec![w.assemble().map_err(|e| e.to_string())?]).map_err(|e| e.to_string())?;
    let described = tensor_metas(&md).ok().and_then(|m| m.get("w").cloned());
    if let Some(meta) = described.filter(|m| {
        m.shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_some_and(|n| n > LARGE)
    }) {
        return first_block_only(&p, &meta);
    }
    match dequantize_file(&p, &out) {
        Ok(_) => {
            let meta = &tensor_metas(&md).map_err(|e| e.1)?["w"];
            let back = SafetensorsFile::open(&out).map_err(|e| e.to_string())?;
            let t = back.tensors.iter().find(|t| t.name == "w");
            if t.map(|t| &t.shape) != Some(&meta.shape) {
                return Err(format!(
                    "restored `w` as {:?}, described as {:?}",
                    t.map(|t| &t.shape),
                    meta.shape
                ));
            }
            Ok(())
        }
        Err(e) => {
            if out.exists() {
                return Err(format!("an output was left behind after: {e}"));
            }
            if e.to_string().contains("c.safetensors") {
                Ok(())
            } else {
                Err(format!("error does not name the file: {e}"))
            }
        }
    }
}
