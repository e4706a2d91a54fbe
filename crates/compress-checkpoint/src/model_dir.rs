//! Compressed transformer model directories: a Hugging Face BERT directory whose linear
//! layers are stored in the checkpoint [format](crate::format) and run, once loaded, on
//! their compressed kernels (int8 with dynamic activations, int4 / intN weight-only), not
//! dequantized back to f32.
//!
//! A directory holds `config.json`, the tokenizer and sentence-transformers files of the
//! original, and `model.safetensors` in the netcompress format: each compressed layer's
//! `weight` as a described tensor (`netcompress.tensor.PATH.weight`), its bias and every
//! other parameter as F32, and one kernel marker per compressed layer,
//! `netcompress.kernel.PATH` = the kernel's name (`int8-dynamic`, `int4-weight-only`,
//! `intn-weight-only`, `sparse-2:4`); a layer with an explicit AWQ / SmoothQuant input scale
//! also has `PATH.input_scale` (F32 `[in]`, the factor its input is multiplied by). A
//! directory without `netcompress.format` in its weights' metadata is an ordinary model
//! directory and loads as one.
//!
//! Loading checks each marker against the kernel its stored weight runs on and refuses an
//! unknown marker with a [`CheckpointError::Format`] naming it. `int8-dynamic` layers (int8
//! symmetric per-channel weights) run on [`compress_quant::DynamicQLinear`], the per-token
//! dynamic int8 layer of the fast W8A8 encoder; directories written before it existed
//! store the same weights under the same marker and load onto it unchanged.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use compress_core::surgery::replace_layer;
use compress_core::{Layer, Module, Param, ParamPath};
use compress_prune::{NmMatrix, Sparse24Linear};
use compress_quant::calibrated::{InputScaled, QuantizedLinear, kernel_name, quantized_layer};
use compress_quant::{QuantScheme, QuantizedParam};
use compress_transformer::io::copy_tokenizer_files;
use compress_transformer::{BertConfig, BertModel, SentenceEncoder};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

use crate::decode::decode_qtensor;
use crate::error::{CheckpointError, Result};
use crate::format::{
    COMMAND_KEY, Encoding, FORMAT_KEY, FORMAT_VERSION, TENSOR_KEY_PREFIX, TensorMeta, tensor_metas,
};
use crate::model::describe;
use crate::reader::{SafetensorsFile, bytes_to_f32};
use crate::tempfiles;
use crate::writer::{ShardWriter, commit, f32_bytes};

/// Metadata key prefix of the kernel markers (`netcompress.kernel.LAYER_PATH`).
pub const KERNEL_KEY_PREFIX: &str = "netcompress.kernel.";

/// The per-feature input factor of a layer with an explicit AWQ / SmoothQuant scale
/// (`PATH.input_scale`, F32 `[in]`: the layer runs on `x * input_scale`).
const INPUT_SCALE: &str = "input_scale";

/// The weights file of a model directory.
const WEIGHTS: &str = "model.safetensors";

/// A compressed model directory being built: `.OUT.partial-<pid>` beside the output `out`,
/// created by [`PartialDir::begin`] before any long work (so a bad output location fails at
/// once), filled and renamed into place by [`PartialDir::finish`]. Until then it is removed
/// when dropped (any error), on SIGINT/SIGTERM ([`crate::interrupt_writes`]), and, if the
/// process was killed outright, by the next `begin` for the same output.
#[derive(Debug)]
pub struct PartialDir {
    source: PathBuf,
    out: PathBuf,
    tmp: PathBuf,
    force: bool,
    done: bool,
}

