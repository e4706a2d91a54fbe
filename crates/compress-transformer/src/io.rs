//! Loading and saving Hugging Face model directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use compress_core::{CoreError, Float, Module, Param, ParamPath};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};
use safetensors::tensor::SafeTensors;
use serde_json::Value;

use crate::{BertConfig, BertModel, Result, TransformerError};

/// Checkpoint tensors that are not parameters and are ignored on load: the position id
/// buffer older `transformers` versions saved.
pub const IGNORED_KEYS: &[&str] = &["embeddings.position_ids"];

/// `model.safetensors` or, for a sharded checkpoint, the shard files named by
/// `model.safetensors.index.json`'s `weight_map`.
fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(TransformerError::io(
            &single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither model.safetensors nor model.safetensors.index.json exists",
            ),
        ));
    }
    let text = std::fs::read_to_string(&index).map_err(|e| TransformerError::io(&index, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| TransformerError::format(&index, e))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| TransformerError::format(&index, "no `weight_map` object"))?;
    let mut files: Vec<String> = Vec::new();
    for (key, f) in map {
        let f = f.as_str().ok_or_else(|| {
            TransformerError::format(&index, format!("weight_map[`{key}`] is not a file name"))
        })?;
        if f.contains('/') || f.contains('\\') || f.starts_with('.') {
            return Err(TransformerError::format(
                &index,
                format!("weight_map[`{key}`] = `{f}` is not a plain file name"),
            ));
        }
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    files.sort();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Every tensor of the checkpoint (one file or all shards), decoded to `F`, by name;
/// keys of [`IGNORED_KEYS`] are skipped and a `bert.` prefix is removed.
fn read_tensors<F: Float>(files: &[PathBuf]) -> Result<BTreeMap<String, (PathBuf, ArrayD<F>)>> {
    let mut out = BTreeMap::new();
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| TransformerError::io(file, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| TransformerError::format(file, e))?;
        for (name, view) in st.tensors() {
            let key = name.strip_prefix("bert.").unwrap_or(&name).to_string();
            if IGNORED_KEYS.contains(&key.as_str()) {
                continue;
            }
            let values =
                compress_nn::io::decode_tensor::<F>(&file.display().to_string(), &name, &view)
                    .map_err(|e| TransformerError::format(file, e))?;
            let a = ArrayD::from_shape_vec(IxDyn(view.shape()), values).map_err(CoreError::from)?;
            if out.insert(key.clone(), (file.clone(), a)).is_some() {
                return Err(TransformerError::format(
                    file,
                    format!("tensor `{key}` appears more than once"),
                ));
            }
        }
    }
    Ok(out)
}

impl<F: Float> BertModel<F> {
    /// Loads a Hugging Face model directory: `config.json` and `model.safetensors` (or a
    /// sharded `model.safetensors.index.json`). The pooler is loaded when the checkpoint
    /// has one (`pooler.dense.*`); `embeddings.position_ids` is ignored; a `bert.` prefix
    /// on every name (checkpoints of `BertFor*` heads) is accepted.
    ///
    /// # Errors
    ///
    /// [`TransformerError::Io`] for a missing file, [`TransformerError::Format`] for a
    /// truncated or corrupt file, [`TransformerError::Unsupported`] for a config of another
    /// architecture, [`TransformerError::UnknownKey`] / [`TransformerError::MissingKey`] /
    /// [`TransformerError::Tensor`] naming the tensor.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg = BertConfig::from_file(&dir.join("config.json"))?;
        let files = checkpoint_files(dir)?;
        let tensors = read_tensors::<F>(&files)?;
        let pooler = tensors.contains_key("pooler.dense.weight");
        // Initialised to zeros below: a fixed seed keeps construction deterministic.
        let mut model = Self::new(&cfg, pooler, &mut StdRng::seed_from_u64(0))?;
        model.load_tensors(tensors, &dir.display().to_string())?;
        Ok(model)
    }

    /// Sets every parameter from `tensors`; all must be used.
    fn load_tensors(
        &mut self,
        mut tensors: BTreeMap<String, (PathBuf, ArrayD<F>)>,
        source: &str,
    ) -> Result<()> {
        let mut failure: Option<TransformerError> = None;
        let res = self.visit_mut(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &mut Param<F>| {
                let key = path.to_string();
                let Some((_, a)) = tensors.remove(&key) else {
                    failure = Some(TransformerError::MissingKey {
                        key: key.clone(),
                        path: source.to_string(),
                    });
                    return Err(CoreError::MissingParam { path: key });
                };
                if a.shape() != p.shape() {
                    failure = Some(TransformerError::Tensor {
                        key: key.clone(),
                        expected: format!("shape {:?}", p.shape()),
                        actual: format!("shape {:?}", a.shape()),
                    });
                    return Err(CoreError::shape(key, p.shape(), a.shape()));
                }
                p.reset(a);
                Ok(())
            },
        );
        if let Err(e) = res {
            return Err(failure.take().unwrap_or(TransformerError::Core(e)));
        }
        if let Some((key, (file, _))) = tensors.into_iter().next() {
            return Err(TransformerError::UnknownKey {
                key,
                path: file.display().to_string(),
            });
        }
        Ok(())
    }

    /// Writes `config.json` and `model.safetensors` (effective values, `f32` for an `f32`
    /// model, `f64` otherwise) into `dir`, creating it; each file is written atomically.
    /// Tokenizer files are not touched (see [`copy_tokenizer_files`]).
    ///
    /// # Errors
    ///
    /// [`TransformerError::Io`] naming the file that could not be written.
    pub fn save_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TransformerError::io(dir, e))?;
        let cfg = serde_json::to_string_pretty(&self.config.to_json())
            .map_err(|e| TransformerError::format(&dir.join("config.json"), e))?;
        write_atomic(&dir.join("config.json"), cfg.as_bytes())?;
        let bytes = compress_nn::io::to_safetensors_bytes(self as &dyn Module<F>)
            .map_err(|e| TransformerError::format(&dir.join("model.safetensors"), e.to_string()))?;
        write_atomic(&dir.join("model.safetensors"), &bytes)
    }
}

/// The files beside the weights that a sentence encoder needs (tokenizer and
/// sentence-transformers settings).
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];

/// Copies the [`TOKENIZER_FILES`] that exist in `from` into `to` (so a compressed model
/// directory loads as a sentence encoder like the original).
///
/// # Errors
///
/// [`TransformerError::Io`] naming the file.
pub fn copy_tokenizer_files(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    for name in TOKENIZER_FILES {
        let src = from.join(name);
        if src.is_file() {
            let dst = to.join(name);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| TransformerError::io(parent, e))?;
            }
            let bytes = std::fs::read(&src).map_err(|e| TransformerError::io(&src, e))?;
            write_atomic(&dst, &bytes)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(TransformerError::io(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TransformerError::io(path, e)
    })
}

/// Total size in bytes of the regular files directly in `dir` and in its `1_Pooling`
/// folder (a model directory's size on disk).
///
/// # Errors
///
/// [`TransformerError::Io`] naming the directory.
pub fn dir_bytes(dir: impl AsRef<Path>) -> Result<u64> {
    fn sum(dir: &Path, depth: usize) -> Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| TransformerError::io(dir, e))? {
            let entry = entry.map_err(|e| TransformerError::io(dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| TransformerError::io(&entry.path(), e))?;
            if meta.is_file() {
                total += meta.len();
            } else if meta.is_dir() && depth > 0 {
                total += sum(&entry.path(), depth - 1)?;
            }
        }
        Ok(total)
    }
    sum(dir.as_ref(), 1)
}
