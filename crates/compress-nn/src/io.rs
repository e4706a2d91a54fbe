//! Saving and loading any [`Module`] as safetensors.
//!
//! Tensor names are the parameter paths (`0.weight`, `3.running_mean`, ...), the values
//! are the effective ones (parametrizations applied), stored as `F32` or `F64` to match
//! `F`. Loading accepts `F64`, `F32`, `F16` and `BF16` tensors and converts them.
//!
//! ```
//! # fn main() -> Result<(), compress_nn::NnError> {
//! use compress_core::Module;
//! use compress_nn::{Linear, io};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let mut rng = StdRng::seed_from_u64(0);
//! let a = Linear::<f32>::new(3, 2, true, &mut rng);
//! let mut b = Linear::<f32>::new(3, 2, true, &mut rng);
//! let bytes = io::to_safetensors_bytes(&a)?;
//! io::load_safetensors_bytes(&mut b, &bytes, "memory")?;
//! assert_eq!(a.state_dict(), b.state_dict());
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::path::Path;

use compress_core::{CoreError, Float, Module, Param, ParamPath};
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{NnError, Result};

fn format_err(path: &str, reason: impl Into<String>) -> NnError {
    NnError::Format {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Serializes the effective value of every parameter of `model` to safetensors bytes.
///
/// # Errors
///
/// [`NnError::Format`] (path `"<memory>"`) if the safetensors encoder rejects the data.
pub fn to_safetensors_bytes<F: Float>(model: &dyn Module<F>) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let single = F::IS_F32;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            let v = p.effective();
            let mut data = Vec::with_capacity(v.len() * if single { 4 } else { 8 });
            for &x in v.iter() {
                if single {
                    data.extend_from_slice(&(x.as_f64() as f32).to_le_bytes());
                } else {
                    data.extend_from_slice(&x.as_f64().to_le_bytes());
                }
            }
            let dtype = if single { Dtype::F32 } else { Dtype::F64 };
            tensors.push((path.to_string(), dtype, v.shape().to_vec(), data));
        },
    );
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| format_err("<memory>", format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| format_err("<memory>", e.to_string()))
}

/// Writes `model` to `path` as safetensors, atomically (a temporary file in the same
/// directory, then a rename).
///
/// # Errors
///
/// [`NnError::Io`] naming the file when it cannot be written, and the errors of
/// [`to_safetensors_bytes`].
pub fn save_safetensors<F: Float>(model: &dyn Module<F>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_safetensors_bytes(model)?;
    let name = path
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io = |e| NnError::Io {
        path: path.display().to_string(),
        source: e,
    };
    if let Err(e) = std::fs::write(&tmp, &bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Decodes one tensor's little-endian bytes (F64, F32, F16 or BF16) to `F`; `file` and
/// `name` only label errors.
///
/// # Errors
///
/// [`NnError::Format`] naming the file and tensor for any other dtype.
pub fn decode_tensor<F: Float>(file: &str, name: &str, view: &TensorView<'_>) -> Result<Vec<F>> {
    let d = view.data();
    let out = match view.dtype() {
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| {
                F::lit(f64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))
            })
            .collect(),
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| F::lit(f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| F::lit(half::f16::from_le_bytes([c[0], c[1]]).to_f64()))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| F::lit(half::bf16::from_le_bytes([c[0], c[1]]).to_f64()))
            .collect(),
        other => {
            return Err(format_err(
                file,
                format!("tensor `{name}` has dtype {other:?}; expected F64, F32, F16 or BF16"),
            ));
        }
    };
    Ok(out)
}

/// Loads parameters from safetensors `bytes` into `model` (stored values are set;
/// parametrizations stay attached). `source` names the data in errors.
///
/// Returns the names of tensors in the data that the model has no parameter for
/// (e.g. PyTorch's `num_batches_tracked`), sorted.
///
/// # Errors
///
/// [`NnError::Format`] naming `source` for unreadable data or an unsupported dtype,
/// [`CoreError::MissingParam`] for a parameter with no tensor, and
/// [`CoreError::ShapeMismatch`] naming the parameter path when shapes differ. On error
/// the model may be partly loaded.
pub fn load_safetensors_bytes<F: Float>(
    model: &mut dyn Module<F>,
    bytes: &[u8],
    source: &str,
) -> Result<Vec<String>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| format_err(source, e.to_string()))?;
    let names: HashSet<String> = st.names().into_iter().map(str::to_string).collect();
    let mut used = HashSet::new();
    let mut failure: Option<NnError> = None;
    model
        .visit_mut(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &mut Param<F>| {
                let key = path.to_string();
                if !names.contains(&key) {
                    return Err(CoreError::MissingParam { path: key });
                }
                let view = st
                    .tensor(&key)
                    .map_err(|e| CoreError::config(key.clone(), e.to_string()))?;
                if view.shape() != p.shape() {
                    return Err(CoreError::shape(key, p.shape(), view.shape()));
                }
                match decode_tensor::<F>(source, &key, &view) {
                    Ok(values) => {
                        let a = ArrayD::from_shape_vec(IxDyn(view.shape()), values)?;
                        p.value_mut().assign(&a);
                        used.insert(key);
                        Ok(())
                    }
                    Err(e) => {
                        failure = Some(e);
                        Err(CoreError::config(key, "unsupported dtype"))
                    }
                }
            },
        )
        .map_err(|e| failure.take().unwrap_or(NnError::Core(e)))?;
    let mut unused: Vec<String> = st
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| !used.contains(n))
        .collect();
    unused.sort();
    Ok(unused)
}

/// Loads `model`'s parameters from the safetensors file at `path`; see
/// [`load_safetensors_bytes`].
///
/// # Errors
///
/// [`NnError::Io`] naming the file when it cannot be read, and the errors of
/// [`load_safetensors_bytes`] (with the file as `source`).
pub fn load_safetensors<F: Float>(
    model: &mut dyn Module<F>,
    path: impl AsRef<Path>,
) -> Result<Vec<String>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| NnError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    load_safetensors_bytes(model, &bytes, &path.display().to_string())
}
