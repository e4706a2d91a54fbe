//! The weight grid shared by round-to-nearest, GPTQ and AWQ: asymmetric (affine) min-max
//! codes per output row and group of input columns, as the `int` encoding of the checkpoint
//! format and [`QTensor`]'s affine per-group scheme store them.

use compress_core::CoreError;
use ndarray::{Array2, ArrayView2};

use crate::pack::pack_bits;
use crate::{IntScheme, QTensor, QuantError, QuantScheme};

/// Bit width and grouping of a weight-only quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightQuant {
    /// Bits per code, `2..=8`.
    pub bits: u32,
    /// Input columns per scale (`None`: one scale per output row). Must divide the input
    /// width of every quantized layer.
    pub group_size: Option<usize>,
}

impl WeightQuant {
    /// `bits` with groups of `group_size` (`None` for per-row scales).
    pub fn new(bits: u32, group_size: Option<usize>) -> Self {
        Self { bits, group_size }
    }

    /// The group width for a layer of `in_features` inputs.
    ///
    /// # Errors
    ///
    /// [`QuantError::UnsupportedBits`] outside `2..=8`; [`QuantError::GroupSize`] naming
    /// `path` when the group is 0 or does not divide `in_features`.
    pub fn group_for(&self, path: &str, in_features: usize) -> Result<usize, QuantError> {
        if !(2..=8).contains(&self.bits) {
            return Err(QuantError::UnsupportedBits {
                bits: self.bits,
                what: "calibrated weight quantization",
                supported: "2..=8",
            });
        }
        let g = self.group_size.unwrap_or(in_features);
        if g == 0 || in_features == 0 || !in_features.is_multiple_of(g) {
            return Err(QuantError::GroupSize {
                path: path.to_string(),
                group_size: g,
                dim: 1,
                len: in_features,
            });
        }
        Ok(g)
    }

    /// Largest code, `2^bits - 1`.
    pub fn max_code(&self) -> u32 {
        (1u32 << self.bits) - 1
    }
}

/// Scale and zero point of one row group: `x ~ (q - zero) * scale`, `q in 0..=maxq`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// The step.
    pub scale: f32,
    /// The code of 0.0.
    pub zero: i32,
    /// The largest code.
    pub maxq: i32,
}

impl Grid {
    /// The min-max grid of `values` over a range widened to contain 0 (an all-zero group
    /// gets the range `[-1, 1]`), as GPTQ's reference quantizer and [`QTensor`]'s affine
    /// scheme.
    pub fn fit(values: impl IntoIterator<Item = f32>, maxq: u32) -> Self {
        let (mut lo, mut hi) = (0.0f32, 0.0f32);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo == 0.0 && hi == 0.0 {
            (lo, hi) = (-1.0, 1.0);
        }
        let scale = (hi - lo) / maxq as f32;
        let zero = (-lo / scale).round().clamp(0.0, maxq as f32) as i32;
        Self {
            scale,
            zero,
            maxq: maxq as i32,
        }
    }

    /// The code of `x` (round to nearest, clamped).
    pub fn code(&self, x: f32) -> u8 {
        ((x / self.scale).round() as i32 + self.zero).clamp(0, self.maxq) as u8
    }

    /// The value of code `q`.
    pub fn value(&self, q: u8) -> f32 {
        (i32::from(q) - self.zero) as f32 * self.scale
    }

    /// `x` rounded to the grid.
    pub fn round(&self, x: f32) -> f32 {
        self.value(self.code(x))
    }
}

/// A quantized weight matrix `[out, in]`: unpacked codes, and per row group grids.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// The bit width and grouping.
    pub quant: WeightQuant,
    /// Input columns per grid.
    pub group: usize,
    /// Codes, row-major.
    pub codes: Vec<u8>,
    /// Grids, row-major `[out, in / group]`.
    pub grids: Vec<Grid>,
}

impl QuantizedWeight {
    /// The grid of element `(row, col)`.
    pub fn grid(&self, row: usize, col: usize) -> Grid {
        self.grids[row * (self.shape[1] / self.group) + col / self.group]
    }

    /// The dequantized matrix.
    pub fn dequantize(&self) -> Array2<f32> {
        let [n, k] = self.shape;
        Array2::from_shape_fn((n, k), |(r, c)| {
            self.grid(r, c).value(self.codes[r * k + c])
        })
    }

    /// The packed tensor (affine per-group scheme with f32 scales; a group of the whole
    /// row when there are no groups).
    ///
    /// # Errors
    ///
    /// Scales that are not positive and finite (non-finite weights upstream).
    pub fn to_qtensor(&self) -> Result<QTensor, QuantError> {
        let scheme = IntScheme::new(self.quant.bits)
            .per_group(self.group)
            .affine();
        QTensor::from_parts(
            self.shape.to_vec(),
            QuantScheme::Int(scheme),
            pack_bits(&self.codes, self.quant.bits),
            self.grids.iter().map(|g| g.scale).collect(),
            self.grids.iter().map(|g| g.zero).collect(),
        )
    }

    /// Bytes of the packed codes, f32 scales and packed zero points.
    pub fn size_bytes(&self) -> usize {
        let b = self.quant.bits as usize;
        (self.codes.len() * b).div_ceil(8)
            + 4 * self.grids.len()
            + (self.grids.len() * b).div_ceil(8)
    }
}

/// Round-to-nearest of `w` (`[out, in]`) on the min-max grid of each row group.
///
/// # Errors
///
/// As [`WeightQuant::group_for`]; [`CoreError::NonFinite`] for a NaN or infinite weight.
pub fn quantize_rtn(
    path: &str,
    w: &ArrayView2<'_, f32>,
    quant: WeightQuant,
) -> Result<QuantizedWeight, QuantError> {
    let g = quant.group_for(path, w.ncols())?;
    check_finite(path, w.iter().copied())?;
    Ok(quantize_groups(w, quant, g, |_, chunk| {
        Grid::fit(chunk.iter().copied(), quant.max_code())
    }))
}

/// Codes of `w` on the grid `grid_of(row group index, values)` gives each row group of `g`
/// columns (`g` already checked to divide the width).
pub(crate) fn quantize_groups(
    w: &ArrayView2<'_, f32>,
    quant: WeightQuant,
    g: usize,
    mut grid_of: impl FnMut(usize, &[f32]) -> Grid,
) -> QuantizedWeight {
    let (n, k) = w.dim();
    let mut codes = Vec::with_capacity(n * k);
    let mut grids = Vec::with_capacity(n * k / g);
    for row in w.rows() {
        let row = row.to_vec();
        for chunk in row.chunks_exact(g) {
            let grid = grid_of(grids.len(), chunk);
            codes.extend(chunk.iter().map(|&x| grid.code(x)));
            grids.push(grid);
        }
    }
    QuantizedWeight {
        shape: [n, k],
        quant,
        group: g,
        codes,
        grids,
    }
}

/// [`CoreError::NonFinite`] at `path` for the first NaN or infinite value.
pub(crate) fn check_finite(
    path: &str,
    values: impl IntoIterator<Item = f32>,
) -> Result<(), QuantError> {
    match values.into_iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, v)) => Err(CoreError::NonFinite {
            path: path.to_string(),
            index,
            value: f64::from(v),
        }
        .into()),
        None => Ok(()),
    }
}
