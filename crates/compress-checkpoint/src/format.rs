//! The netcompress checkpoint format: a plain safetensors file in which each compressed tensor
//! is replaced by a few *part* tensors (`NAME.__codes`, `NAME.__scales`, ...) and described by
//! one `__metadata__` entry `netcompress.tensor.NAME` holding a JSON [`TensorMeta`].
//! docs/format.md is the reference for every field; this module is its implementation.

use std::collections::BTreeMap;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::reader::Dtype;

/// `__metadata__` key holding the format version.
pub const FORMAT_KEY: &str = "netcompress.format";
/// The format version written.
pub const FORMAT_VERSION: &str = "1";
/// `__metadata__` key holding the command line that produced the file (informational).
pub const COMMAND_KEY: &str = "netcompress.command";
/// Prefix of the per-tensor `__metadata__` keys.
pub const TENSOR_KEY_PREFIX: &str = "netcompress.tensor.";

/// The name of part `suffix` of tensor `name`: `name.__suffix`.
pub fn part_name(name: &str, suffix: &str) -> String {
    format!("{name}.__{suffix}")
}

/// How a compressed tensor is described in the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMeta {
    /// The original dtype (`F32`, `F16`, `BF16`, `F64`): what `dequantize` restores by default.
    pub dtype: String,
    /// The original shape.
    pub shape: Vec<usize>,
    /// The encoding and its parts.
    #[serde(flatten)]
    pub encoding: Encoding,
}

/// Integer quantization schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeName {
    /// Signed codes, zero point 0.
    Sym,
    /// Unsigned codes with a zero point.
    Affine,
}

/// Granularities of integer quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GranularityName {
    /// One scale.
    Tensor,
    /// One scale per index along `axis`.
    Channel,
    /// One scale per `group_size` consecutive elements of the last dimension.
    Group,
}

/// The encodings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "encoding", rename_all = "lowercase")]
pub enum Encoding {
    /// Integer codes with scales (and zero points): `x = (q - z) * s`.
    Int {
        /// Bits per code (2..=8).
        bits: u32,
        /// `sym` or `affine`.
        scheme: SchemeName,
        /// `tensor`, `channel` or `group`.
        granularity: GranularityName,
        /// Channel axis (for `channel`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        axis: Option<usize>,
        /// Group size (for `group`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_size: Option<usize>,
        /// Part: `U8 [ceil(n * bits / 8)]` packed codes.
        codes: String,
        /// Part: `F32` or `F16 [params]` scales.
        scales: String,
        /// Part (affine only): `U8 [ceil(params * bits / 8)]` packed zero points.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zeros: Option<String>,
        /// The shape the codes were quantized in, when it differs from `shape` (same element
        /// count; e.g. a conv weight grouped as `[out, in * kh * kw]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qshape: Option<Vec<usize>>,
    },
    /// A cast to a narrower float type: `x = values` (F16 or BF16, in `shape`).
    Cast {
        /// Part: `F16` or `BF16` in the original shape.
        values: String,
    },
    /// k-means clustering: `x = codebook[group * clusters + index]`.
    Cluster {
        /// Bits per index.
        bits: u32,
        /// Codebook entries per group.
        clusters: usize,
        /// One codebook per slice along axis 0 (else one for the tensor).
        #[serde(default)]
        per_channel: bool,
        /// Part: `F32 [groups * clusters]` codebooks.
        codebook: String,
        /// Part: `U8` packed indices, or the Huffman bit stream when `huffman_bits` is set.
        codes: String,
        /// Part (Huffman only): `U8 [clusters]` canonical code lengths.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        huffman_lengths: Option<String>,
        /// Bits of the Huffman stream (Huffman only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        huffman_bits: Option<u64>,
    },
    /// Unstructured sparsity: a keep bitmask and the kept values.
    Sparse {
        /// Kept (stored) values.
        nnz: usize,
        /// Part: `U8 [ceil(n / 8)]`, bit `i` (LSB first) set when element `i` is kept.
        mask: String,
        /// Part: `[nnz]` kept values in the original dtype, in row-major order.
        values: String,
    },
    /// Structured (row) sparsity: the kept slices along axis 0.
    Rows {
        /// Part: `U32 [kept]` strictly increasing indices along axis 0.
        rows: String,
        /// Part: `[kept, shape[1..]...]` the kept slices in the original dtype.
        values: String,
    },
    /// Low rank: `x.reshape(shape[0], rest) = u @ v`.
    Lowrank {
        /// The rank `r`.
        rank: usize,
        /// Part: `[shape[0], r]`.
        u: String,
        /// Part: `[r, rest]`.
        v: String,
    },
}

