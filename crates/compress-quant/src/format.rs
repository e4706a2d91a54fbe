//! Saving and loading quantized models as safetensors.
//!
//! Layout, for a quantized parameter at path `p`:
//! - `p.qdata`: the packed codes as `U8` (`[bytes]`), or the `F16` / `BF16` values in the
//!   tensor's shape for float casts;
//! - `p.scales`: `F32` or `F16` (`[number of scales]`);
//! - `p.zero_points`: `U8`, the zero points packed at the code width (affine only).
//!
//! Float parameters are stored under their path as `F32` in their shape. The header's
//! metadata holds one key, `netcompress.quant`, whose JSON value describes every quantized
//! tensor: `{"format": 1, "tensors": {"p": {"shape": [..], "qshape": [..], "scheme": "int",
//! "bits": 4, "granularity": "per_group", "axis": null, "group_size": 32, "affine": false,
//! "scale_dtype": "f32"}}}` (`scheme` is `"f16"` or `"bf16"` for casts). Loading checks every
//! length, so a truncated or edited file is a typed error, never a panic.

use std::collections::HashMap;
use std::path::Path;

use half::f16;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Value, json};

use crate::pack::unpack_bits;
use crate::{
    Granularity, IntScheme, QTensor, QuantError, QuantScheme, QuantizedModel, QuantizedParam,
    ScaleDtype,
};

const META_KEY: &str = "netcompress.quant";

