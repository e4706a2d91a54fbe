//! [`QTensor`]: packed integer codes with scales and zero points, or an f16/bf16 cast.

mod layout;
mod params;

pub use compress_core::sqnr_db;
pub(crate) use layout::BlockLayout;
pub use params::qparams_from_range;

use compress_core::{CoreError, Float};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn};

use crate::error::{check_finite, non_finite};
use crate::kernels::quantize as qk;
use crate::pack::{pack_bits, packed_len, sign_extend, unpack_bits};
use crate::{IntScheme, QuantError, QuantScheme, ScaleDtype};

/// A quantized tensor: packed codes plus per-tensor / per-channel / per-group scales and
/// zero points, or a 16-bit float cast.
///
/// `n` codes of `b` bits take exactly `ceil(n * b / 8)` bytes (see [`crate::pack`]). Signed
/// (symmetric) codes are stored as `b`-bit two's complement; affine codes as unsigned values.
///
/// ```
/// use compress_quant::{IntScheme, QTensor};
/// use ndarray::{ArrayD, IxDyn};
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let w = ArrayD::from_shape_fn(IxDyn(&[4, 64]), |ix| ((ix[0] * 64 + ix[1]) as f32).sin());
/// let q = QTensor::quantize(&w, IntScheme::new(4).per_group(32))?;
/// assert_eq!(q.data().len(), 4 * 64 / 2); // 4-bit codes, packed
/// assert_eq!(q.scales().len(), 8); // one scale per group of 32
/// assert_eq!(q.size_bytes(), 128 + 8 * 4);
/// let back: ArrayD<f32> = q.dequantize();
/// let max_err = (&back - &w).iter().fold(0.0f32, |m, e| m.max(e.abs()));
/// assert!(max_err <= q.scales().iter().cloned().fold(0.0, f32::max) / 2.0 + 1e-6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QTensor {
    shape: Vec<usize>,
    scheme: QuantScheme,
    data: Vec<u8>,
    scales: Vec<f32>,
    zero_points: Vec<i32>,
}

pub(crate) fn to_f32_vec<F: Float, D: Dimension>(x: &ArrayRef<F, D>) -> Vec<f32> {
    x.iter().map(|v| v.as_f64() as f32).collect()
}

/// A parameter's effective value (through its parametrizations) as `f32`, row-major.
pub(crate) fn effective_f32<F: Float>(p: &compress_core::Param<F>) -> Vec<f32> {
    to_f32_vec(&p.effective())
}

/// The block layout of `x` under `scheme`, after checking the scheme, that `x` has `shape`'s
/// length and that it is finite.
fn finite_layout(x: &[f32], shape: &[usize], scheme: IntScheme) -> Result<BlockLayout, QuantError> {
    scheme.validate()?;
    check_len(x, shape)?;
    let lay = BlockLayout::new(shape, scheme.granularity, "x")?;
    check_finite(x, "x")?;
    Ok(lay)
}

impl QTensor {
    /// Quantizes `x` with min-max ranges (per tensor, channel or group as the scheme says).
    ///
    /// # Errors
    ///
    /// [`QuantError::UnsupportedBits`], [`QuantError::GroupSize`], a non-finite or empty
    /// input ([`CoreError::NonFinite`], [`CoreError::Empty`]), a channel axis out of range,
    /// or a value or scale that overflows f16.
    pub fn quantize<F: Float, D: Dimension>(
        x: &ArrayRef<F, D>,
        scheme: impl Into<QuantScheme>,
    ) -> Result<Self, QuantError> {
        Self::quantize_slice(&to_f32_vec(x), x.shape(), scheme)
    }