impl PartialDir {
    /// Checks the output and creates its temporary directory. `source` is the original
    /// model directory (its tokenizer files are copied).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Output`] when `out` exists (without `force`), is `source`, or is
    /// not a directory; [`CheckpointError::Io`] when the temporary directory cannot be
    /// created; [`CheckpointError::Interrupted`] after an interrupt.
    pub fn begin(source: &Path, out: &Path, force: bool) -> Result<Self> {
        if let Ok(m) = std::fs::symlink_metadata(out) {
            if !force {
                return Err(CheckpointError::output(
                    out,
                    "exists (use --force to replace it)",
                ));
            }
            if same_path(source, out) {
                return Err(CheckpointError::output(out, "is the input model directory"));
            }
            if !m.is_dir() {
                return Err(CheckpointError::output(
                    out,
                    "exists and is not a directory; refusing to replace it",
                ));
            }
        }
        tempfiles::sweep_stale_dirs(out);
        let tmp = tempfiles::partial_dir(out);
        tempfiles::create_dir(&tmp)?;
        Ok(Self {
            source: source.to_path_buf(),
            out: out.to_path_buf(),
            tmp,
            force,
            done: false,
        })
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Writes `model` with its `layers` compressed into the temporary directory and renames
    /// it to the output (replacing an existing one only now, with `force`). `command` is
    /// recorded in the metadata.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] naming the file that could not be written;
    /// [`CheckpointError::Interrupted`]; the temporary directory is removed on any error.
    pub fn finish(
        mut self,
        model: &BertModel<f32>,
        layers: &[QuantizedLinear],
        command: &str,
    ) -> Result<()> {
        write_dir(&self.source, &self.tmp, model, layers, command)?;
        let (tmp, out, force) = (&self.tmp, &self.out, self.force);
        tempfiles::while_locked(|live| {
            if force && out.exists() {
                std::fs::remove_dir_all(out).map_err(|e| CheckpointError::io(out, e))?;
            }
            std::fs::rename(tmp, out).map_err(|e| CheckpointError::io(out, e))?;
            live.retain(|p| p != tmp);
            Ok(())
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        if !self.done {
            tempfiles::remove(&self.tmp);
        }
    }
}

/// Writes `model` with its `layers` compressed as a model directory `out`, copying the
/// tokenizer and sentence-transformers files of `source` (the original directory).
/// `command` is recorded in the metadata.
///
/// [`PartialDir::begin`] then [`PartialDir::finish`]: the directory is built beside `out`
/// under a temporary name and renamed into place when complete; on any error or interrupt
/// it is removed, so nothing is left behind. An existing `out` is refused unless `force`
/// (then it is replaced only after the new one is complete).
///
/// # Errors
///
/// As [`PartialDir::begin`] and [`PartialDir::finish`].
pub fn save_compressed_dir(
    source: &Path,
    out: &Path,
    model: &BertModel<f32>,
    layers: &[QuantizedLinear],
    command: &str,
    force: bool,
) -> Result<()> {
    PartialDir::begin(source, out, force)?.finish(model, layers, command)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write_dir(
    source: &Path,
    dir: &Path,
    model: &BertModel<f32>,
    layers: &[QuantizedLinear],
    command: &str,
) -> Result<()> {
    // `dir` exists (PartialDir::begin); it is not recreated here, so a directory removed by
    // an interrupt stays removed.
    let cfg = serde_json::to_string_pretty(&model.config.to_json())?;
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, cfg).map_err(|e| CheckpointError::io(&cfg_path, e))?;
    copy_tokenizer_files(source, dir)?;
    let by_weight: BTreeMap<String, &QuantizedLinear> = layers
        .iter()
        .map(|l| (format!("{}.weight", l.path), l))
        .collect();
    let mut w = ShardWriter::with_reserve(&dir.join(WEIGHTS), 0)?;
    w.set_metadata(FORMAT_KEY, FORMAT_VERSION);
    w.set_metadata(COMMAND_KEY, command);
    let mut failure = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &Param<f32>| {
            if failure.is_some() {
                return;
            }
            let path = p.to_string();
            let res = match by_weight.get(&path) {
                Some(l) => add_compressed(&mut w, &path, l),
                None => {
                    let v = param.effective();
                    let values: Vec<f32> = v.iter().copied().collect();
                    w.add(&path, "F32", v.shape(), &f32_bytes(&values))
                }
            };
            failure = res.err();
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    for l in layers {
        if let Some(f) = &l.input_scale {
            w.add(
                &format!("{}.{INPUT_SCALE}", l.path),
                "F32",
                &[f.len()],
                &f32_bytes(f),
            )?;
        }
    }
    commit(vec![w.assemble()?])
}

fn add_compressed(w: &mut ShardWriter, path: &str, l: &QuantizedLinear) -> Result<()> {
    let q = QuantizedParam {
        path: path.to_string(),
        shape: l.weight.shape().to_vec(),
        tensor: l.weight.clone(),
    };
    let (meta, parts) = describe(&q)?;
    for p in &parts {
        w.add(&p.name, p.dtype.name(), &p.shape, &p.bytes)?;
    }
    w.set_metadata(
        format!("{TENSOR_KEY_PREFIX}{path}"),
        serde_json::to_string(&meta)?,
    );
    w.set_metadata(
        format!("{KERNEL_KEY_PREFIX}{}", l.path),
        kernel_name(&l.weight),
    );
    Ok(())
}

/// Whether `dir` holds a compressed model directory (its weights carry the netcompress
/// format key).
///
/// # Errors
///
/// A weights file that exists but cannot be read.
pub fn is_compressed_dir(dir: &Path) -> Result<bool> {
    let path = dir.join(WEIGHTS);
    if !path.is_file() {
        return Ok(false);
    }
    Ok(SafetensorsFile::open(&path)?
        .metadata
        .contains_key(FORMAT_KEY))
}

/// The kernel markers this version writes and runs.
pub const KNOWN_KERNELS: [&str; 4] = [
    "int8-dynamic",
    "int4-weight-only",
    "intn-weight-only",
    SPARSE24_KERNEL,
];

/// Checks a layer's kernel marker against the kernel its stored weight runs on.
fn check_marker(file: &SafetensorsFile, path: &str, marker: &str, kernel: &str) -> Result<()> {
    if marker == kernel {
        return Ok(());
    }
    let reason = if KNOWN_KERNELS.contains(&marker) {
        format!("marks the layer `{marker}`, but its stored weight runs on `{kernel}`")
    } else {
        format!(
            "unknown kernel `{marker}` (this version runs {}); written by a newer netcompress?",
            KNOWN_KERNELS.join(", ")
        )
    };
    Err(CheckpointError::format(
        file.path(),
        format!("__metadata__.{KERNEL_KEY_PREFIX}{path}"),
        reason,
    ))
}

/// The inference layer of one compressed linear layer: one match on the stored encoding of
/// its weight, checked against the layer's kernel `marker`. `path` names the layer in
/// errors.
fn compressed_linear(
    file: &mut SafetensorsFile,
    path: &str,
    marker: &str,
    meta: &TensorMeta,
    bias: Option<Vec<f32>>,
) -> Result<Box<dyn Layer<f32>>> {
    let field = || format!("tensor `{path}.weight`");
    match &meta.encoding {
        Encoding::Int { .. } => {
            let q = decode_qtensor(meta, file)
                .map_err(|r| CheckpointError::format(file.path(), field(), r))?
                .ok_or_else(|| {
                    CheckpointError::format(file.path(), field(), "not an int tensor")
                })?;
            if !matches!(q.scheme(), QuantScheme::Int(_)) || q.shape().len() != 2 {
                return Err(CheckpointError::format(
                    file.path(),
                    field(),
                    "not a 2-D int weight",
                ));
            }
            check_marker(file, path, marker, kernel_name(&q))?;
            Ok(quantized_layer(q, bias)?)
        }
        Encoding::Sparse { mask, values, .. } => {
            check_marker(file, path, marker, SPARSE24_KERNEL)?;
            let fpath = file.path().to_path_buf();
            let bad = |r: &str| CheckpointError::format(&fpath, field(), r.to_string());
            let &[rows, cols] = meta.shape.as_slice() else {
                return Err(bad("a sparse linear weight must be 2-D"));
            };
            let info = |n: &str| file.tensors.iter().find(|t| t.name == n).cloned();
            let (Some(mi), Some(vi)) = (info(mask), info(values)) else {
                return Err(bad("a part of the sparse weight is missing"));
            };
            let mask = file.read_raw(&mi)?;
            let values = file.read_f32_lean(&vi)?;
            let m = nm24_from_mask(rows, cols, &mask, values, &format!("{path}.weight"))
                .ok_or_else(|| bad("not 2:4 (every group of four inputs must keep exactly two)"))?;
            let bias = bias
                .map(|b| ArrayD::from_shape_vec(IxDyn(&[b.len()]), b))
                .transpose()
                .map_err(|e| bad(&e.to_string()))?;
            Ok(Box::new(Sparse24Linear::new(m, bias)?))
        }
        other => Err(CheckpointError::format(
            file.path(),
            field(),
            format!("no inference kernel for the `{}` encoding", other.label()),
        )),
    }
}

/// The kernel marker of a 2:4 layer ([`Sparse24Linear`], weight stored as a `sparse`
/// tensor).
pub const SPARSE24_KERNEL: &str = "sparse-2:4";

/// The keep bitmask (bit `i` of byte `i / 8`, LSB first) of a 2:4 matrix: for 2:4, one bit
/// per weight is exactly two 2-bit positions per kept pair.
pub fn nm24_mask(w: &NmMatrix<f32>) -> Vec<u8> {
    let (rows, cols) = w.dim();
    let mut mask = vec![0u8; (rows * cols).div_ceil(8)];
    for q in 0..w.values().len() {
        let i = q / 2 * 4 + w.position(q);
        mask[i / 8] |= 1 << (i % 8);
    }
    mask
}

/// The 2:4 matrix of a keep bitmask and the kept values (row-major), `None` when the sizes
/// do not match or some group of four does not keep exactly two.
pub fn nm24_from_mask(
    rows: usize,
    cols: usize,
    mask: &[u8],
    values: Vec<f32>,
    name: &str,
) -> Option<NmMatrix<f32>> {
    let len = rows.checked_mul(cols)?;
    if !cols.is_multiple_of(4) || values.len() != len / 2 || mask.len() != len.div_ceil(8) {
        return None;
    }
    let mut positions = vec![0u8; (len / 4).div_ceil(2)];
    for g in 0..len / 4 {
        let nib = (mask[g / 2] >> ((g % 2) * 4)) & 15;
        if nib.count_ones() != 2 {
            return None;
        }
        let p0 = nib.trailing_zeros() as u8;
        let p1 = (nib & !(1 << p0)).trailing_zeros() as u8;
        positions[g / 2] |= (p0 | (p1 << 2)) << ((g % 2) * 4);
    }
    NmMatrix::from_parts(rows, cols, 2, 4, values, positions, name).ok()
}

/// Reads the F32 (or other float) tensor `name` stored as it is.
fn plain_tensor(file: &mut SafetensorsFile, name: &str) -> Result<Option<ArrayD<f32>>> {
    let Some(t) = file.tensors.iter().find(|t| t.name == name).cloned() else {
        return Ok(None);
    };
    if !t.dtype.is_float() {
        return Err(CheckpointError::format(
            file.path(),
            format!("tensor `{name}`.dtype"),
            format!("{} is not a float dtype", t.dtype.name()),
        ));
    }
    let raw = file.read_raw(&t)?;
    let a = ArrayD::from_shape_vec(IxDyn(&t.shape), bytes_to_f32(&raw, t.dtype)).map_err(|e| {
        CheckpointError::format(file.path(), format!("tensor `{name}`"), e.to_string())
    })?;
    Ok(Some(a))
}

/// Loads a compressed model directory's BERT model with every marked layer on its compressed
/// kernel.
///
/// # Errors
///
/// [`CheckpointError::Format`] naming the file and tensor for a missing, extra or malformed
/// tensor or marker; the config's errors.
pub fn load_compressed_bert(dir: &Path) -> Result<BertModel<f32>> {
    let cfg = BertConfig::from_file(&dir.join("config.json"))?;
    let path: PathBuf = dir.join(WEIGHTS);
    let mut file = SafetensorsFile::open(&path)?;
    let metas = tensor_metas(&file.metadata)
        .map_err(|(field, r)| CheckpointError::format(&path, field, r))?;
    let markers: Vec<(String, String)> = file
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(KERNEL_KEY_PREFIX)
                .map(|l| (l.to_string(), v.clone()))
        })
        .collect();
    let kernels: Vec<String> = markers.iter().map(|(l, _)| l.clone()).collect();
    let pooler = file.tensors.iter().any(|t| t.name == "pooler.dense.weight");
    let mut model = BertModel::<f32>::new(&cfg, pooler, &mut StdRng::seed_from_u64(0))?;
    let mut used: HashSet<String> = HashSet::new();
    for (layer, marker) in &markers {
        let wname = format!("{layer}.weight");
        let meta = metas.get(&wname).ok_or_else(|| {
            CheckpointError::format(
                &path,
                format!("__metadata__.{KERNEL_KEY_PREFIX}{layer}"),
                format!("marks a layer whose weight `{wname}` is not described"),
            )
        })?;
        let bias_name = format!("{layer}.bias");
        let bias = plain_tensor(&mut file, &bias_name)?.map(|b| b.iter().copied().collect());
        let mut l = compressed_linear(&mut file, layer, marker, meta, bias)?;
        let scale_name = format!("{layer}.{INPUT_SCALE}");
        if let Some(f) = plain_tensor(&mut file, &scale_name)? {
            l = Box::new(InputScaled::new(f.iter().copied().collect(), l));
            used.insert(scale_name);
        }
        replace_layer(&mut model, layer, l).map_err(|e| {
            CheckpointError::format(
                &path,
                format!("__metadata__.{KERNEL_KEY_PREFIX}{layer}"),
                e.to_string(),
            )
        })?;
        used.insert(wname);
        used.insert(bias_name);
    }
    let mut failure = None;
    let res = model.visit_mut(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &mut Param<f32>| {
            let name = p.to_string();
            // A compressed layer's own parameters (e.g. a 2:4 layer's kept values) came from
            // its described weight.
            if kernels.iter().any(|l| {
                name.strip_prefix(l.as_str())
                    .is_some_and(|r| r.starts_with('.'))
            }) {
                return Ok(());
            }
            match plain_tensor(&mut file, &name) {
                Ok(Some(a)) if a.shape() == param.shape() => {
                    param.reset(a);
                    used.insert(name);
                    Ok(())
                }
                Ok(found) => {
                    let reason = match found {
                        Some(a) => format!("shape {:?}, expected {:?}", a.shape(), param.shape()),
                        None => "missing".to_string(),
                    };
                    failure = Some(CheckpointError::format(
                        &path,
                        format!("tensor `{name}`"),
                        reason,
                    ));
                    Err(compress_core::CoreError::MissingParam { path: name })
                }
                Err(e) => {
                    failure = Some(e);
                    Err(compress_core::CoreError::MissingParam { path: name })
                }
            }
        },
    );
    if let Err(e) = res {
        return Err(failure.unwrap_or(CheckpointError::Core(e)));
    }
    let parts: HashSet<&str> = metas.values().flat_map(|m| m.encoding.parts()).collect();
    if let Some(extra) = file
        .tensors
        .iter()
        .find(|t| !used.contains(&t.name) && !parts.contains(t.name.as_str()))
    {
        return Err(CheckpointError::format(
            &path,
            format!("tensor `{}`", extra.name),
            "is not a parameter of the model",
        ));
    }
    // W8A8 projections of one attention block quantize their common input once.
    compress_quant::share_attention_inputs(&mut model)
        .map_err(|e| CheckpointError::format(&path, "attention input sharing", e.to_string()))?;
    Ok(model)
}

/// A sentence encoder for `dir`: a compressed model directory on its compressed kernels
/// ([`load_compressed_bert`]), any other model directory as
/// [`SentenceEncoder::from_dir`] loads it.
///
/// # Errors
///
/// As [`load_compressed_bert`] and [`SentenceEncoder::from_dir`].
pub fn load_sentence_encoder(dir: &Path) -> Result<SentenceEncoder> {
    if is_compressed_dir(dir)? {
        Ok(SentenceEncoder::with_model(
            dir,
            load_compressed_bert(dir)?,
        )?)
    } else {
        Ok(SentenceEncoder::from_dir(dir)?)
    }
}

/// The kernel name of every compressed layer of a directory, by layer path.
///
/// # Errors
///
/// A weights file that cannot be read.
pub fn kernels(dir: &Path) -> Result<BTreeMap<String, String>> {
    let f = SafetensorsFile::open(&dir.join(WEIGHTS))?;
    Ok(f.metadata
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(KERNEL_KEY_PREFIX)
                .map(|p| (p.to_string(), v.clone()))
        })
        .collect())
}
