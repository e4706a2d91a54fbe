//! Compressed sparse row storage with `u16` or `u32` column indices.

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, ArrayViewMut2, Ix2};

use crate::kernels;
use crate::{PruneError, Result};

/// Width of CSR column indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IndexWidth {
    /// 16-bit indices (at most 65,536 columns).
    U16,
    /// 32-bit indices.
    U32,
    /// `U16` when the matrix has at most 65,536 columns, else `U32`.
    #[default]
    Auto,
}

/// Column indices of a [`Csr`] matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColIndices {
    /// 16-bit indices.
    U16(Vec<u16>),
    /// 32-bit indices.
    U32(Vec<u32>),
}

impl ColIndices {
    /// Number of indices.
    pub fn len(&self) -> usize {
        match self {
            Self::U16(v) => v.len(),
            Self::U32(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index `i` as `usize`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    #[track_caller]
    pub fn get(&self, i: usize) -> usize {
        match self {
            Self::U16(v) => usize::from(v[i]),
            Self::U32(v) => v[i] as usize,
        }
    }

    /// Bytes per index (2 or 4).
    pub fn bytes_per_index(&self) -> usize {
        match self {
            Self::U16(_) => 2,
            Self::U32(_) => 4,
        }
    }
}

/// A sparse matrix in CSR form: `row_ptr` (`rows + 1` offsets, `u32`), column indices and
/// values of the non-zeros, row by row in increasing column order.
///
/// ```
/// use compress_prune::{Csr, IndexWidth};
/// use ndarray::array;
/// let w = array![[0.0f32, 2.0, 0.0], [1.0, 0.0, 3.0]];
/// let csr = Csr::from_dense(&w, IndexWidth::U16).unwrap();
/// assert_eq!(csr.nnz(), 3);
/// // 3 values * 4 B + 3 indices * 2 B + 3 row offsets * 4 B
/// assert_eq!(csr.storage_bytes(), 12 + 6 + 12);
/// assert_eq!(csr.to_dense(), w);
/// let y = csr.spmm(&array![[1.0f32], [1.0], [1.0]]).unwrap();
/// assert_eq!(y, array![[2.0], [4.0]]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Csr<F: Float> {
    rows: usize,
    cols: usize,
    row_ptr: Vec<u32>,
    col_idx: ColIndices,
    values: Vec<F>,
}

impl<F: Float> Csr<F> {
    /// Builds a CSR matrix from the non-zero entries of a dense one (exact zeros dropped).
    ///
    /// # Errors
    ///
    /// [`PruneError::IndexOverflow`] when `U16` is asked for more than 65,536 columns, or
    /// the matrix has more than `u32::MAX` columns or non-zeros; [`CoreError::NonFinite`]
    /// (path `w`, the flat index and the value) for a NaN or infinite entry, as the
    /// magnitude functions report it.
    pub fn from_dense(w: &ArrayRef<F, Ix2>, width: IndexWidth) -> Result<Self> {
        let (rows, cols) = w.dim();
        let width = match width {
            IndexWidth::Auto if cols <= 1 << 16 => IndexWidth::U16,
            IndexWidth::Auto => IndexWidth::U32,
            other => other,
        };
        let limit = match width {
            IndexWidth::U16 => 1usize << 16,
            _ => 1usize << 32,
        };
        if cols > limit {
            return Err(PruneError::IndexOverflow {
                index: limit,
                bits: if limit == 1 << 16 { 16 } else { 32 },
                cols,
            });
        }
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0u32);
        let mut cols_v: Vec<u32> = Vec::new();
        let mut values = Vec::new();
        for (r, row) in w.rows().into_iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                if !v.is_finite() {
                    return Err(CoreError::NonFinite {
                        path: "w".to_string(),
                        index: r * cols + c,
                        value: v.as_f64(),
                    }
                    .into());
                }
                if v != F::zero() {
                    cols_v.push(c as u32);
                    values.push(v);
                }
            }
            let nnz = u32::try_from(values.len()).map_err(|_| PruneError::IndexOverflow {
                index: values.len(),
                bits: 32,
                cols,
            })?;
            row_ptr.push(nnz);
        }
        let col_idx = match width {
            IndexWidth::U16 => ColIndices::U16(cols_v.into_iter().map(|c| c as u16).collect()),
            _ => ColIndices::U32(cols_v),
        };
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// Builds a CSR matrix from its parts, checking every invariant.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the broken invariant (row pointer length or
    /// order, index out of range or not increasing within a row, value count).
    pub fn from_parts(
        rows: usize,
        cols: usize,
        row_ptr: Vec<u32>,
        col_idx: ColIndices,
        values: Vec<F>,
    ) -> Result<Self> {
        let bad = |reason: String| -> PruneError { CoreError::config("csr", reason).into() };
        // `rows + 1` is checked: `rows = usize::MAX` must be an error, not a wrap to 0.
        if rows.checked_add(1) != Some(row_ptr.len()) || row_ptr.first() != Some(&0) {
            return Err(bad(format!(
                "row_ptr has {} entries starting at {:?}, expected {rows} + 1 starting at 0",
                row_ptr.len(),
                row_ptr.first(),
            )));
        }
        let nnz = row_ptr[rows] as usize;
        if col_idx.len() != nnz || values.len() != nnz {
            return Err(bad(format!(
                "row_ptr ends at {nnz} but there are {} indices and {} values",
                col_idx.len(),
                values.len()
            )));
        }
        for r in 0..rows {
            let (s, e) = (row_ptr[r] as usize, row_ptr[r + 1] as usize);
            if s > e {
                return Err(bad(format!("row_ptr decreases at row {r}: {s} > {e}")));
            }
            for p in s..e {
                let c = col_idx.get(p);
                if c >= cols || (p > s && col_idx.get(p - 1) >= c) {
                    return Err(bad(format!(
                        "column index {c} at row {r} is out of range (< {cols}) or not increasing"
                    )));
                }
            }
        }
        Ok(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Number of stored non-zeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Fraction of zeros, `1 - nnz / (rows * cols)` (`0` for an empty matrix).
    pub fn sparsity(&self) -> f64 {
        let n = self.rows * self.cols;
        if n == 0 {
            0.0
        } else {
            1.0 - self.nnz() as f64 / n as f64
        }
    }

    /// Row offsets (`rows + 1` entries).
    pub fn row_ptr(&self) -> &[u32] {
        &self.row_ptr
    }

    /// Column indices.
    pub fn col_indices(&self) -> &ColIndices {
        &self.col_idx
    }

    /// The non-zero values, row by row.
    pub fn values(&self) -> &[F] {
        &self.values
    }

    /// Exact bytes of the three arrays: values, column indices and `u32` row offsets.
    pub fn storage_bytes(&self) -> usize {
        self.nnz() * std::mem::size_of::<F>()
            + self.nnz() * self.col_idx.bytes_per_index()
            + self.row_ptr.len() * 4
    }

    /// The dense matrix.
    pub fn to_dense(&self) -> Array2<F> {
        let mut out = Array2::zeros((self.rows, self.cols));
        for r in 0..self.rows {
            for p in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                out[[r, self.col_idx.get(p)]] = self.values[p];
            }
        }
        out
    }

    /// `self * b` for a dense `b` of shape `[cols, n]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when `b` does not have `cols` rows.
    pub fn spmm(&self, b: &ArrayRef<F, Ix2>) -> Result<Array2<F>> {
        let mut out = Array2::zeros((self.rows, b.ncols()));
        self.spmm_into(b, &mut out.view_mut())?;
        Ok(out)
    }

    /// `out = self * b`, writing into a caller's `[rows, n]` buffer (no allocation when `b`
    /// and `out` are in standard layout).
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when `b` is not `[cols, n]` or `out` not `[rows, n]`.
    pub fn spmm_into(&self, b: &ArrayRef<F, Ix2>, out: &mut ArrayViewMut2<'_, F>) -> Result<()> {
        let n = b.ncols();
        if b.nrows() != self.cols {
            return Err(CoreError::shape("spmm rhs", &[self.cols, n], b.shape()).into());
        }
        if out.dim() != (self.rows, n) {
            return Err(CoreError::shape("spmm out", &[self.rows, n], out.shape()).into());
        }
        let b_std = b.as_standard_layout();
        let b_slice = b_std
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout"));
        match out.as_slice_mut() {
            Some(o) => self.kernel(b_slice, n, o),
            None => {
                let mut tmp = Array2::zeros((self.rows, n));
                let t = tmp
                    .as_slice_mut()
                    .unwrap_or_else(|| unreachable!("fresh array"));
                self.kernel(b_slice, n, t);
                out.assign(&tmp);
            }
        }
        Ok(())
    }

    fn kernel(&self, b: &[F], n: usize, out: &mut [F]) {
        match &self.col_idx {
            ColIndices::U16(c) => kernels::spmm(&self.row_ptr, c, &self.values, b, n, out),
            ColIndices::U32(c) => kernels::spmm(&self.row_ptr, c, &self.values, b, n, out),
        }
    }

    /// Splits into `(rows, cols, row_ptr, col_idx, values)`.
    pub fn into_parts(self) -> (usize, usize, Vec<u32>, ColIndices, Vec<F>) {
        (
            self.rows,
            self.cols,
            self.row_ptr,
            self.col_idx,
            self.values,
        )
    }
}
