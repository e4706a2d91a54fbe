//! [`QuantizedModel`] files in the checkpoint format: what `QuantizedModel::save` writes is what
//! `netcompress dequantize` reads, and what the `netcompress` commands write loads back as a
//! `QuantizedModel`.
//!
//! A model is written as one safetensors file: each quantized parameter as an `int` (or, for
//! float casts, `cast`) tensor of the [format](crate::format), each float parameter as an F32
//! tensor under its path. Loading reads `int` and `cast` tensors back as [`QuantizedParam`]s
//! (bit-exact), every other stored or compressed float tensor as a float parameter (decoded to
//! f32), in file order.
//!
//! compress-quant cannot depend on this crate (this crate encodes with it), so the file
//! functions live here, as [`QuantizedModelFile`] methods: with the trait in scope,
//! `model.save(path)` and `QuantizedModel::load(path)` read as before.

use std::collections::HashSet;
use std::path::Path;

use compress_quant::{QuantScheme, QuantizedModel, QuantizedParam};

use crate::decode::{Part, decode, decode_qtensor};
use crate::encode::int_parts;
use crate::error::{CheckpointError, Result};
use crate::format::{
    COMMAND_KEY, Encoding, FORMAT_KEY, FORMAT_VERSION, TENSOR_KEY_PREFIX, TensorMeta, part_name,
    tensor_metas,
};
use crate::reader::{Dtype, SafetensorsFile, bytes_to_f32};
use crate::writer::{ShardWriter, commit, f32_bytes};

/// The metadata key of the format `QuantizedModel::save` wrote before this crate existed.
const OLD_KEY: &str = "netcompress.quant";

/// The parts and description of one quantized parameter.
pub(crate) fn describe(q: &QuantizedParam) -> Result<(TensorMeta, Vec<Part>)> {
    let t = &q.tensor;
    let name = &q.path;
    let (encoding, parts) = match t.scheme() {
        QuantScheme::Int(s) => {
            let (mut encoding, parts) = int_parts(name, t, s);
            if let Encoding::Int { qshape, .. } = &mut encoding
                && t.shape() != q.shape.as_slice()
            {
                *qshape = Some(t.shape().to_vec());
            }
            (encoding, parts)
        }
        QuantScheme::F16 | QuantScheme::Bf16 => {
            let dtype = if t.scheme() == QuantScheme::F16 {
                Dtype::F16
            } else {
                Dtype::BF16
            };
            let parts = vec![Part {
                name: part_name(name, "values"),
                dtype,
                shape: q.shape.clone(),
                bytes: t.data().to_vec(),
            }];
            (
                Encoding::Cast {
                    values: part_name(name, "values"),
                },
                parts,
            )
        }
        other => {
            return Err(CheckpointError::tensor(
                name,
                &q.shape,
                format!("quantization scheme {other:?} has no file encoding"),
            ));
        }
    };
    let meta = TensorMeta {
        dtype: "F32".into(),
        shape: q.shape.clone(),
        encoding,
    };
    Ok((meta, parts))
}

/// Writes `model` to `path` atomically (temporary file, then rename; nothing is left behind
/// on error or on a signal).
///
/// # Errors
///
/// [`CheckpointError::Format`] for two tensors of the same name; [`CheckpointError::Io`].
pub fn save_quantized_model(model: &QuantizedModel, path: &Path) -> Result<()> {
    let mut w = ShardWriter::with_reserve(path, 0)?;
    w.set_metadata(FORMAT_KEY, FORMAT_VERSION);
    w.set_metadata(COMMAND_KEY, "QuantizedModel::save");
    for q in &model.quantized {
        let (meta, parts) = describe(q)?;
        for p in &parts {
            w.add(&p.name, p.dtype.name(), &p.shape, &p.bytes)?;
        }
        w.set_metadata(
            format!("{TENSOR_KEY_PREFIX}{}", q.path),
            serde_json::to_string(&meta)?,
        );
    }
    for (name, shape, values) in &model.float {
        w.add(name, "F32", shape, &f32_bytes(values))?;
    }
    commit(vec![w.assemble()?])
}