impl Encoding {
    /// Every part name this encoding refers to.
    pub fn parts(&self) -> Vec<&str> {
        match self {
            Self::Int {
                codes,
                scales,
                zeros,
                ..
            } => [Some(codes), Some(scales), zeros.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            Self::Cluster {
                codebook,
                codes,
                huffman_lengths,
                ..
            } => [Some(codebook), Some(codes), huffman_lengths.as_ref()]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect(),
            Self::Cast { values } => vec![values],
            Self::Sparse { mask, values, .. } => vec![mask, values],
            Self::Rows { rows, values } => vec![rows, values],
            Self::Lowrank { u, v, .. } => vec![u, v],
        }
    }

    /// A short label such as `int4-affine-group32`, `cluster16`, `sparse`, `rows`, `rank12`.
    pub fn label(&self) -> String {
        match self {
            Self::Int {
                bits,
                scheme,
                granularity,
                group_size,
                ..
            } => {
                let s = if *scheme == SchemeName::Sym {
                    "sym"
                } else {
                    "affine"
                };
                let g = match granularity {
                    GranularityName::Tensor => "tensor".to_string(),
                    GranularityName::Channel => "channel".to_string(),
                    GranularityName::Group => format!("group{}", group_size.unwrap_or(0)),
                };
                format!("int{bits}-{s}-{g}")
            }
            Self::Cluster {
                clusters,
                huffman_bits,
                ..
            } => {
                let h = if huffman_bits.is_some() {
                    "+huffman"
                } else {
                    ""
                };
                format!("cluster{clusters}{h}")
            }
            Self::Cast { .. } => "cast".to_string(),
            Self::Sparse { .. } => "sparse".to_string(),
            Self::Rows { .. } => "rows".to_string(),
            Self::Lowrank { rank, .. } => format!("rank{rank}"),
        }
    }
}

/// Reads every `netcompress.tensor.*` entry of a header's metadata, keyed by tensor name.
///
/// # Errors
///
/// The metadata key at fault and the reason when an entry is not valid JSON for
/// [`TensorMeta`], names a non-float dtype, or the format version is unknown.
pub fn tensor_metas(
    metadata: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, TensorMeta>, (String, String)> {
    let mut out = BTreeMap::new();
    let Some(version) = metadata.get(FORMAT_KEY) else {
        return Ok(out);
    };
    if version != FORMAT_VERSION {
        return Err((
            format!("__metadata__.{FORMAT_KEY}"),
            format!(
                "format version `{version}` is not supported (this library reads {FORMAT_VERSION})"
            ),
        ));
    }
    for (key, value) in metadata {
        let Some(name) = key.strip_prefix(TENSOR_KEY_PREFIX) else {
            continue;
        };
        let field = || format!("__metadata__.{key}");
        let meta: TensorMeta = serde_json::from_str(value)
            .map_err(|e| (field(), format!("malformed description: {e}")))?;
        if !Dtype::parse(&meta.dtype).is_some_and(Dtype::is_float) {
            return Err((field(), format!("`{}` is not a float dtype", meta.dtype)));
        }
        out.insert(name.to_string(), meta);
    }
    Ok(out)
}

/// f32 values encoded as little-endian bytes of `dtype` (F32, F16, BF16 or F64; round to nearest
/// even for the 16-bit types).
pub fn encode_values(values: &[f32], dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    match dtype {
        Dtype::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        Dtype::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        Dtype::F64 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f64::from(*v).to_le_bytes())),
        Dtype::F32 | Dtype::Other(..) => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_json() {
        let m = TensorMeta {
            dtype: "BF16".into(),
            shape: vec![4, 64],
            encoding: Encoding::Int {
                bits: 4,
                scheme: SchemeName::Affine,
                granularity: GranularityName::Group,
                axis: None,
                group_size: Some(32),
                codes: part_name("w", "codes"),
                scales: part_name("w", "scales"),
                zeros: Some(part_name("w", "zeros")),
                qshape: None,
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains(r#""encoding":"int""#), "{s}");
        let back: TensorMeta = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.encoding.label(), "int4-affine-group32");
        assert_eq!(
            m.encoding.parts(),
            vec!["w.__codes", "w.__scales", "w.__zeros"]
        );
        let mut md = BTreeMap::new();
        md.insert(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string());
        md.insert(format!("{TENSOR_KEY_PREFIX}w"), s);
        assert_eq!(tensor_metas(&md).unwrap()["w"], m);
        md.insert(
            format!("{TENSOR_KEY_PREFIX}x"),
            "{\"dtype\":\"I64\"}".into(),
        );
        assert!(tensor_metas(&md).is_err());
        md.insert(FORMAT_KEY.to_string(), "99".into());
        assert!(tensor_metas(&md).is_err());
    }

    #[test]
    fn values_encode_in_each_float_dtype() {
        let v = [1.5f32, -2.0];
        for d in [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64] {
            let b = encode_values(&v, d);
            assert_eq!(b.len(), 2 * d.size());
            assert_eq!(crate::reader::bytes_to_f32(&b, d), v.to_vec());
        }
    }
}
