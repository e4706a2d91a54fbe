//! Quantization schemes: bit width, granularity, symmetric or affine, scale precision, and
//! the f16 / bf16 float casts.

use compress_core::CoreError;

use crate::QuantError;

/// Which elements share one scale (and zero point).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Granularity {
    /// One scale for the whole tensor.
    #[default]
    PerTensor,
    /// One scale per index along `axis` (axis 0 = output channels of a Linear or Conv2d
    /// weight, as in PyTorch's `quantize_per_channel`).
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// One scale per run of `group_size` consecutive elements along the last (input)
    /// dimension, as torchao's group-wise int4 and candle's `Q4_0` blocks (32).
    PerGroup {
        /// Elements per group; must divide the last dimension.
        group_size: usize,
    },
}

/// How scales are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScaleDtype {
    /// 32-bit float scales.
    #[default]
    F32,
    /// 16-bit float scales (rounded up to the next f16, so the clip range never shrinks).
    F16,
}

impl ScaleDtype {
    /// Bytes per stored scale.
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// An integer quantization scheme.
///
/// - **Symmetric** (default): codes in `[-(2^(b-1) - 1), 2^(b-1) - 1]` (the restricted range
///   used by fbgemm and TensorRT for weights), `scale = absmax / (2^(b-1) - 1)`, zero point 0.
/// - **Affine**: codes in `[0, 2^b - 1]`, `scale = (max - min) / (2^b - 1)` over a range
///   that always contains 0, and an integer zero point so that 0.0 is exact.
///
/// Rounding is to nearest, ties to even, of `x * (1 / scale)`.
///
/// ```
/// use compress_quant::{Granularity, IntScheme};
/// let s = IntScheme::new(4).per_group(32).affine();
/// assert_eq!(s.bits, 4);
/// assert_eq!(s.granularity, Granularity::PerGroup { group_size: 32 });
/// assert_eq!(s.code_range(), (0, 15));
/// assert_eq!(IntScheme::new(8).code_range(), (-127, 127));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntScheme {
    /// Bits per code, `2..=8`.
    pub bits: u32,
    /// Which elements share a scale.
    pub granularity: Granularity,
    /// Whether there is a zero point (affine) or not (symmetric).
    pub affine: bool,
    /// Precision of the stored scales.
    pub scale_dtype: ScaleDtype,
}

impl IntScheme {
    /// A symmetric per-tensor scheme with f32 scales.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            granularity: Granularity::PerTensor,
            affine: false,
            scale_dtype: ScaleDtype::F32,
        }
    }

    /// Symmetric int8 per output channel (axis 0): the usual weight scheme.
    pub fn int8_per_channel() -> Self {
        Self::new(8).per_channel(0)
    }

    /// One scale per index along `axis`.
    #[must_use]
    pub fn per_channel(mut self, axis: usize) -> Self {
        self.granularity = Granularity::PerChannel { axis };
        self
    }

    /// One scale per `group_size` consecutive elements of the last dimension.
    #[must_use]
    pub fn per_group(mut self, group_size: usize) -> Self {
        self.granularity = Granularity::PerGroup { group_size };
        self
    }

    /// With a zero point.
    #[must_use]
    pub fn affine(mut self) -> Self {
        self.affine = true;
        self
    }

    /// Scales stored as f16.
    #[must_use]
    pub fn f16_scales(mut self) -> Self {
        self.scale_dtype = ScaleDtype::F16;
        self
    }

    /// The smallest and largest code.
    pub fn code_range(&self) -> (i32, i32) {
        if self.affine {
            (0, (1i32 << self.bits) - 1)
        } else {
            let m = (1i32 << (self.bits - 1)) - 1;
            (-m, m)
        }
    }

    /// Checks the bit width (and a non-zero group size).
    ///
    /// # Errors
    ///
    /// [`QuantError::UnsupportedBits`] outside `2..=8`; an invalid-config error for a group
    /// size of 0.
    pub fn validate(&self) -> Result<(), QuantError> {
        if !(2..=8).contains(&self.bits) {
            return Err(QuantError::UnsupportedBits {
                bits: self.bits,
                what: "IntScheme",
                supported: "2..=8 (1-bit lives in the binary module)",
            });
        }
        if let Granularity::PerGroup { group_size: 0 } = self.granularity {
            return Err(CoreError::config("group_size", "must be at least 1, got 0").into());
        }
        Ok(())
    }

    /// A short label such as `int8-sym-per-channel(0)` or `int4-affine-group(32)-f16`.
    pub fn label(&self) -> String {
        let g = match self.granularity {
            Granularity::PerTensor => "per-tensor".to_string(),
            Granularity::PerChannel { axis } => format!("per-channel({axis})"),
            Granularity::PerGroup { group_size } => format!("group({group_size})"),
        };
        let mode = if self.affine { "affine" } else { "sym" };
        let sd = match self.scale_dtype {
            ScaleDtype::F32 => "",
            ScaleDtype::F16 => "-f16",
        };
        format!("int{}-{mode}-{g}{sd}", self.bits)
    }
}

/// What a [`QTensor`](crate::QTensor) holds: integer codes or a 16-bit float cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuantScheme {
    /// Integer codes with scales (and zero points).
    Int(IntScheme),
    /// IEEE half precision (the `half` crate's `f16`), round to nearest even.
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa), round to nearest even.
    Bf16,
}

impl QuantScheme {
    /// A short label (`f16`, `bf16` or the integer scheme's label).
    pub fn label(&self) -> String {
        match self {
            Self::Int(s) => s.label(),
            Self::F16 => "f16".to_string(),
            Self::Bf16 => "bf16".to_string(),
        }
    }

    /// Checks the scheme.
    ///
    /// # Errors
    ///
    /// As [`IntScheme::validate`].
    pub fn validate(&self) -> Result<(), QuantError> {
        match self {
            Self::Int(s) => s.validate(),
            Self::F16 | Self::Bf16 => Ok(()),
        }
    }
}

impl From<IntScheme> for QuantScheme {
    fn from(s: IntScheme) -> Self {
        Self::Int(s)
    }
}