/// Reads a model from a file in the checkpoint format (written by
/// [`save_quantized_model`] or by a `netcompress` command).
///
/// # Errors
///
/// [`CheckpointError::Io`]; [`CheckpointError::Format`] naming the file and the field for
/// anything malformed, a file of the old `netcompress.quant` layout, or a non-float tensor.
pub fn load_quantized_model(path: &Path) -> Result<QuantizedModel> {
    let mut f = SafetensorsFile::open(path)?;
    if f.metadata.contains_key(OLD_KEY) && !f.metadata.contains_key(FORMAT_KEY) {
        return Err(CheckpointError::format(
            path,
            format!("__metadata__.{OLD_KEY}"),
            "the pre-checkpoint-format QuantizedModel layout is not read any more; save the model again",
        ));
    }
    let metas =
        tensor_metas(&f.metadata).map_err(|(field, r)| CheckpointError::format(path, field, r))?;
    let mut owner = std::collections::HashMap::new();
    for (name, m) in &metas {
        for p in m.encoding.parts() {
            owner.insert(p.to_string(), name.clone());
        }
    }
    let mut out = QuantizedModel::default();
    let mut done = HashSet::new();
    for t in f.tensors.clone() {
        if let Some(name) = owner.get(&t.name) {
            if !done.insert(name.clone()) {
                continue;
            }
            let meta = &metas[name];
            let field = || format!("tensor `{name}`");
            match decode_qtensor(meta, &mut f)
                .map_err(|r| CheckpointError::format(path, field(), r))?
            {
                Some(tensor) => out.quantized.push(QuantizedParam {
                    path: name.clone(),
                    shape: meta.shape.clone(),
                    tensor,
                }),
                None => {
                    let values = decode(meta, &mut f)
                        .map_err(|r| CheckpointError::format(path, field(), r))?;
                    out.float.push((name.clone(), meta.shape.clone(), values));
                }
            }
            continue;
        }
        if !t.dtype.is_float() {
            return Err(CheckpointError::format(
                path,
                format!("tensor `{}`.dtype", t.name),
                format!(
                    "{} is not a float dtype; a QuantizedModel holds float parameters only",
                    t.dtype.name()
                ),
            ));
        }
        let raw = f.read_raw(&t)?;
        out.float
            .push((t.name.clone(), t.shape.clone(), bytes_to_f32(&raw, t.dtype)));
    }
    if let Some(missing) = metas.keys().find(|k| !done.contains(*k)) {
        return Err(CheckpointError::format(
            path,
            format!("__metadata__.{TENSOR_KEY_PREFIX}{missing}"),
            "describes a tensor none of whose parts is stored",
        ));
    }
    Ok(out)
}

/// `save` / `load` for [`QuantizedModel`] in the checkpoint format.
///
/// ```
/// use compress_checkpoint::QuantizedModelFile;
/// use compress_quant::{IntScheme, PtqConfig, QuantizedModel, quantize_model};
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let net = compress_nn::models::mlp::<f32, _>(&[16, 8, 4], &mut StdRng::seed_from_u64(0));
/// let (q, _) = quantize_model(&net, &PtqConfig::new(IntScheme::int8_per_channel()))?;
/// let path = std::env::temp_dir().join(format!("doc-qmodel-{}.safetensors", std::process::id()));
/// q.save(&path)?;
/// assert_eq!(QuantizedModel::load(&path)?, q);
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub trait QuantizedModelFile: Sized {
    /// Writes the model to `path` atomically (see [`save_quantized_model`]).
    ///
    /// # Errors
    ///
    /// As [`save_quantized_model`].
    fn save(&self, path: impl AsRef<Path>) -> Result<()>;

    /// Reads a model (see [`load_quantized_model`]).
    ///
    /// # Errors
    ///
    /// As [`load_quantized_model`].
    fn load(path: impl AsRef<Path>) -> Result<Self>;
}

impl QuantizedModelFile for QuantizedModel {
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_quantized_model(self, path.as_ref())
    }

    fn load(path: impl AsRef<Path>) -> Result<Self> {
        load_quantized_model(path.as_ref())
    }
}
