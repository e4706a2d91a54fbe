//! Decoding compressed tensors back to dense f32 values.
//!
//! Every part is checked (dtype, shape, byte length, index ranges) before the library decoders
//! run, so a corrupt or hand-edited file gives an error naming the tensor, never a panic. The
//! same function is used by `dequantize`, by `diff` on compressed files, and by the compressing
//! commands themselves to measure the error of what they just wrote (so the SQNR they report is
//! exactly what `dequantize` will restore).

use std::borrow::Cow;

use compress_quant::huffman::HuffmanCode;
use compress_quant::pack::{packed_len, unpack_bits};
use compress_quant::{IntScheme, QTensor, QuantScheme};
mod blocks;

pub use blocks::decode_blocks;
use blocks::{Factors, KeptRows};

use crate::format::{Encoding, GranularityName, SchemeName, TensorMeta, part_name};
use crate::reader::{Dtype, SafetensorsFile, bytes_to_f32};

/// One stored tensor: dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Tensor name.
    pub name: String,
    /// dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data.
    pub bytes: Vec<u8>,
}

impl Part {
    /// The part `suffix` of tensor `tensor`, named [`part_name`]`(tensor, suffix)`.
    pub fn of(tensor: &str, suffix: &str, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        Self {
            name: part_name(tensor, suffix),
            dtype,
            shape,
            bytes,
        }
    }
}

/// Borrowed or owned part data.
#[derive(Debug)]
pub struct PartData<'a> {
    /// dtype.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data.
    pub bytes: Cow<'a, [u8]>,
}

/// Where parts come from: memory (just encoded) or a file.
pub trait PartSource {
    /// The part called `name`.
    ///
    /// # Errors
    ///
    /// A reason string when it is missing or unreadable.
    fn part(&mut self, name: &str) -> Result<PartData<'_>, String>;
}

impl PartSource for &[Part] {
    fn part(&mut self, name: &str) -> Result<PartData<'_>, String> {
        let p = self
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("part `{name}` is missing"))?;
        let numel = p.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(p.dtype.size())) != Some(p.bytes.len()) {
            return Err(format!(
                "part `{name}`: {} bytes do not hold shape {:?}",
                p.bytes.len(),
                p.shape
            ));
        }
        Ok(PartData {
            dtype: p.dtype,
            shape: p.shape.clone(),
            bytes: Cow::Borrowed(&p.bytes),
        })
    }
}

impl PartSource for SafetensorsFile {
    fn part(&mut self, name: &str) -> Result<PartData<'_>, String> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| format!("part `{name}` is missing from {}", self.path().display()))?;
        let bytes = self.read_raw(&t).map_err(|e| e.to_string())?;
        Ok(PartData {
            dtype: t.dtype,
            shape: t.shape,
            bytes: Cow::Owned(bytes),
        })
    }
}

/// Fetches part `name` and checks its dtype (one of `dtypes`) and shape.
fn fetch<'a>(
    src: &'a mut dyn PartSource,
    name: &str,
    dtypes: &[Dtype],
    shape: &[usize],
) -> Result<PartData<'a>, String> {
    let p = src.part(name)?;
    if !dtypes.contains(&p.dtype) {
        let want: Vec<_> = dtypes.iter().map(|d| d.name()).collect();
        return Err(format!(
            "part `{name}` has dtype {} (expected {})",
            p.dtype.name(),
            want.join(" or ")
        ));
    }
    if p.shape != shape {
        return Err(format!(
            "part `{name}` has shape {:?} (expected {shape:?})",
            p.shape
        ));
    }
    Ok(p)
}

const FLOATS: [Dtype; 4] = [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64];
const U8: Dtype = Dtype::Other("U8", 1);
const U32: Dtype = Dtype::Other("U32", 4);

/// A zeroed buffer of `n` values, allocated fallibly (a corrupt header may claim an absurd
/// shape whose parts are tiny, e.g. no kept rows of 2^60).
fn zeroed_buf(n: usize) -> Result<Vec<f32>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| format!("cannot allocate {n} values for the decoded tensor"))?;
    v.resize(n, 0.0);
    Ok(v)
}