fn fmt_err(path: &str, reason: impl Into<String>) -> QuantError {
    QuantError::Format {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn describe(q: &QuantizedParam) -> Value {
    let t = &q.tensor;
    match t.scheme() {
        QuantScheme::Int(s) => {
            let (gran, axis, group) = match s.granularity {
                Granularity::PerTensor => ("per_tensor", None, None),
                Granularity::PerChannel { axis } => ("per_channel", Some(axis), None),
                Granularity::PerGroup { group_size } => ("per_group", None, Some(group_size)),
            };
            json!({
                "shape": q.shape, "qshape": t.shape(), "scheme": "int", "bits": s.bits,
                "granularity": gran, "axis": axis, "group_size": group, "affine": s.affine,
                "scale_dtype": match s.scale_dtype { ScaleDtype::F32 => "f32", ScaleDtype::F16 => "f16" },
            })
        }
        QuantScheme::F16 => json!({"shape": q.shape, "qshape": t.shape(), "scheme": "f16"}),
        QuantScheme::Bf16 => json!({"shape": q.shape, "qshape": t.shape(), "scheme": "bf16"}),
    }
}

impl QuantizedModel {
    /// Serializes to safetensors bytes (see the [module docs](crate::format)).
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] if safetensors rejects the data (e.g. duplicate names).
    pub fn to_bytes(&self) -> Result<Vec<u8>, QuantError> {
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut meta = serde_json::Map::new();
        for q in &self.quantized {
            let t = &q.tensor;
            meta.insert(q.path.clone(), describe(q));
            match t.scheme() {
                QuantScheme::Int(s) => {
                    owned.push((
                        format!("{}.qdata", q.path),
                        Dtype::U8,
                        vec![t.data().len()],
                        t.data().to_vec(),
                    ));
                    let (dt, bytes) = match s.scale_dtype {
                        ScaleDtype::F32 => (
                            Dtype::F32,
                            t.scales().iter().flat_map(|v| v.to_le_bytes()).collect(),
                        ),
                        ScaleDtype::F16 => (
                            Dtype::F16,
                            t.scales()
                                .iter()
                                .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
                                .collect::<Vec<u8>>(),
                        ),
                    };
                    owned.push((
                        format!("{}.scales", q.path),
                        dt,
                        vec![t.scales().len()],
                        bytes,
                    ));
                    if s.affine {
                        let z = t.packed_zero_points();
                        owned.push((
                            format!("{}.zero_points", q.path),
                            Dtype::U8,
                            vec![z.len()],
                            z,
                        ));
                    }
                }
                QuantScheme::F16 | QuantScheme::Bf16 => {
                    let dt = if t.scheme() == QuantScheme::F16 {
                        Dtype::F16
                    } else {
                        Dtype::BF16
                    };
                    owned.push((
                        format!("{}.qdata", q.path),
                        dt,
                        t.shape().to_vec(),
                        t.data().to_vec(),
                    ));
                }
            }
        }
        for (p, shape, v) in &self.float {
            owned.push((
                p.clone(),
                Dtype::F32,
                shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
        let views = owned
            .iter()
            .map(|(n, dt, shape, data)| {
                TensorView::new(*dt, shape.clone(), data)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| fmt_err("<bytes>", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order: Vec<&str> = self.quantized.iter().map(|q| q.path.as_str()).collect();
        let float_order: Vec<&str> = self.float.iter().map(|f| f.0.as_str()).collect();
        let header = json!({
            "format": 1, "tensors": Value::Object(meta), "order": order, "float_order": float_order,
        });
        let mut info = HashMap::new();
        info.insert(META_KEY.to_string(), header.to_string());
        safetensors::serialize(views, Some(info)).map_err(|e| fmt_err("<bytes>", e.to_string()))
    }

    /// Writes the model to `path` atomically (a temporary file, then a rename).
    ///
    /// # Errors
    ///
    /// [`QuantError::Io`] naming the file, or a serialization error.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), QuantError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("safetensors.tmp");
        let io = |e: std::io::Error| QuantError::Io {
            path: path.display().to_string(),
            source: e,
        };
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a model written by [`QuantizedModel::save`].
    ///
    /// # Errors
    ///
    /// [`QuantError::Io`] or, for malformed content, [`QuantError::Format`] naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, QuantError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| QuantError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_bytes_named(&bytes, &path.display().to_string())
    }

    /// Parses safetensors bytes written by [`QuantizedModel::to_bytes`].
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] for anything malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, QuantError> {
        Self::from_bytes_named(bytes, "<bytes>")
    }

    fn from_bytes_named(bytes: &[u8], file: &str) -> Result<Self, QuantError> {
        let e = |r: String| fmt_err(file, r);
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|x| e(format!("header: {x}")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|x| e(format!("data: {x}")))?;
        let meta_str = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| e(format!("no `{META_KEY}` metadata")))?;
        let meta: Value =
            serde_json::from_str(meta_str).map_err(|x| e(format!("metadata JSON: {x}")))?;
        if meta.get("format").and_then(Value::as_u64) != Some(1) {
            return Err(e("unsupported format version (expected 1)".into()));
        }
        let tensors = meta
            .get("tensors")
            .and_then(Value::as_object)
            .ok_or_else(|| e("metadata has no `tensors` object".into()))?;
        let mut out = QuantizedModel::default();
        let mut claimed = std::collections::HashSet::new();
        let listed = |key: &str| -> Option<Vec<String>> {
            meta.get(key)?
                .as_array()?
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        // Quantized tensors in their original order (or sorted by path without one).
        let order = listed("order").unwrap_or_else(|| tensors.keys().cloned().collect());
        if order.len() != tensors.len() {
            return Err(e("`order` does not list every quantized tensor".into()));
        }
        for p in &order {
            let d = tensors
                .get(p)
                .ok_or_else(|| e(format!("`order` names unknown tensor `{p}`")))?;
            let q = read_quantized(&st, p, d).map_err(|r| e(format!("`{p}`: {r}")))?;
            claimed.insert(format!("{p}.qdata"));
            claimed.insert(format!("{p}.scales"));
            claimed.insert(format!("{p}.zero_points"));
            out.quantized.push(q);
        }
        let mut names: Vec<String> = st
            .tensors()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !claimed.contains(n))
            .collect();
        names.sort();
        if let Some(fo) = listed("float_order") {
            let mut sorted = fo.clone();
            sorted.sort();
            if sorted != names {
                return Err(e("`float_order` does not match the float tensors".into()));
            }
            names = fo;
        }
        for n in names {
            let v = st.tensor(&n).map_err(|x| e(x.to_string()))?;
            if v.dtype() != Dtype::F32 {
                return Err(e(format!(
                    "float tensor `{n}` is {:?}, expected F32",
                    v.dtype()
                )));
            }
            let vals: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            out.float.push((n, v.shape().to_vec(), vals));
        }
        Ok(out)
    }
}

fn usize_vec(v: Option<&Value>) -> Result<Vec<usize>, String> {
    v.and_then(Value::as_array)
        .ok_or("missing shape")?
        .iter()
        .map(|x| x.as_u64().map(|u| u as usize).ok_or("bad shape entry"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(str::to_string)
}

fn read_quantized(st: &SafeTensors<'_>, p: &str, d: &Value) -> Result<QuantizedParam, String> {
    let shape = usize_vec(d.get("shape"))?;
    let qshape = usize_vec(d.get("qshape"))?;
    if shape.iter().product::<usize>() != qshape.iter().product::<usize>() {
        return Err(format!(
            "shape {shape:?} and qshape {qshape:?} differ in size"
        ));
    }
    let get = |suffix: &str| {
        st.tensor(&format!("{p}.{suffix}"))
            .map_err(|x| x.to_string())
    };
    let data = get("qdata")?;
    let scheme = match d.get("scheme").and_then(Value::as_str) {
        Some("f16") => QuantScheme::F16,
        Some("bf16") => QuantScheme::Bf16,
        Some("int") => {
            let bits = d
                .get("bits")
                .and_then(Value::as_u64)
                .ok_or("missing bits")? as u32;
            let granularity = match d.get("granularity").and_then(Value::as_str) {
                Some("per_tensor") => Granularity::PerTensor,
                Some("per_channel") => Granularity::PerChannel {
                    axis: d
                        .get("axis")
                        .and_then(Value::as_u64)
                        .ok_or("missing axis")? as usize,
                },
                Some("per_group") => Granularity::PerGroup {
                    group_size: d
                        .get("group_size")
                        .and_then(Value::as_u64)
                        .ok_or("missing group_size")? as usize,
                },
                other => return Err(format!("unknown granularity {other:?}")),
            };
            let affine = d
                .get("affine")
                .and_then(Value::as_bool)
                .ok_or("missing affine")?;
            let scale_dtype = match d.get("scale_dtype").and_then(Value::as_str) {
                Some("f32") => ScaleDtype::F32,
                Some("f16") => ScaleDtype::F16,
                other => return Err(format!("unknown scale_dtype {other:?}")),
            };
            QuantScheme::Int(IntScheme {
                bits,
                granularity,
                affine,
                scale_dtype,
            })
        }
        other => return Err(format!("unknown scheme {other:?}")),
    };
    let (scales, zero_points) = match scheme {
        QuantScheme::Int(s) => {
            let sv = get("scales")?;
            let scales: Vec<f32> = match (s.scale_dtype, sv.dtype()) {
                (ScaleDtype::F32, Dtype::F32) => sv
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                (ScaleDtype::F16, Dtype::F16) => sv
                    .data()
                    .chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                    .collect(),
                (want, got) => return Err(format!("scales are {got:?}, metadata says {want:?}")),
            };
            let zps = if s.affine {
                let zv = get("zero_points")?;
                let need = crate::pack::packed_len(scales.len(), s.bits);
                if zv.data().len() != need {
                    return Err(format!(
                        "zero points: {} bytes, expected {need}",
                        zv.data().len()
                    ));
                }
                unpack_bits(zv.data(), s.bits, scales.len())
                    .into_iter()
                    .map(i32::from)
                    .collect()
            } else {
                Vec::new()
            };
            (scales, zps)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let tensor = QTensor::from_parts(qshape, scheme, data.data().to_vec(), scales, zero_points)
        .map_err(|x| x.to_string())?;
    Ok(QuantizedParam {
        path: p.to_string(),
        shape,
        tensor,
    })
}
