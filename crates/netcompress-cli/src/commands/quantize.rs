//! `netcompress quantize`: packed integer codes with scales (and zero points).

use clap::{Args, ValueEnum};
use compress_quant::{IntScheme, QTensor, QuantScheme};
use serde_json::{Map, Value, json};

use super::pipeline::{Encoder, Outcome, print_summary, run_encode, tensor_err};
use super::{IoArgs, SelectArgs};
use crate::decode::Part;
use crate::error::{CliError, Result};
use crate::format::{Encoding, GranularityName, SchemeName, encode_values, part_name};
use crate::safetensors_io::{Dtype, TensorInfo};

/// Which elements share a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GranularityArg {
    /// One scale per tensor.
    Tensor,
    /// One scale per output channel (index along --axis, default 0).
    Channel,
    /// One scale per --group-size consecutive elements of the last dimension.
    Group,
}

/// Symmetric or affine codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SchemeArg {
    /// Signed codes, no zero point.
    Sym,
    /// Unsigned codes with a zero point (exact 0.0).
    Affine,
}

/// Storage of the scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScaleDtypeArg {
    /// 32-bit float scales.
    F32,
    /// 16-bit float scales (rounded up so the range never shrinks).
    F16,
}

/// Arguments of `quantize`.
#[derive(Debug, Clone, Args)]
pub(crate) struct QuantizeArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Bits per weight: 8, 4, 3 or 2 (any of 2..=8 works).
    #[arg(long)]
    pub(crate) bits: u32,
    /// Scale granularity [default: group when --group-size is given, else channel].
    #[arg(long, value_enum)]
    pub(crate) granularity: Option<GranularityArg>,
    /// Elements per group (group granularity) [default: 32]. When it does not divide a
    /// tensor's last dimension the largest divisor >= 8 below it is used, else per channel.
    #[arg(long, alias = "group")]
    pub(crate) group_size: Option<usize>,
    /// Symmetric or affine codes.
    #[arg(long, value_enum, default_value = "sym")]
    pub(crate) scheme: SchemeArg,
    /// Scale storage [default: f16 for group granularity, f32 otherwise].
    #[arg(long, value_enum)]
    pub(crate) scale_dtype: Option<ScaleDtypeArg>,
    /// Channel axis for channel granularity.
    #[arg(long, default_value_t = 0)]
    pub(crate) axis: usize,
}

/// The quantize encoder: a validated base scheme applied per tensor.
#[derive(Debug, Clone)]
pub(crate) struct QuantizeEncoder {
    bits: u32,
    granularity: GranularityArg,
    group_size: usize,
    affine: bool,
    f16_scales: bool,
    axis: usize,
}

impl QuantizeEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CliError::Usage`] for bits outside 2..=8, a zero group size, or a group size with a
    /// non-group granularity.
    pub(crate) fn new(a: &QuantizeArgs) -> Result<Self> {
        if !(2..=8).contains(&a.bits) {
            return Err(CliError::Usage(format!("--bits {} is not supported: use 8, 4, 3 or 2", a.bits)));
        }
        let granularity = a.granularity.unwrap_or(if a.group_size.is_some() {
            GranularityArg::Group
        } else {
            GranularityArg::Channel
        });
        if a.group_size.is_some() && granularity != GranularityArg::Group {
            return Err(CliError::Usage(format!(
                "--group-size only applies to --granularity group (got {granularity:?})"
            )));
        }
        let group_size = a.group_size.unwrap_or(32);
        if group_size == 0 {
            return Err(CliError::Usage("--group-size must be at least 1".into()));
        }
        let f16_scales = match a.scale_dtype {
            Some(d) => d == ScaleDtypeArg::F16,
            None => granularity == GranularityArg::Group,
        };
        Ok(Self {
            bits: a.bits,
            granularity,
            group_size,
            affine: a.scheme == SchemeArg::Affine,
            f16_scales,
            axis: a.axis,
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
                        note = Some(format!("group size {g} does not divide {last}; used per-channel"));
                        s.per_channel(0)
                    }
                }
            }
        };
        (s, note)
    }
}

impl Encoder for QuantizeEncoder {
    fn encode(&mut self, t: &TensorInfo, values: &[f32], _raw: &[u8]) -> Result<Outcome> {
        let (scheme, note) = self.scheme_for(&t.shape);
        let q = QTensor::quantize_slice(values, &t.shape, scheme).map_err(|e| tensor_err(t, e))?;
        Ok(qtensor_outcome(&t.name, &q, scheme, note))
    }
}

/// The parts and encoding of a quantized tensor.
pub(crate) fn qtensor_outcome(name: &str, q: &QTensor, s: IntScheme, note: Option<String>) -> Outcome {
    let (granularity, axis, group_size) = match s.granularity {
        compress_quant::Granularity::PerTensor => (GranularityName::Tensor, None, None),
        compress_quant::Granularity::PerChannel { axis } => (GranularityName::Channel, Some(axis), None),
        compress_quant::Granularity::PerGroup { group_size } => (GranularityName::Group, None, Some(group_size)),
    };
    let scale_dtype = if s.scale_dtype == compress_quant::ScaleDtype::F16 {
        Dtype::F16
    } else {
        Dtype::F32
    };
    let u8d = Dtype::Other("U8", 1);
    let mut parts = vec![
        Part {
            name: part_name(name, "codes"),
            dtype: u8d,
            shape: vec![q.data().len()],
            bytes: q.data().to_vec(),
        },
        Part {
            name: part_name(name, "scales"),
            dtype: scale_dtype,
            shape: vec![q.scales().len()],
            bytes: encode_values(q.scales(), scale_dtype),
        },
    ];
    let zeros = s.affine.then(|| {
        let z = q.packed_zero_points();
        parts.push(Part {
            name: part_name(name, "zeros"),
            dtype: u8d,
            shape: vec![z.len()],
            bytes: z,
        });
        part_name(name, "zeros")
    });
    let mut extra = Map::new();
    if let Some(n) = note {
        extra.insert("note".into(), Value::String(n));
    }
    extra.insert("scheme".into(), json!(QuantScheme::Int(s).label()));
    Outcome::Encoded {
        encoding: Encoding::Int {
            bits: s.bits,
            scheme: if s.affine { SchemeName::Affine } else { SchemeName::Sym },
            granularity,
            axis,
            group_size,
            codes: part_name(name, "codes"),
            scales: part_name(name, "scales"),
            zeros,
        },
        parts,
        extra,
    }
}

/// Runs `quantize`.
///
/// # Errors
///
/// Option, input, encoding and output errors.
pub(crate) fn run(a: &QuantizeArgs) -> Result<()> {
    let mut enc = QuantizeEncoder::new(a)?;
    let summary = run_encode("quantize", &a.io, &a.select.selector()?, &mut enc)?;
    print_summary(&summary, a.io.json)
}
