//! Sharded checkpoints: a `*.safetensors.index.json` whose `weight_map` names the shard file of
//! every tensor (the Hugging Face layout).
//!
//! The index is checked against the shards: shard names must be plain file names that stay in
//! the index's directory (a symlink pointing elsewhere is refused), every tensor the
//! `weight_map` names must be in the shard it names, and no tensor may be stored in two shards
//! or be missing from the `weight_map`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{CheckpointError, Result};
use crate::reader::SafetensorsFile;

/// Whether `path` names a shard index (`*.index.json`).
pub fn is_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".index.json"))
}

/// The parsed `weight_map` of an index: `(tensor, shard file name)` pairs.
fn weight_map(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::format(path, "index", format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| CheckpointError::format(path, "weight_map", "missing or not an object"))?;
    let mut out = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let field = || format!("weight_map.{tensor}");
        let file = file
            .as_str()
            .ok_or_else(|| CheckpointError::format(path, field(), "not a file name"))?;
        if file.is_empty() || file.contains('/') || file.contains('\\') || file == ".." {
            return Err(CheckpointError::format(
                path,
                field(),
                format!("shard name `{file}` must be a plain file name"),
            ));
        }
        out.push((tensor.clone(), file.to_string()));
    }
    Ok(out)
}

/// The shard files of a checkpoint: the file itself, or for a `*.index.json` every file its
/// `weight_map` names (sorted), resolved beside the index.
///
/// # Errors
///
/// [`CheckpointError::Io`] when the index cannot be read; [`CheckpointError::Format`] for a
/// malformed index, a shard name that is not a plain file name, or a shard that resolves
/// (through a symlink) outside the index's directory.
pub fn shard_paths(path: &Path) -> Result<Vec<PathBuf>> {
    if !is_index(path) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let canon_dir = dir
        .canonicalize()
        .map_err(|e| CheckpointError::io(dir, e))?;
    let mut out: Vec<PathBuf> = Vec::new();
    for (tensor, file) in weight_map(path)? {
        let p = dir.join(&file);
        if out.contains(&p) {
            continue;
        }
        if let Ok(c) = p.canonicalize()
            && c.parent() != Some(canon_dir.as_path())
        {
            return Err(CheckpointError::format(
                path,
                format!("weight_map.{tensor}"),
                format!(
                    "shard `{file}` resolves to {} outside the checkpoint directory {}",
                    c.display(),
                    canon_dir.display()
                ),
            ));
        }
        out.push(p);
    }
    out.sort();
    Ok(out)
}

/// Checks the `weight_map` of `index` against the opened `shards`.
///
/// # Errors
///
/// [`CheckpointError::Format`] naming the index and the tensor when a tensor is stored in two
/// shards, the `weight_map` names a tensor its shard does not hold, or a shard holds a tensor
/// the `weight_map` does not list.
pub fn check_index(index: &Path, shards: &[SafetensorsFile]) -> Result<()> {
    let map = weight_map(index)?;
    let mut stored: HashMap<&str, &Path> = HashMap::new();
    for f in shards {
        for t in &f.tensors {
            if let Some(first) = stored.insert(t.name.as_str(), f.path()) {
                return Err(CheckpointError::format(
                    index,
                    format!("tensor `{}`", t.name),
                    format!(
                        "stored in two shards: {} and {}",
                        first.display(),
                        f.path().display()
                    ),
                ));
            }
        }
    }
    let mut listed = 0usize;
    for (tensor, file) in &map {
        let in_shard = stored
            .get(tensor.as_str())
            .is_some_and(|p| p.file_name().and_then(|n| n.to_str()) == Some(file.as_str()));
        if !in_shard {
            return Err(CheckpointError::format(
                index,
                format!("weight_map.{tensor}"),
                format!("names shard `{file}`, which does not hold this tensor"),
            ));
        }
        listed += 1;
    }
    if listed != stored.len() {
        let missing = stored
            .keys()
            .find(|n| !map.iter().any(|(t, _)| t == *n))
            .copied()
            .unwrap_or_default();
        return Err(CheckpointError::format(
            index,
            format!("tensor `{missing}`"),
            "stored in a shard but not listed in weight_map",
        ));
    }
    Ok(())
}

/// Opens every shard of a checkpoint (a file or an index), validating every header, and for
/// an index its `weight_map` against the shards, before anything is read.
///
/// # Errors
///
/// As [`shard_paths`], [`SafetensorsFile::open`] and [`check_index`].
pub fn open_checkpoint(path: &Path) -> Result<Vec<SafetensorsFile>> {
    let files = shard_paths(path)?
        .iter()
        .map(|p| SafetensorsFile::open(p))
        .collect::<Result<Vec<_>>>()?;
    if is_index(path) {
        check_index(path, &files)?;
    }
    Ok(files)
}
