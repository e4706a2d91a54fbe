//! 1-bit packed matrices: each row's signs in 64-bit words (bit set = +1, clear = -1;
//! padding bits clear), with per-row scales.

use compress_core::{CoreError, Float, TensorExt};
use ndarray::{Array2, ArrayView2};

use super::connect::BinaryScale;
use crate::QuantError;

/// A `rows x cols` matrix of scaled signs, `alpha[r] * (±1)`, stored one bit per entry.
///
/// ```
/// use compress_quant::binary::{BinaryMatrix, BinaryScale};
/// use ndarray::array;
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let w = array![[0.5f32, -0.5, 0.25, -0.25], [1.0, 1.0, -1.0, 0.0]];
/// let b = BinaryMatrix::from_weights(w.view(), BinaryScale::PerChannel)?;
/// assert_eq!(b.bytes(), 2 * 8 + 2 * 4); // one 64-bit word per row + two f32 scales
/// assert_eq!(b.to_dense::<f32>(), array![[0.375f32, -0.375, 0.375, -0.375], [0.75, 0.75, -0.75, 0.75]]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryMatrix {
    rows: usize,
    cols: usize,
    words_per_row: usize,
    words: Vec<u64>,
    alphas: Vec<f32>,
}

impl BinaryMatrix {
    /// Packs the signs of `w` (`w >= 0` is +1) with scales from `scale`
    /// ([`BinaryScale::PerChannel`]: `mean |w|` of each row).
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] (`weights`) for NaN or infinity, [`CoreError::InvalidConfig`]
    /// (`scale`) for a non-positive constant scale.
    pub fn from_weights<F: Float>(
        w: ArrayView2<'_, F>,
        scale: BinaryScale,
    ) -> Result<Self, QuantError> {
        w.check_finite("weights")?;
        let alphas: Vec<f32> = match scale {
            BinaryScale::None => vec![1.0; w.nrows()],
            BinaryScale::Constant(c) => {
                if !(c.is_finite() && c > 0.0) {
                    return Err(CoreError::config(
                        "scale",
                        format!("constant scale must be finite and > 0, got {c}"),
                    )
                    .into());
                }
                vec![c as f32; w.nrows()]
            }
            BinaryScale::PerChannel => w
                .rows()
                .into_iter()
                .map(|r| {
                    (r.iter().map(|x| x.abs().as_f64()).sum::<f64>() / r.len().max(1) as f64) as f32
                })
                .collect(),
        };
        Ok(Self::from_signs(w, alphas))
    }

    /// Packs the signs of `x` with the given per-row scales (no checks on finiteness: NaN is
    /// treated as negative).
    ///
    /// # Panics
    ///
    /// If `alphas.len() != x.nrows()`.
    #[track_caller]
    pub fn from_signs<F: Float>(x: ArrayView2<'_, F>, alphas: Vec<f32>) -> Self {
        assert_eq!(alphas.len(), x.nrows(), "one scale per row");
        let (rows, cols) = x.dim();
        let words_per_row = cols.div_ceil(64);
        let mut words = vec![0u64; rows * words_per_row];
        for (r, row) in x.rows().into_iter().enumerate() {
            let dst = &mut words[r * words_per_row..(r + 1) * words_per_row];
            for (c, &v) in row.iter().enumerate() {
                if v >= F::zero() {
                    dst[c / 64] |= 1u64 << (c % 64);
                }
            }
        }
        Self {
            rows,
            cols,
            words_per_row,
            words,
            alphas,
        }
    }

    /// Binarizes activations row by row: signs of `x` with `beta = mean |x|` per row
    /// (XNOR-Net's input scaling).
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] (`activations`) for NaN or infinity.
    pub fn binarize_activations<F: Float>(x: ArrayView2<'_, F>) -> Result<Self, QuantError> {
        x.check_finite("activations")?;
        let betas = x
            .rows()
            .into_iter()
            .map(|r| {
                (r.iter().map(|v| v.abs().as_f64()).sum::<f64>() / r.len().max(1) as f64) as f32
            })
            .collect();
        Ok(Self::from_signs(x, betas))
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// 64-bit words per row (`ceil(cols / 64)`).
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// The packed sign words, row-major.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The words of row `r`.
    ///
    /// # Panics
    ///
    /// If `r >= rows`.
    #[track_caller]
    pub fn row_words(&self, r: usize) -> &[u64] {
        &self.words[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    /// Per-row scales.
    pub fn alphas(&self) -> &[f32] {
        &self.alphas
    }

    /// Sign of entry `(r, c)` as ±1.
    ///
    /// # Panics
    ///
    /// If the entry is out of bounds.
    #[track_caller]
    pub fn sign(&self, r: usize, c: usize) -> i32 {
        assert!(r < self.rows && c < self.cols, "entry out of bounds");
        if self.row_words(r)[c / 64] >> (c % 64) & 1 == 1 {
            1
        } else {
            -1
        }
    }

    /// Exact storage: the sign words (8 bytes each) plus one f32 per row scale. For `cols` a
    /// multiple of 64 the sign part is exactly `rows * cols / 8` bytes (1/32 of f32).
    pub fn bytes(&self) -> usize {
        self.words.len() * 8 + self.alphas.len() * 4
    }

    /// The dense matrix `alpha[r] * sign(r, c)`.
    pub fn to_dense<F: Float>(&self) -> Array2<F> {
        Array2::from_shape_fn((self.rows, self.cols), |(r, c)| {
            F::lit(f64::from(self.alphas[r]) * f64::from(self.sign(r, c)))
        })
    }
}
