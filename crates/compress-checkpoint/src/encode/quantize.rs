//! Integer quantization of tensors: packed codes with scales (and zero points).

use compress_quant::pack::{pack_bits, packed_len};
use compress_quant::{
    Calibration, Granularity, IntScheme, QTensor, QuantScheme, ScaleDtype, quantize_calibrated,
};
use serde_json::{Map, Value, json};

use crate::decode::Part;
use crate::error::{CheckpointError, Result};
use crate::format::{Encoding, GranularityName, SchemeName, encode_values, part_name};
use crate::metrics::ErrSums;
use crate::pipeline::{Encoder, Outcome, Streamed, check_finite, tensor_err};
use crate::reader::{Dtype, SafetensorsFile, TensorInfo};
use crate::writer::ShardWriter;

/// Elements per streamed chunk (4 MiB of f32).
const CHUNK_ELEMS: usize = 1 << 20;

/// Which elements share a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum GranularityArg {
    /// One scale per tensor.
    Tensor,
    /// One scale per output channel (index along --axis, default 0).
    Channel,
    /// One scale per --group-size consecutive elements of the last dimension.
    Group,
}

/// Symmetric or affine codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SchemeArg {
    /// Signed codes, no zero point.
    #[default]
    Sym,
    /// Unsigned codes with a zero point (exact 0.0).
    Affine,
}

/// How each scale's clipping range is chosen from the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CalibrateArg {
    /// The full min-max range (no clipping).
    #[default]
    Minmax,
    /// The clip range minimising the expected squared error at this bit width.
    Mse,
    /// The --percentile-th percentile of |w| (and its mirror).
    Percentile,
    /// TensorRT's KL-divergence threshold.
    Entropy,
}

/// Storage of the scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ScaleDtypeArg {
    /// 32-bit float scales.
    F32,
    /// 16-bit float scales (rounded up so the range never shrinks).
    F16,
}

/// Options of integer quantization (the `netcompress quantize` flags).
///
/// [`QuantizeOptions::new`] gives the defaults: symmetric, per channel along axis 0 (per
/// group of 32 with F16 scales when `group_size` is set), min-max calibration.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct QuantizeOptions {
    /// Bits per weight: 8, 4, 3 or 2 (any of 2..=8 works).
    #[cfg_attr(feature = "clap", arg(long))]
    pub bits: u32,
    /// Scale granularity [default: group when --group-size is given, else channel].
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub granularity: Option<GranularityArg>,
    /// Elements per group (group granularity) [default: 32]. When it does not divide a
    /// tensor's last dimension the largest divisor >= 8 below it is used, else per channel.
    #[cfg_attr(feature = "clap", arg(long, alias = "group"))]
    pub group_size: Option<usize>,
    /// Symmetric or affine codes.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "sym"))]
    pub scheme: SchemeArg,
    /// Scale storage [default: f16 for group granularity, f32 otherwise].
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub scale_dtype: Option<ScaleDtypeArg>,
    /// Channel axis for channel granularity.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0))]
    pub axis: usize,
    /// Calibration of each scale's clipping range from the weights.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "minmax"))]
    pub calibrate: CalibrateArg,
    /// Percentile for --calibrate percentile, in (50, 100] [default: 99.99].
    #[cfg_attr(feature = "clap", arg(long))]
    pub percentile: Option<f64>,
}

impl QuantizeOptions {
    /// The defaults at `bits` bits.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            granularity: None,
            group_size: None,
            scheme: SchemeArg::Sym,
            scale_dtype: None,
            axis: 0,
            calibrate: CalibrateArg::Minmax,
            percentile: None,
        }
    }
}

/// The quantize encoder: a validated base scheme applied per tensor.
#[derive(Debug, Clone)]
pub struct QuantizeEncoder {
    bits: u32,
    granularity: GranularityArg,
    group_size: usize,
    affine: bool,
    f16_scales: bool,
    axis: usize,
    /// Elements per chunk when streaming.
    chunk_elems: usize,
    /// Range calibration.
    method: Calibration,
}