/// The quantized tensor of an `int` or `cast` description (`None` for other encodings),
/// with every part checked.
///
/// # Errors
///
/// A reason string for any inconsistency between the metadata and the parts.
pub(crate) fn decode_qtensor(
    meta: &TensorMeta,
    src: &mut dyn PartSource,
) -> Result<Option<QTensor>, String> {
    let shape = &meta.shape;
    let n = numel(shape)?;
    match &meta.encoding {
        Encoding::Int {
            bits,
            scheme,
            granularity,
            axis,
            group_size,
            codes,
            scales,
            zeros,
            qshape,
        } => {
            let bits = *bits;
            let qshape = match qshape {
                Some(q) if q.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(n) => {
                    q.clone()
                }
                Some(q) => {
                    return Err(format!(
                        "qshape {q:?} does not hold the {n} elements of shape {shape:?}"
                    ));
                }
                None => shape.clone(),
            };
            if !(2..=8).contains(&bits) {
                return Err(format!("int bits {bits} outside 2..=8"));
            }
            let mut s = IntScheme::new(bits);
            s = match granularity {
                GranularityName::Tensor => s,
                GranularityName::Channel => {
                    s.per_channel(axis.ok_or("channel granularity without `axis`")?)
                }
                GranularityName::Group => {
                    s.per_group(group_size.ok_or("group granularity without `group_size`")?)
                }
            };
            if *scheme == SchemeName::Affine {
                s = s.affine();
            }
            let codes_b = fetch(src, codes, &[U8], &[packed_len(n, bits)])?
                .bytes
                .into_owned();
            let sc = src.part(scales)?;
            if sc.shape.len() != 1 || !matches!(sc.dtype, Dtype::F32 | Dtype::F16) {
                return Err(format!("part `{scales}` must be a 1-D F32 or F16 tensor"));
            }
            if sc.dtype == Dtype::F16 {
                s = s.f16_scales();
            }
            let scale_v = bytes_to_f32(&sc.bytes, sc.dtype);
            let params = scale_v.len();
            let zp = match (zeros, *scheme) {
                (Some(z), SchemeName::Affine) => {
                    let zb = fetch(src, z, &[U8], &[packed_len(params, bits)])?;
                    unpack_bits(&zb.bytes, bits, params)
                        .into_iter()
                        .map(i32::from)
                        .collect()
                }
                (None, SchemeName::Sym) => Vec::new(),
                _ => return Err("zero points must be present exactly for the affine scheme".into()),
            };
            let q = QTensor::from_parts(qshape, s.into(), codes_b, scale_v, zp)
                .map_err(|e| e.to_string())?;
            Ok(Some(q))
        }
        Encoding::Cast { values } => {
            let v = fetch(src, values, &[Dtype::F16, Dtype::BF16], shape)?;
            let scheme = if v.dtype == Dtype::F16 {
                QuantScheme::F16
            } else {
                QuantScheme::Bf16
            };
            let q =
                QTensor::from_parts(shape.clone(), scheme, v.bytes.into_owned(), vec![], vec![])
                    .map_err(|e| e.to_string())?;
            Ok(Some(q))
        }
        _ => Ok(None),
    }
}

/// The element count of a description's shape (at least 1, no overflow).
fn numel(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("shape {shape:?} is empty or overflows"))
}