    /// Quantizes a row-major `f32` slice of the given shape (min-max ranges).
    ///
    /// # Errors
    ///
    /// As [`QTensor::quantize`], plus a shape mismatch if `x.len()` is not the product of
    /// `shape`.
    pub fn quantize_slice(
        x: &[f32],
        shape: &[usize],
        scheme: impl Into<QuantScheme>,
    ) -> Result<Self, QuantError> {
        let scheme = scheme.into();
        scheme.validate()?;
        check_len(x, shape)?;
        let QuantScheme::Int(s) = scheme else {
            return Self::cast(x, shape, scheme);
        };
        let lay = BlockLayout::new(shape, s.granularity, "x")?;
        let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); lay.params];
        for (b, block) in x.chunks_exact(lay.block_len).enumerate() {
            let (lo, hi, finite) = qk::min_max(block);
            if !finite {
                return Err(non_finite(x, "x"));
            }
            let r = &mut ranges[lay.param(b)];
            r.0 = r.0.min(lo);
            r.1 = r.1.max(hi);
        }
        Self::quantize_ranges_unchecked(x, shape, s, lay, &ranges)
    }

    /// Quantizes with given clipping ranges `(lo, hi)`, one per parameter set (1 per tensor,
    /// one per channel, or one per group in row-major order). Values outside a range are
    /// clipped. This is how calibrated ranges are applied.
    ///
    /// # Errors
    ///
    /// As [`QTensor::quantize_slice`], and an invalid-config error when `ranges` has the
    /// wrong length or holds a range with `lo > hi` or non-finite ends.
    pub fn quantize_with_ranges(
        x: &[f32],
        shape: &[usize],
        scheme: IntScheme,
        ranges: &[(f32, f32)],
    ) -> Result<Self, QuantError> {
        let lay = finite_layout(x, shape, scheme)?;
        Self::quantize_ranges_unchecked(x, shape, scheme, lay, ranges)
    }

    /// Quantizes with given scales and zero points (one per parameter set; zero points are
    /// ignored for symmetric schemes). Used to export fake-quantized (QAT) weights exactly.
    ///
    /// # Errors
    ///
    /// As [`QTensor::quantize_with_ranges`]; a scale that is not positive and finite, or a
    /// zero point outside the code range.
    pub fn quantize_with_params(
        x: &[f32],
        shape: &[usize],
        scheme: IntScheme,
        scales: &[f32],
        zero_points: &[i32],
    ) -> Result<Self, QuantError> {
        let lay = finite_layout(x, shape, scheme)?;
        let zps: Vec<i32> = if scheme.affine {
            zero_points.to_vec()
        } else {
            vec![0; lay.params]
        };
        if scales.len() != lay.params || zps.len() != lay.params {
            return Err(CoreError::config(
                "scales",
                format!(
                    "expected {} scales and zero points, got {} and {}",
                    lay.params,
                    scales.len(),
                    zps.len()
                ),
            )
            .into());
        }
        let (qlo, qhi) = scheme.code_range();
        if let Some(s) = scales
            .iter()
            .find(|s| !(**s > 0.0 && s.is_finite() && (1.0 / **s).is_finite()))
        {
            return Err(CoreError::config("scales", format!("bad scale {s}")).into());
        }
        if let Some(z) = zps.iter().find(|z| !(qlo..=qhi).contains(*z)) {
            return Err(
                CoreError::config("zero_points", format!("{z} outside {qlo}..={qhi}")).into(),
            );
        }
        Ok(Self::encode(x, shape, scheme, lay, scales.to_vec(), zps))
    }

    /// `x` is finite and matches `shape`; `lay` is its layout.
    fn quantize_ranges_unchecked(
        x: &[f32],
        shape: &[usize],
        scheme: IntScheme,
        lay: BlockLayout,
        ranges: &[(f32, f32)],
    ) -> Result<Self, QuantError> {
        if ranges.len() != lay.params {
            return Err(CoreError::config(
                "ranges",
                format!("expected {} ranges, got {}", lay.params, ranges.len()),
            )
            .into());
        }
        let mut scales = Vec::with_capacity(lay.params);
        let mut zero_points = Vec::with_capacity(lay.params);
        for &(lo, hi) in ranges {
            let (s, z) = qparams_from_range(lo, hi, scheme)?;
            scales.push(s);
            zero_points.push(z);
        }
        Ok(Self::encode(x, shape, scheme, lay, scales, zero_points))
    }

    /// Codes for valid inputs and parameters.
    fn encode(
        x: &[f32],
        shape: &[usize],
        scheme: IntScheme,
        lay: BlockLayout,
        scales: Vec<f32>,
        mut zero_points: Vec<i32>,
    ) -> Self {
        let (qlo, qhi) = scheme.code_range();
        let mut codes = vec![0u8; x.len()];
        for (b, (block, out)) in x
            .chunks_exact(lay.block_len)
            .zip(codes.chunks_exact_mut(lay.block_len))
            .enumerate()
        {
            let p = lay.param(b);
            let inv = 1.0 / scales[p];
            qk::quantize(
                block,
                inv,
                zero_points[p] as f32,
                qlo as f32,
                qhi as f32,
                out,
            );
        }
        let data = if scheme.bits == 8 {
            codes
        } else {
            pack_bits(&codes, scheme.bits)
        };
        if !scheme.affine {
            zero_points.clear();
        }
        Self {
            shape: shape.to_vec(),
            scheme: QuantScheme::Int(scheme),
            data,
            scales,
            zero_points,
        }
    }

    fn cast(x: &[f32], shape: &[usize], scheme: QuantScheme) -> Result<Self, QuantError> {
        if x.iter().any(|v| !v.is_finite()) {
            return Err(non_finite(x, "x"));
        }
        let mut data = Vec::with_capacity(2 * x.len());
        for (i, &v) in x.iter().enumerate() {
            let bits = if scheme == QuantScheme::F16 {
                let h = f16::from_f32(v);
                if h.is_infinite() {
                    return Err(CoreError::config(
                        "scheme",
                        format!("value {v} at flat index {i} overflows f16 (max 65504)"),
                    )
                    .into());
                }
                h.to_bits()
            } else {
                bf16::from_f32(v).to_bits()
            };
            data.extend_from_slice(&bits.to_le_bytes());
        }
        Ok(Self {
            shape: shape.to_vec(),
            scheme,
            data,
            scales: Vec::new(),
            zero_points: Vec::new(),
        })
    }

    /// Rebuilds a tensor from stored parts (used when loading a file).
    ///
    /// # Errors
    ///
    /// An invalid scheme, an empty shape, a data length that is not exactly the packed size,
    /// a wrong number of scales or zero points, a non-positive or non-finite scale, or a zero
    /// point outside the code range.
    pub fn from_parts(
        shape: Vec<usize>,
        scheme: QuantScheme,
        data: Vec<u8>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
    ) -> Result<Self, QuantError> {
        scheme.validate()?;
        let n: usize = shape.iter().product();
        let bad = |what: &str, expected: usize, got: usize| -> QuantError {
            CoreError::config(
                what.to_string(),
                format!("expected {expected}, got {got} for shape {shape:?}"),
            )
            .into()
        };
        match scheme {
            QuantScheme::Int(s) => {
                let lay = BlockLayout::new(&shape, s.granularity, "shape")?;
                if data.len() != packed_len(n, s.bits) {
                    return Err(bad("data bytes", packed_len(n, s.bits), data.len()));
                }
                if scales.len() != lay.params {
                    return Err(bad("scales", lay.params, scales.len()));
                }
                let nz = if s.affine { lay.params } else { 0 };
                if zero_points.len() != nz {
                    return Err(bad("zero points", nz, zero_points.len()));
                }
                if let Some(v) = scales.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
                    return Err(CoreError::config("scales", format!("bad scale {v}")).into());
                }
                let (lo, hi) = s.code_range();
                if let Some(z) = zero_points.iter().find(|z| !(lo..=hi).contains(*z)) {
                    return Err(CoreError::config(
                        "zero points",
                        format!("{z} outside {lo}..={hi}"),
                    )
                    .into());
                }
            }
            QuantScheme::F16 | QuantScheme::Bf16 => {
                if data.len() != 2 * n {
                    return Err(bad("data bytes", 2 * n, data.len()));
                }
            }
        }
        Ok(Self {
            shape,
            scheme,
            data,
            scales,
            zero_points,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements (never true for a successfully built tensor).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheme.
    pub fn scheme(&self) -> QuantScheme {
        self.scheme
    }

    /// The packed codes (or little-endian f16/bf16 bytes).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Scales, one per parameter set (empty for float casts). With f16 scales these are the
    /// exact f16 values, widened.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Zero points, one per parameter set for affine schemes, empty otherwise.
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }

    /// Zero points packed at the scheme's bit width, as stored on disk.
    pub fn packed_zero_points(&self) -> Vec<u8> {
        match self.scheme {
            QuantScheme::Int(s) => {
                let z: Vec<u8> = self.zero_points.iter().map(|&z| z as u8).collect();
                pack_bits(&z, s.bits)
            }
            _ => Vec::new(),
        }
    }

    /// Exact storage size in bytes: packed codes, scales at their dtype and zero points
    /// packed at the code width (metadata such as the shape is not counted).
    pub fn size_bytes(&self) -> usize {
        match self.scheme {
            QuantScheme::Int(s) => {
                self.data.len()
                    + self.scales.len() * s.scale_dtype.bytes()
                    + packed_len(self.zero_points.len(), s.bits)
            }
            _ => self.data.len(),
        }
    }

    /// The integer codes, unpacked and sign-extended (`q`, so that `x ~ (q - zp) * scale`).
    /// Empty for float casts.
    pub fn codes(&self) -> Vec<i32> {
        let QuantScheme::Int(s) = self.scheme else {
            return Vec::new();
        };
        let raw = unpack_bits(&self.data, s.bits, self.len());
        if s.affine {
            raw.into_iter().map(i32::from).collect()
        } else {
            raw.into_iter().map(|c| sign_extend(c, s.bits)).collect()
        }
    }

    /// Dequantizes the elements `start..start + out.len()` (row-major order) of an integer
    /// tensor into `out`, with the same operations as [`QTensor::dequantize_into`],
    /// unpacking their codes through `codes` (scratch, grown as needed).
    ///
    /// # Panics
    ///
    /// For a float cast, a range past the end, or a start that is not on a byte boundary of
    /// the packed codes (`start * bits % 8 != 0`).
    #[track_caller]
    pub(crate) fn dequantize_range_into(&self, start: usize, out: &mut [f32], codes: &mut Vec<u8>) {
        let QuantScheme::Int(s) = self.scheme else {
            panic!("dequantize_range_into needs an integer tensor");
        };
        let (end, bits) = (start + out.len(), s.bits as usize);
        assert!(
            end <= self.len(),
            "range {start}..{end} past {}",
            self.len()
        );
        assert!(
            (start * bits).is_multiple_of(8),
            "start {start} not byte-aligned"
        );
        // Built tensors always have a valid layout.
        let Ok(lay) = BlockLayout::new(&self.shape, s.granularity, "x") else {
            return;
        };
        if codes.len() < out.len() {
            codes.resize(out.len(), 0);
        }
        let codes = &mut codes[..out.len()];
        crate::pack::unpack_bits_into(&self.data[start * bits / 8..], s.bits, codes);
        let mut e = start;
        while e < end {
            let b = e / lay.block_len;
            let stop = ((b + 1) * lay.block_len).min(end);
            let (p, q) = (lay.param(b), &codes[e - start..stop - start]);
            let o = &mut out[e - start..stop - start];
            if s.affine {
                let z = self.zero_points.get(p).copied().unwrap_or(0);
                qk::dequantize(q, self.scales[p], z, o);
            } else {
                for (o, &c) in o.iter_mut().zip(q) {
                    *o = sign_extend(c, s.bits) as f32 * self.scales[p];
                }
            }
            e = stop;
        }
    }

    /// Dequantizes into a new array.
    pub fn dequantize<F: Float>(&self) -> ArrayD<F> {
        let mut out = vec![0.0f32; self.len()];
        self.dequantize_into(&mut out);
        let v: Vec<F> = out.into_iter().map(|x| F::lit(f64::from(x))).collect();
        // The length always matches the shape.
        ArrayD::from_shape_vec(IxDyn(&self.shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[])))
    }

    /// Dequantizes into a caller's row-major buffer.
    ///
    /// # Panics
    ///
    /// If `out.len()` is not the number of elements.
    #[track_caller]
    pub fn dequantize_into(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.len(), "output buffer length");
        let s = match self.scheme {
            QuantScheme::Int(s) => s,
            QuantScheme::F16 => {
                for (o, c) in out.iter_mut().zip(self.data.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
                return;
            }
            QuantScheme::Bf16 => {
                for (o, c) in out.iter_mut().zip(self.data.chunks_exact(2)) {
                    *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                }
                return;
            }
        };
        // Built tensors always have a valid layout.
        let Ok(lay) = BlockLayout::new(&self.shape, s.granularity, "x") else {
            return;
        };
        let zp = |p: usize| self.zero_points.get(p).copied().unwrap_or(0);
        if s.bits == 8 {
            for (b, out) in out.chunks_exact_mut(lay.block_len).enumerate() {
                let p = lay.param(b);
                let q = &self.data[b * lay.block_len..(b + 1) * lay.block_len];
                if s.affine {
                    qk::dequantize(q, self.scales[p], zp(p), out);
                } else {
                    qk::dequantize_signed_bytes(q, self.scales[p], out);
                }
            }
            return;
        }
        let codes = unpack_bits(&self.data, s.bits, self.len());
        for (b, out) in out.chunks_exact_mut(lay.block_len).enumerate() {
            let p = lay.param(b);
            let (scale, z) = (self.scales[p], zp(p));
            let q = &codes[b * lay.block_len..(b + 1) * lay.block_len];
            if s.affine {
                qk::dequantize(q, scale, z, out);
            } else {
                for (o, &c) in out.iter_mut().zip(q) {
                    *o = sign_extend(c, s.bits) as f32 * scale;
                }
            }
        }
    }

    /// The scale dtype for integer schemes.
    pub fn scale_dtype(&self) -> Option<ScaleDtype> {
        match self.scheme {
            QuantScheme::Int(s) => Some(s.scale_dtype),
            _ => None,
        }
    }
}

fn check_len(x: &[f32], shape: &[usize]) -> Result<(), QuantError> {
    let n: usize = shape.iter().product();
    if x.len() != n {
        return Err(CoreError::shape("x", &[n], &[x.len()]).into());
    }
    Ok(())
}