impl QuantizeEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidOption`] for bits outside 2..=8, a zero group size, a group
    /// size with a non-group granularity, or a percentile without percentile calibration.
    pub fn new(a: &QuantizeOptions) -> Result<Self> {
        super::check_bits(a.bits, 2..=8, "8, 4, 3 or 2")?;
        let granularity = a.granularity.unwrap_or(if a.group_size.is_some() {
            GranularityArg::Group
        } else {
            GranularityArg::Channel
        });
        if a.group_size.is_some() && granularity != GranularityArg::Group {
            return Err(CheckpointError::option(
                "--group-size",
                format!("only applies to --granularity group (got {granularity:?})"),
            ));
        }
        let group_size = a.group_size.unwrap_or(32);
        if group_size == 0 {
            return Err(CheckpointError::option(
                "--group-size",
                "must be at least 1",
            ));
        }
        if a.percentile.is_some() && a.calibrate != CalibrateArg::Percentile {
            return Err(CheckpointError::option(
                "--percentile",
                format!(
                    "only applies to --calibrate percentile (got {:?})",
                    a.calibrate
                ),
            ));
        }
        let f16_scales = match a.scale_dtype {
            Some(d) => d == ScaleDtypeArg::F16,
            None => granularity == GranularityArg::Group,
        };
        let method = match a.calibrate {
            CalibrateArg::Minmax => Calibration::MinMax,
            CalibrateArg::Mse => Calibration::Mse,
            CalibrateArg::Percentile => Calibration::Percentile {
                percentile: a.percentile.unwrap_or(99.99),
            },
            CalibrateArg::Entropy => Calibration::Entropy,
        };
        method
            .validate()
            .map_err(|e| CheckpointError::option("--calibrate", e.to_string()))?;
        Ok(Self {
            method,
            bits: a.bits,
            granularity,
            group_size,
            affine: a.scheme == SchemeArg::Affine,
            f16_scales,
            axis: a.axis,
            chunk_elems: CHUNK_ELEMS,
        })
    }

    /// The scheme for a tensor of `shape`, and a note when the group size was adapted.
    fn scheme_for(&self, shape: &[usize]) -> (IntScheme, Option<String>) {
        let mut s = IntScheme::new(self.bits);
        if self.affine {
            s = s.affine();
        }
        if self.f16_scales {
            s = s.f16_scales();
        }
        let mut note = None;
        s = match self.granularity {
            GranularityArg::Tensor => s,
            GranularityArg::Channel => s.per_channel(self.axis),
            GranularityArg::Group => {
                let last = shape.last().copied().unwrap_or(1);
                let g = self.group_size;
                if last % g == 0 {
                    s.per_group(g)
                } else {
                    let d = (1..=g.min(last)).rev().find(|d| last % d == 0).unwrap_or(1);
                    if d >= 8 {
                        note = Some(format!("group size {g} does not divide {last}; used {d}"));
                        s.per_group(d)
                    } else {
                        note = Some(format!(
                            "group size {g} does not divide {last}; used per-channel"
                        ));
                        s.per_channel(0)
                    }
                }
            }
        };
        (s, note)
    }
}

/// The `(granularity, axis, group_size)` fields of an integer scheme.
fn granularity_fields(g: Granularity) -> (GranularityName, Option<usize>, Option<usize>) {
    match g {
        Granularity::PerTensor => (GranularityName::Tensor, None, None),
        Granularity::PerChannel { axis } => (GranularityName::Channel, Some(axis), None),
        Granularity::PerGroup { group_size } => (GranularityName::Group, None, Some(group_size)),
    }
}

fn int_encoding(name: &str, s: IntScheme) -> Encoding {
    let (granularity, axis, group_size) = granularity_fields(s.granularity);
    Encoding::Int {
        bits: s.bits,
        scheme: if s.affine {
            SchemeName::Affine
        } else {
            SchemeName::Sym
        },
        granularity,
        axis,
        group_size,
        codes: part_name(name, "codes"),
        scales: part_name(name, "scales"),
        zeros: s.affine.then(|| part_name(name, "zeros")),
        qshape: None,
    }
}

fn scale_dtype(s: IntScheme) -> Dtype {
    if s.scale_dtype == ScaleDtype::F16 {
        Dtype::F16
    } else {
        Dtype::F32
    }
}

impl QuantizeEncoder {
    /// Quantizes `t` in chunks of whole rows read straight from `f`: per-channel (axis 0)
    /// and per-group parameters never span rows, and a per-tensor range is found in a first
    /// pass, so every chunk gets exactly the codes, scales and zero points of the whole
    /// tensor. Chunks hold a multiple of 8 rows, so their packed codes (and zero points)
    /// concatenate byte-exactly. Each chunk is dequantized again to measure the error.
    fn stream(
        &self,
        t: &TensorInfo,
        f: &mut SafetensorsFile,
        w: &mut ShardWriter,
    ) -> Result<Option<Streamed>> {
        let (scheme, note) = self.scheme_for(&t.shape);
        let per_tensor = scheme.granularity == Granularity::PerTensor;
        if matches!(scheme.granularity, Granularity::PerChannel { axis } if axis != 0)
            || (per_tensor && self.method != Calibration::MinMax)
        {
            // Parameters spanning rows need the whole tensor (a calibrated per-tensor range
            // is computed from a histogram of all values).
            return Ok(None);
        }
        scheme.validate().map_err(|e| tensor_err(t, e))?;
        let (n, rows) = (t.numel(), t.shape[0]);
        let inner = n / rows;
        let chunk_rows = (self.chunk_elems / inner).max(1).next_multiple_of(8);
        let (mut scratch, mut chunk, mut back) = (Vec::new(), Vec::new(), Vec::new());
        let range = if scheme.granularity == Granularity::PerTensor {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for r0 in (0..rows).step_by(chunk_rows) {
                let cr = chunk_rows.min(rows - r0);
                f.read_f32_range(t, r0 * inner, cr * inner, &mut scratch, &mut chunk)?;
                if let Some(i) = chunk.iter().position(|v| !v.is_finite()) {
                    return Err(tensor_err(
                        t,
                        format!(
                            "non-finite value {} at flat index {}",
                            chunk[i],
                            r0 * inner + i
                        ),
                    ));
                }
                for &v in &chunk {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            Some((lo, hi))
        } else {
            None
        };
        let codes_len = packed_len(n, scheme.bits);
        w.begin(
            &part_name(&t.name, "codes"),
            "U8",
            &[codes_len],
            codes_len as u64,
        )?;
        let (mut scales, mut zps, mut sums) = (Vec::new(), Vec::new(), ErrSums::default());
        for r0 in (0..rows).step_by(chunk_rows) {
            let cr = chunk_rows.min(rows - r0);
            f.read_f32_range(t, r0 * inner, cr * inner, &mut scratch, &mut chunk)?;
            let mut shape = t.shape.clone();
            shape[0] = cr;
            let q = match range {
                Some(r) => QTensor::quantize_with_ranges(&chunk, &shape, scheme, &[r]),
                None => quantize_calibrated(&chunk, &shape, scheme, self.method),
            }
            .map_err(|e| tensor_err(t, e))?;
            w.append(q.data())?;
            if range.is_none() || scales.is_empty() {
                scales.extend_from_slice(q.scales());
                zps.extend(q.zero_points().iter().map(|&z| z as u8));
            }
            back.resize(chunk.len(), 0.0);
            q.dequantize_into(&mut back);
            check_finite(t, q.scales(), "scale")?;
            check_finite(t, &back, "dequantized value")?;
            sums.add(&ErrSums::of(&chunk, &back));
        }
        let sd = scale_dtype(scheme);
        let scale_bytes = encode_values(&scales, sd);
        w.add(
            &part_name(&t.name, "scales"),
            sd.name(),
            &[scales.len()],
            &scale_bytes,
        )?;
        let mut bytes_out = (codes_len + scale_bytes.len()) as u64;
        if scheme.affine {
            let z = pack_bits(&zps, scheme.bits);
            w.add(&part_name(&t.name, "zeros"), "U8", &[z.len()], &z)?;
            bytes_out += z.len() as u64;
        }
        Ok(Some(Streamed {
            encoding: int_encoding(&t.name, scheme),
            sums,
            bytes_out,
            extra: extra_of(scheme, note, self.method),
        }))
    }
}

fn extra_of(s: IntScheme, note: Option<String>, method: Calibration) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("calibration".into(), json!(method.label()));
    if let Some(n) = note {
        extra.insert("note".into(), Value::String(n));
    }
    extra.insert("scheme".into(), json!(QuantScheme::Int(s).label()));
    extra
}

impl Encoder for QuantizeEncoder {
    fn encode_stream(
        &mut self,
        t: &TensorInfo,
        f: &mut SafetensorsFile,
        w: &mut ShardWriter,
    ) -> Result<Option<Streamed>> {
        self.stream(t, f, w)
    }

    fn needs_raw(&self) -> bool {
        false
    }

    fn encode(&mut self, t: &TensorInfo, values: &[f32], _raw: &[u8]) -> Result<Outcome> {
        let (scheme, note) = self.scheme_for(&t.shape);
        let q = quantize_calibrated(values, &t.shape, scheme, self.method)
            .map_err(|e| tensor_err(t, e))?;
        Ok(qtensor_outcome(&t.name, &q, scheme, note, self.method))
    }
}

/// The parts and encoding of a quantized tensor.
pub fn qtensor_outcome(
    name: &str,
    q: &QTensor,
    s: IntScheme,
    note: Option<String>,
    method: Calibration,
) -> Outcome {
    let (encoding, parts) = int_parts(name, q, s);
    Outcome::Encoded {
        encoding,
        parts,
        extra: extra_of(s, note, method),
    }
}

/// The `int` encoding and parts (codes, scales, zero points) of `q`, quantized with `s`, for
/// tensor `name` (also used by `QuantizedModel` files).
pub(crate) fn int_parts(name: &str, q: &QTensor, s: IntScheme) -> (Encoding, Vec<Part>) {
    let sd = scale_dtype(s);
    let u8d = Dtype::Other("U8", 1);
    let mut parts = vec![
        Part::of(name, "codes", u8d, vec![q.data().len()], q.data().to_vec()),
        Part::of(
            name,
            "scales",
            sd,
            vec![q.scales().len()],
            encode_values(q.scales(), sd),
        ),
    ];
    if s.affine {
        let z = q.packed_zero_points();
        parts.push(Part::of(name, "zeros", u8d, vec![z.len()], z));
    }
    (int_encoding(name, s), parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{commit, f32_bytes};
    use proptest::prelude::*;

    fn args(
        bits: u32,
        granularity: GranularityArg,
        group_size: Option<usize>,
        scheme: SchemeArg,
    ) -> QuantizeOptions {
        QuantizeOptions {
            granularity: Some(granularity),
            group_size,
            scheme,
            ..QuantizeOptions::new(bits)
        }
    }

    #[test]
    fn percentile_without_percentile_calibration_is_rejected() {
        let mut o = QuantizeOptions::new(8);
        o.percentile = Some(99.0);
        let e = QuantizeEncoder::new(&o).unwrap_err();
        assert!(
            matches!(&e, CheckpointError::InvalidOption { name, .. } if name == "--percentile"),
            "{e}"
        );
        o.calibrate = CalibrateArg::Percentile;
        assert!(QuantizeEncoder::new(&o).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Streaming in chunks of rows writes exactly the bytes of whole-tensor quantization.
        #[test]
        fn streamed_chunks_equal_whole_tensor_quantization(
            rows in 1usize..40,
            values in proptest::collection::vec(-3.0f32..3.0, 40 * 8),
            bits in prop::sample::select(vec![2u32, 3, 4, 8]),
            g in prop::sample::select(vec![GranularityArg::Tensor, GranularityArg::Channel, GranularityArg::Group]),
            affine in any::<bool>(),
            mse in any::<bool>(),
        ) {
            let shape = [rows, 8];
            let x = &values[..rows * 8];
            let scheme = if affine { SchemeArg::Affine } else { SchemeArg::Sym };
            let gs = (g == GranularityArg::Group).then_some(4);
            let mut a = args(bits, g, gs, scheme);
            if mse {
                a.calibrate = CalibrateArg::Mse;
            }
            let mut enc = QuantizeEncoder::new(&a).unwrap();
            enc.chunk_elems = 8 * 3; // chunks of 8 rows
            let dir = std::env::temp_dir().join(format!("nc-stream-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (inp, out) = (dir.join("in.safetensors"), dir.join("out.safetensors"));
            let mut w = ShardWriter::with_reserve(&inp, 0).unwrap();
            w.add("w", "F32", &shape, &f32_bytes(x)).unwrap();
            commit(vec![w.assemble().unwrap()]).unwrap();
            let mut f = SafetensorsFile::open(&inp).unwrap();
            let t = f.tensors[0].clone();
            let mut w = ShardWriter::with_reserve(&out, 256).unwrap();
            let Some(s) = enc.encode_stream(&t, &mut f, &mut w).unwrap() else {
                // Only a calibrated per-tensor range needs the whole tensor.
                drop((w, f));
                std::fs::remove_dir_all(&dir).unwrap();
                prop_assert!(mse && g == GranularityArg::Tensor);
                return Ok(());
            };
            commit(vec![w.assemble().unwrap()]).unwrap();
            let Outcome::Encoded { encoding, parts, .. } = enc.encode(&t, x, &[]).unwrap() else {
                panic!("not encoded");
            };
            prop_assert_eq!(&s.encoding, &encoding);
            let mut g2 = SafetensorsFile::open(&out).unwrap();
            for p in &parts {
                let info = g2.tensors.iter().find(|i| i.name == p.name).unwrap().clone();
                prop_assert_eq!(&g2.read_raw(&info).unwrap(), &p.bytes, "{}", p.name);
            }
            let meta = crate::format::TensorMeta { dtype: "F32".into(), shape: shape.to_vec(), encoding };
            let back = crate::decode::decode(&meta, &mut parts.as_slice()).unwrap();
            let whole = ErrSums::of(x, &back).metrics();
            prop_assert_eq!(whole.identical, s.sums.metrics().identical);
            if let (Some(a), Some(b)) = (whole.sqnr_db, s.sums.metrics().sqnr_db) {
                prop_assert!((a - b).abs() < 1e-6);
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