/// Decodes the tensor described by `meta` to row-major f32 values.
///
/// # Errors
///
/// A reason string for any inconsistency between the metadata and the parts.
pub fn decode(meta: &TensorMeta, src: &mut dyn PartSource) -> Result<Vec<f32>, String> {
    let shape = &meta.shape;
    let n = numel(shape)?;
    if let Some(q) = decode_qtensor(meta, src)? {
        let mut out = zeroed_buf(n)?;
        q.dequantize_into(&mut out);
        return Ok(out);
    }
    match &meta.encoding {
        Encoding::Int { .. } | Encoding::Cast { .. } => Err("unreachable encoding".into()),
        Encoding::Cluster {
            bits,
            clusters,
            per_channel,
            codebook,
            codes,
            huffman_lengths,
            huffman_bits,
        } => {
            let (bits, k) = (*bits, *clusters);
            if !(1..=8).contains(&bits) || k == 0 || k > 1 << bits {
                return Err(format!(
                    "cluster bits {bits} / clusters {k} are inconsistent"
                ));
            }
            let groups = if *per_channel {
                *shape
                    .first()
                    .ok_or("per-channel clustering needs at least one dimension")?
            } else {
                1
            };
            let entries = groups.checked_mul(k).ok_or("codebook size overflows")?;
            let cb = fetch(src, codebook, &[Dtype::F32], &[entries])?;
            let cb = bytes_to_f32(&cb.bytes, Dtype::F32);
            // Each index is looked up in its group's codebook as it is decoded: the indices
            // are never widened to u32 nor the tensor built twice.
            let glen = n.checked_div(groups).unwrap_or(0).max(1);
            let mut out = Vec::new();
            out.try_reserve_exact(n)
                .map_err(|_| format!("cannot allocate {n} decoded values"))?;
            let mut put = |i: usize, c: usize| -> Result<(), String> {
                if c >= k {
                    return Err(format!(
                        "part `{codes}`: index {c} at position {i} is not below the {k} clusters"
                    ));
                }
                out.push(cb[(i / glen) * k + c]);
                Ok(())
            };
            match (huffman_lengths, huffman_bits) {
                (Some(l), Some(hb)) => {
                    let lengths = fetch(src, l, &[U8], &[k])?.bytes.into_owned();
                    let code = HuffmanCode::from_lengths(&lengths).map_err(|e| e.to_string())?;
                    let stream = src.part(codes)?;
                    if stream.dtype != U8 || stream.shape.len() != 1 {
                        return Err(format!("part `{codes}` must be a 1-D U8 tensor"));
                    }
                    if n as u64 > *hb {
                        return Err(format!("{hb} Huffman bits cannot hold {n} indices"));
                    }
                    let mut i = 0;
                    let mut bad = None;
                    code.decode_each(&stream.bytes, *hb, n, |c| {
                        if bad.is_none()
                            && let Err(e) = put(i, c as usize)
                        {
                            bad = Some(e);
                        }
                        i += 1;
                    })
                    .map_err(|e| e.to_string())?;
                    if let Some(e) = bad {
                        return Err(e);
                    }
                }
                (None, None) => {
                    let p = fetch(src, codes, &[U8], &[packed_len(n, bits)])?;
                    for (i, c) in unpack_bits(&p.bytes, bits, n).into_iter().enumerate() {
                        put(i, usize::from(c))?;
                    }
                }
                _ => return Err("huffman_lengths and huffman_bits go together".into()),
            }
            Ok(out)
        }
        Encoding::Sparse { nnz, mask, values } => {
            let m = fetch(src, mask, &[U8], &[n.div_ceil(8)])?
                .bytes
                .into_owned();
            let v = fetch(src, values, &FLOATS, &[*nnz])?;
            let vals = bytes_to_f32(&v.bytes, v.dtype);
            let kept = (0..n).filter(|&i| (m[i / 8] >> (i % 8)) & 1 == 1).count();
            if kept != *nnz {
                return Err(format!(
                    "mask `{mask}` keeps {kept} elements but nnz is {nnz}"
                ));
            }
            let mut out = zeroed_buf(n)?;
            let mut it = vals.into_iter();
            for (i, o) in out.iter_mut().enumerate() {
                if (m[i / 8] >> (i % 8)) & 1 == 1 {
                    *o = it.next().unwrap_or(0.0);
                }
            }
            Ok(out)
        }
        Encoding::Rows { rows, values } => {
            let k = KeptRows::fetch(shape, rows, values, src)?;
            let mut out = zeroed_buf(n)?;
            k.rows_into(0, k.rows(), &mut out);
            Ok(out)
        }
        Encoding::Lowrank { rank, u, v } => {
            let f = Factors::fetch(shape, *rank, u, v, src)?;
            let mut out = zeroed_buf(n)?;
            f.rows_into(0, f.rows(), &mut out)?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Part {
        Part {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            bytes,
        }
    }

    #[test]
    fn sparse_and_rows_decode_and_reject_inconsistent_parts() {
        let meta = TensorMeta {
            dtype: "F32".into(),
            shape: vec![2, 3],
            encoding: Encoding::Sparse {
                nnz: 2,
                mask: part_name("w", "mask"),
                values: part_name("w", "values"),
            },
        };
        let vals = crate::writer::f32_bytes(&[1.0, -2.0]);
        let parts = vec![
            part("w.__mask", U8, &[1], vec![0b0010_0001]),
            part("w.__values", Dtype::F32, &[2], vals.clone()),
        ];
        let got = decode(&meta, &mut parts.as_slice()).unwrap();
        assert_eq!(got, vec![1.0, 0.0, 0.0, 0.0, 0.0, -2.0]);
        let bad = vec![
            part("w.__mask", U8, &[1], vec![0b0010_0011]),
            part("w.__values", Dtype::F32, &[2], vals),
        ];
        assert!(decode(&meta, &mut bad.as_slice()).is_err());
        let meta = TensorMeta {
            dtype: "F32".into(),
            shape: vec![3, 2],
            encoding: Encoding::Rows {
                rows: part_name("w", "rows"),
                values: part_name("w", "values"),
            },
        };
        let parts = vec![
            part("w.__rows", U32, &[1], crate::writer::u32_bytes(&[2])),
            part(
                "w.__values",
                Dtype::F32,
                &[1, 2],
                crate::writer::f32_bytes(&[5.0, 6.0]),
            ),
        ];
        assert_eq!(
            decode(&meta, &mut parts.as_slice()).unwrap(),
            vec![0.0, 0.0, 0.0, 0.0, 5.0, 6.0]
        );
        let parts = vec![
            part("w.__rows", U32, &[1], crate::writer::u32_bytes(&[3])),
            part(
                "w.__values",
                Dtype::F32,
                &[1, 2],
                crate::writer::f32_bytes(&[5.0, 6.0]),
            ),
        ];
        assert!(
            decode(&meta, &mut parts.as_slice()).is_err(),
            "row index out of range"
        );
    }

    #[test]
    fn zero_dimensional_shapes_are_errors_not_panics() {
        let parts = vec![
            part("w.__rows", U32, &[1], crate::writer::u32_bytes(&[0])),
            part(
                "w.__values",
                Dtype::F32,
                &[1],
                crate::writer::f32_bytes(&[1.0]),
            ),
            part(
                "w.__codebook",
                Dtype::F32,
                &[2],
                crate::writer::f32_bytes(&[1.0, 2.0]),
            ),
            part("w.__codes", U8, &[1], vec![1]),
        ];
        let encodings = [
            Encoding::Rows {
                rows: part_name("w", "rows"),
                values: part_name("w", "values"),
            },
            Encoding::Cluster {
                bits: 1,
                clusters: 2,
                per_channel: true,
                codebook: part_name("w", "codebook"),
                codes: part_name("w", "codes"),
                huffman_lengths: None,
                huffman_bits: None,
            },
            Encoding::Lowrank {
                rank: 1,
                u: part_name("w", "values"),
                v: part_name("w", "values"),
            },
        ];
        for encoding in encodings {
            let meta = TensorMeta {
                dtype: "F32".into(),
                shape: vec![],
                encoding,
            };
            let e = decode(&meta, &mut parts.as_slice()).unwrap_err();
            assert!(e.contains("dimension"), "{e}");
        }
    }

    mod fuzz {
        use super::super::*;
        use crate::encode::{
            ClusterEncoder, ClusterOptions, GranularityArg, LowrankEncoder, LowrankOptions,
            MethodArg, PruneEncoder, PruneOptions, QuantizeEncoder, QuantizeOptions, SchemeArg,
        };
        use crate::format::encode_values;
        use crate::pipeline::{Encoder, Outcome};
        use crate::reader::TensorInfo;
        use proptest::prelude::*;

        /// Every encoder's output for one tensor.
        fn encodings(values: &[f32], shape: &[usize]) -> Vec<(TensorMeta, Vec<Part>)> {
            let t = TensorInfo {
                name: "w".into(),
                dtype: Dtype::F32,
                shape: shape.to_vec(),
                begin: 0,
                end: 4 * values.len() as u64,
            };
            let raw = encode_values(values, Dtype::F32);
            let q = |bits, g, group_size, scheme| QuantizeOptions {
                granularity: Some(g),
                group_size,
                scheme,
                ..QuantizeOptions::new(bits)
            };
            let p = |method, sparsity| PruneOptions {
                method,
                ..PruneOptions::new(sparsity)
            };
            let mut encs: Vec<Box<dyn Encoder>> = vec![
                Box::new(
                    QuantizeEncoder::new(&q(8, GranularityArg::Channel, None, SchemeArg::Sym))
                        .unwrap(),
                ),
                Box::new(
                    QuantizeEncoder::new(&q(3, GranularityArg::Group, Some(4), SchemeArg::Affine))
                        .unwrap(),
                ),
                Box::new(
                    QuantizeEncoder::new(&q(2, GranularityArg::Tensor, None, SchemeArg::Affine))
                        .unwrap(),
                ),
                Box::new(PruneEncoder::new(&p(MethodArg::Magnitude, 0.8)).unwrap()),
                Box::new(PruneEncoder::new(&p(MethodArg::Rows, 0.5)).unwrap()),
                Box::new(PruneEncoder::new(&p(MethodArg::Nm, 0.5)).unwrap()),
                Box::new(
                    ClusterEncoder::new(&ClusterOptions {
                        huffman: true,
                        per_channel: true,
                        max_iter: 20,
                        ..ClusterOptions::new(3)
                    })
                    .unwrap(),
                ),
                Box::new(
                    LowrankEncoder::new(&LowrankOptions {
                        energy: None,
                        rank: Some(1),
                        exact: true,
                    })
                    .unwrap(),
                ),
            ];
            let mut out = Vec::new();
            for e in &mut encs {
                if let Ok(Outcome::Encoded {
                    encoding, parts, ..
                }) = e.encode(&t, values, &raw)
                {
                    let meta = TensorMeta {
                        dtype: "F32".into(),
                        shape: shape.to_vec(),
                        encoding,
                    };
                    out.push((meta, parts));
                }
            }
            out
        }

        fn mutate_meta(m: &mut TensorMeta, v: usize) {
            match &mut m.encoding {
                Encoding::Int {
                    bits,
                    group_size,
                    axis,
                    ..
                } => match v % 3 {
                    0 => *bits = v as u32 % 10,
                    1 => *group_size = Some(v % 7),
                    _ => *axis = Some(v % 4),
                },
                Encoding::Cluster {
                    bits,
                    clusters,
                    huffman_bits,
                    ..
                } => match v % 3 {
                    0 => *bits = v as u32 % 10,
                    1 => *clusters = v % 300,
                    _ => *huffman_bits = Some(v as u64 * 977),
                },
                Encoding::Sparse { nnz, .. } => *nnz = v,
                Encoding::Lowrank { rank, .. } => *rank = v % 9,
                Encoding::Rows { .. } | Encoding::Cast { .. } => {}
            }
            if v.is_multiple_of(11) {
                m.shape = vec![];
            } else if v.is_multiple_of(5) {
                m.shape = vec![v % 9, 1 << 40];
            } else if v.is_multiple_of(7) {
                m.shape.reverse();
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            #[test]
            fn encodings_decode_and_corruptions_never_panic(
                rows in 1usize..6,
                cols4 in 1usize..4,
                values in proptest::collection::vec(-2.0f32..2.0, 120),
                flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 0..4),
                meta_v in 0usize..10_000,
                resize in any::<prop::sample::Index>(),
            ) {
                let shape = [rows * 2, cols4 * 4];
                let values = &values[..shape[0] * shape[1]];
                let encs = encodings(values, &shape);
                prop_assert!(encs.len() >= 6, "{} encodings", encs.len());
                for (meta, parts) in encs {
                    let back = decode(&meta, &mut parts.as_slice()).unwrap();
                    prop_assert_eq!(back.len(), values.len());
                    // Byte flips in the parts.
                    let mut p2 = parts.clone();
                    for (pi, bi, b) in &flips {
                        let part = &mut p2[pi.index(parts.len())];
                        if !part.bytes.is_empty() {
                            let i = bi.index(part.bytes.len());
                            part.bytes[i] = *b;
                        }
                    }
                    let _ = decode(&meta, &mut p2.as_slice());
                    // A part of another length (shape kept consistent with its bytes).
                    let mut p3 = parts.clone();
                    let part = &mut p3[resize.index(parts.len())];
                    let keep = part.bytes.len() / 2 / part.dtype.size();
                    part.bytes.truncate(keep * part.dtype.size());
                    part.shape = vec![keep];
                    prop_assert!(decode(&meta, &mut p3.as_slice()).is_err());
                    // A missing part.
                    prop_assert!(decode(&meta, &mut &parts[1..]).is_err());
                    // Lying metadata.
                    let mut m2 = meta.clone();
                    mutate_meta(&mut m2, meta_v);
                    let _ = decode(&m2, &mut parts.as_slice());
                }
            }
        }
    }
}
