//! Output paths of a file command: one output file per input shard (and a new index for sharded
//! checkpoints), checked so the input is never overwritten and an existing output needs
//! `--force`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{CheckpointError, Result};
use crate::shards::{is_index, shard_paths};
use crate::tempfiles::check_replaceable;
use crate::writer::{Pending, commit};

/// Input shards paired with their output files.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `(input shard, output shard)` in order.
    pub(crate) shards: Vec<(PathBuf, PathBuf)>,
    /// `(input index, output index)` for sharded checkpoints.
    pub(crate) index: Option<(PathBuf, PathBuf)>,
}

/// The canonical form of a path that may not exist yet (its directory must).
fn canonical(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        return path
            .canonicalize()
            .map_err(|e| CheckpointError::io(path, e));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CheckpointError::output(path, "not a file name"))?;
    Ok(parent
        .canonicalize()
        .map_err(|e| CheckpointError::io(parent, e))?
        .join(name))
}

/// Output shard names for `n` shards written beside the index `out_index`:
/// `STEM-00001-of-0000N.safetensors`, where `STEM` is the index name without
/// `.index.json` and `.safetensors`.
fn shard_names(out_index: &Path, n: usize) -> Vec<PathBuf> {
    let name = out_index
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name.trim_end_matches(".index.json");
    let stem = stem.strip_suffix(".safetensors").unwrap_or(stem);
    (1..=n)
        .map(|i| out_index.with_file_name(format!("{stem}-{i:05}-of-{n:05}.safetensors")))
        .collect()
}

impl Plan {
    /// Plans the outputs of a command reading `input` and writing `output`.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Output`] when a sharded input is not written to an `*.index.json` (or the
    /// reverse), an output would overwrite an input file, or an output exists without
    /// `force`; [`CheckpointError::Io`] / [`CheckpointError::Format`] when the input index cannot be read.
    pub(crate) fn new(input: &Path, output: &Path, force: bool) -> Result<Self> {
        let inputs = shard_paths(input)?;
        let (outputs, index) = match (is_index(input), is_index(output)) {
            (true, true) => (
                shard_names(output, inputs.len()),
                Some((input.to_path_buf(), output.to_path_buf())),
            ),
            (false, false) => (vec![output.to_path_buf()], None),
            (true, false) => {
                return Err(CheckpointError::output(
                    output,
                    format!(
                        "{} is sharded: give an output ending in .safetensors.index.json",
                        input.display()
                    ),
                ));
            }
            (false, true) => {
                return Err(CheckpointError::output(
                    output,
                    format!(
                        "{} is a single file: give an output ending in .safetensors",
                        input.display()
                    ),
                ));
            }
        };
        let mut taken: Vec<PathBuf> = Vec::new();
        for p in inputs.iter().chain(index.as_ref().map(|(i, _)| i)) {
            taken.push(canonical(p)?);
        }
        for p in outputs.iter().chain(index.as_ref().map(|(_, o)| o)) {
            let c = canonical(p)?;
            if taken.contains(&c) {
                return Err(CheckpointError::output(
                    p,
                    "refusing to overwrite the input: the output is an input file",
                ));
            }
            check_replaceable(p)?;
            if p.symlink_metadata().is_ok() && !force {
                return Err(CheckpointError::output(
                    p,
                    "exists (use --force to replace it)",
                ));
            }
            taken.push(c);
        }
        Ok(Self {
            shards: inputs.into_iter().zip(outputs).collect(),
            index,
        })
    }

    /// Adds the index (when the output is sharded) to the assembled shards and commits them
    /// all atomically. Returns the output paths and the bytes of the shards (index excluded).
    ///
    /// # Errors
    ///
    /// Writing the index or committing any file.
    pub(crate) fn commit_outputs(
        &self,
        mut pendings: Vec<Pending>,
        written: &[(PathBuf, Vec<String>, u64)],
    ) -> Result<(Vec<String>, u64)> {
        let shard_bytes = pendings.iter().map(Pending::bytes).sum();
        if let Some(p) = self.write_index(written)? {
            pendings.push(p);
        }
        let outputs = pendings
            .iter()
            .map(|p| p.target().display().to_string())
            .collect();
        commit(pendings)?;
        Ok((outputs, shard_bytes))
    }

    /// The new index for the written shards: the input index's `metadata` object with
    /// `total_size` replaced, and a `weight_map` from every written tensor to its shard.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Format`] when a tensor name appears in two shards; I/O errors.
    pub(crate) fn write_index(
        &self,
        written: &[(PathBuf, Vec<String>, u64)],
    ) -> Result<Option<Pending>> {
        let Some((in_index, out_index)) = &self.index else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(in_index).map_err(|e| CheckpointError::io(in_index, e))?;
        let old: Value = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::format(in_index, "index", format!("not JSON: {e}")))?;
        let mut metadata = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut weight_map = Map::new();
        let mut total = 0u64;
        for (path, names, data_bytes) in written {
            let file = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            total += data_bytes;
            for n in names {
                if weight_map.insert(n.clone(), json!(file)).is_some() {
                    return Err(CheckpointError::format(
                        in_index,
                        format!("tensor `{n}`"),
                        "appears in two shards",
                    ));
                }
            }
        }
        metadata.insert("total_size".to_string(), json!(total));
        let v = json!({"metadata": metadata, "weight_map": weight_map});
        let bytes = serde_json::to_vec_pretty(&v)?;
        Ok(Some(Pending::from_bytes(out_index, &bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_follow_the_index_stem() {
        let n = shard_names(Path::new("/x/out.safetensors.index.json"), 2);
        assert_eq!(n[0], Path::new("/x/out-00001-of-00002.safetensors"));
        assert_eq!(n[1], Path::new("/x/out-00002-of-00002.safetensors"));
    }
}
