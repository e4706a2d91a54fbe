//! N:M semi-structured sparse storage: in every group of `m` consecutive inputs of a row,
//! exactly `n` stored values and their positions in `ceil(log2 m)` bits each (2:4: two
//! values and two 2-bit positions per group of four, 56.25% of dense `f32`).

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, Ix2};

use std::sync::OnceLock;

use crate::kernels::nm24::{self, Panels24, Path};
use crate::{PruneError, Result};

/// A matrix `[rows, cols]` in N:M form (rows are outputs, groups run along the columns,
/// i.e. the inputs of a `[out, in]` weight).
///
/// Storage: the `rows * cols / m * n` kept values row by row (within a group in increasing
/// position), and their positions in the group, `bits = ceil(log2 m)` bits each, packed
/// least-significant bit first into bytes (value `q`'s position at bits `q bits ..`). A group
/// with fewer than `n` non-zeros keeps zeros at its first free positions, so every group
/// stores exactly `n` values. For 2:4 each group's code is one 4-bit nibble `p0 | p1 << 2`,
/// the layout the 2:4 kernel is packed from: an `f32` 2:4 matrix keeps, from its first
/// product on, a copy of its values and codes in the kernel's panel order (the same
/// bytes, permuted; dropped by [`NmMatrix::values_mut`]).
///
/// ```
/// use compress_prune::NmMatrix;
/// use ndarray::array;
/// let w = array![[0.0f32, 2.0, 0.0, -1.0, 5.0, 0.0, 0.0, 0.0]];
/// let s = NmMatrix::from_dense(&w, 2, 4, "w").unwrap();
/// assert_eq!(s.values(), &[2.0, -1.0, 5.0, 0.0]);
/// assert_eq!(s.storage_bytes(), 4 * 4 + 1); // 4 values + 4 x 2 bits
/// assert_eq!(s.to_dense(), w);
/// let y = s.matmul_t(&array![[1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]]).unwrap();
/// assert_eq!(y, array![[6.0]]);
/// ```
#[derive(Debug, Clone)]
pub struct NmMatrix<F: Float> {
    rows: usize,
    cols: usize,
    n: usize,
    m: usize,
    values: Vec<F>,
    positions: Vec<u8>,
    /// The 2:4 kernel's panel form, built on the first product (`None` inside when the
    /// kernel does not apply).
    panels: OnceLock<Option<Panels24>>,
}

impl<F: Float> PartialEq for NmMatrix<F> {
    fn eq(&self, o: &Self) -> bool {
        (self.rows, self.cols, self.n, self.m) == (o.rows, o.cols, o.n, o.m)
            && self.values == o.values
            && self.positions == o.positions
    }
}

/// Bits of one position in a group of `m`.
fn position_bits(m: usize) -> usize {
    if m <= 1 {
        0
    } else {
        (usize::BITS - (m - 1).leading_zeros()) as usize
    }
}

fn check_pattern(n: usize, m: usize) -> Result<()> {
    if m == 0 || n == 0 || n > m || m > 256 {
        return Err(
            CoreError::config("n:m", format!("need 1 <= n <= m <= 256, got {n}:{m}")).into(),
        );
    }
    Ok(())
}

impl<F: Float> NmMatrix<F> {
    /// Packs a dense matrix that is already N:M sparse (at most `n` non-zeros in every
    /// group of `m` along each row, as [`crate::nm_mask`], Wanda or SparseGPT leave it).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] unless `1 <= n <= m <= 256`;
    /// [`PruneError::NotDivisible`] when `m` does not divide `cols`;
    /// [`CoreError::NonFinite`] for NaN/Inf; [`PruneError::NotNmSparse`] naming the first
    /// group with more than `n` non-zeros. `path` names the matrix in the errors.
    pub fn from_dense(w: &ArrayRef<F, Ix2>, n: usize, m: usize, path: &str) -> Result<Self> {
        check_pattern(n, m)?;
        let (rows, cols) = w.dim();
        if !cols.is_multiple_of(m) {
            return Err(PruneError::NotDivisible {
                path: path.to_string(),
                len: cols,
                m,
                shape: vec![rows, cols],
            });
        }
        let bits = position_bits(m);
        let kept = rows * cols / m * n;
        let mut values = Vec::with_capacity(kept);
        let mut positions = vec![0u8; (kept * bits).div_ceil(8)];
        let mut chosen = Vec::with_capacity(n);
        for (r, row) in w.rows().into_iter().enumerate() {
            for g in 0..cols / m {
                chosen.clear();
                for p in 0..m {
                    let v = row[g * m + p];
                    if !v.is_finite() {
                        return Err(CoreError::NonFinite {
                            path: path.to_string(),
                            index: r * cols + g * m + p,
                            value: v.as_f64(),
                        }
                        .into());
                    }
                    if v != F::zero() {
                        chosen.push(p);
                    }
                }
                if chosen.len() > n {
                    return Err(PruneError::NotNmSparse {
                        path: path.to_string(),
                        row: r,
                        group: g,
                        nonzeros: chosen.len(),
                        n,
                        m,
                    });
                }
                // Pad with the first free positions (stored zeros), keep increasing order.
                let mut p = 0;
                while chosen.len() < n {
                    if !chosen.contains(&p) {
                        chosen.push(p);
                    }
                    p += 1;
                }
                chosen.sort_unstable();
                for &p in &chosen {
                    write_bits(&mut positions, values.len() * bits, bits, p);
                    values.push(row[g * m + p]);
                }
            }
        }
        Self::from_parts(rows, cols, n, m, values, positions, path)
    }

    /// Rebuilds a matrix from its stored parts (as read from a file), checking them.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `path` when the pattern is invalid, `m` does not
    /// divide `cols`, the lengths do not match the shape, a position is `>= m`, positions
    /// within a group are not strictly increasing, or a value is not finite.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        n: usize,
        m: usize,
        values: Vec<F>,
        positions: Vec<u8>,
        path: &str,
    ) -> Result<Self> {
        check_pattern(n, m)?;
        let bad = |reason: String| -> PruneError { CoreError::config(path, reason).into() };
        if !cols.is_multiple_of(m) {
            return Err(bad(format!("{n}:{m} groups do not divide {cols} columns")));
        }
        let kept = rows
            .checked_mul(cols / m)
            .and_then(|g| g.checked_mul(n))
            .ok_or_else(|| bad(format!("shape [{rows}, {cols}] overflows")))?;
        let bits = position_bits(m);
        if values.len() != kept || positions.len() != (kept * bits).div_ceil(8) {
            return Err(bad(format!(
                "[{rows}, {cols}] at {n}:{m} needs {kept} values and {} position bytes, got {} and {}",
                (kept * bits).div_ceil(8),
                values.len(),
                positions.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("value {i} is {}", values[i].as_f64())));
        }
        for q in 0..kept {
            let p = read_bits(&positions, q * bits, bits);
            let prev = (q % n > 0).then(|| read_bits(&positions, (q - 1) * bits, bits));
            if p >= m || prev.is_some_and(|prev| prev >= p) {
                return Err(bad(format!(
                    "position {p} of value {q} is out of range or not increasing in its group"
                )));
            }
        }
        Ok(Self {
            rows,
            cols,
            n,
            m,
            values,
            positions,
            panels: OnceLock::new(),
        })
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The pattern `(n, m)`.
    pub fn pattern(&self) -> (usize, usize) {
        (self.n, self.m)
    }

    /// The stored values, row by row, `n` per group.
    pub fn values(&self) -> &[F] {
        &self.values
    }

    /// Mutable stored values (the pattern stays; the kernel's copy is dropped and rebuilt
    /// on the next product).
    pub fn values_mut(&mut self) -> &mut [F] {
        self.panels = OnceLock::new();
        &mut self.values
    }

    /// The packed positions.
    pub fn positions(&self) -> &[u8] {
        &self.positions
    }

    /// Position in its group of stored value `q`.
    ///
    /// # Panics
    ///
    /// If `q >= values().len()`.
    #[track_caller]
    pub fn position(&self, q: usize) -> usize {
        assert!(q < self.values.len(), "value {q} out of range");
        let bits = position_bits(self.m);
        read_bits(&self.positions, q * bits, bits)
    }

    /// Exact bytes: the values at `size_of::<F>()` each plus the packed positions (equal to
    /// [`crate::nm_storage_bytes`] for this shape and pattern).
    pub fn storage_bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<F>() + self.positions.len()
    }

    /// The dense matrix.
    pub fn to_dense(&self) -> Array2<F> {
        let mut w = Array2::zeros((self.rows, self.cols));
        let groups = self.cols.checked_div(self.m).unwrap_or(0);
        for (q, &v) in self.values.iter().enumerate() {
            let g = q / self.n;
            let (r, gi) = (g / groups.max(1), g % groups.max(1));
            w[[r, gi * self.m + self.position(q)]] = v;
        }
        w
    }

    /// `x W^T` for `x` `[tokens, cols]`: on the 2:4 kernel for `f32` 2:4 matrices (AVX-512,
    /// AVX2 or portable, as [`compress_core::Isa::current`] allows), a portable loop
    /// otherwise.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when `x` does not have `cols` columns.
    pub fn matmul_t(&self, x: &ArrayRef<F, Ix2>) -> Result<Array2<F>> {
        let mut scratch = Vec::new();
        self.matmul_t_bias(x, None, &mut scratch)
    }

    /// `x W^T + b`, reusing `scratch` between calls (see [`NmMatrix::matmul_t`]).
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when `x` does not have `cols` columns or `bias` does not
    /// have `rows` entries.
    pub fn matmul_t_bias(
        &self,
        x: &ArrayRef<F, Ix2>,
        bias: Option<&[F]>,
        scratch: &mut Vec<f32>,
    ) -> Result<Array2<F>> {
        let parts = self.parts(&self.values);
        let panels = self.panels.get_or_init(|| panels_of(parts));
        product(parts, panels.as_ref(), x, bias, scratch)
    }

    /// The shape, pattern and positions with `values` (the matrix's own, or a layer's
    /// effective ones of the same length).
    pub(crate) fn parts<'a>(&'a self, values: &'a [F]) -> Parts<'a, F> {
        Parts {
            rows: self.rows,
            cols: self.cols,
            n: self.n,
            m: self.m,
            values,
            positions: &self.positions,
        }
    }
}

/// A borrowed N:M matrix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parts<'a, F> {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) n: usize,
    pub(crate) m: usize,
    pub(crate) values: &'a [F],
    pub(crate) positions: &'a [u8],
}

/// The 2:4 kernel's panel form of `w`, when the kernel applies (`f32`, 2:4).
pub(crate) fn panels_of<F: Float>(w: Parts<'_, F>) -> Option<Panels24> {
    let vals = F::as_f32_slice(w.values).filter(|_| (w.n, w.m) == (2, 4))?;
    Some(Panels24::pack(w.rows, w.cols, vals, w.positions))
}

/// `x W^T (+ b)` (see [`NmMatrix::matmul_t`]), on the 2:4 kernel when `panels` (the panel
/// form of `w`, from [`panels_of`]) is given.
pub(crate) fn product<F: Float>(
    w: Parts<'_, F>,
    panels: Option<&Panels24>,
    x: &ArrayRef<F, Ix2>,
    bias: Option<&[F]>,
    scratch: &mut Vec<f32>,
) -> Result<Array2<F>> {
    if x.ncols() != w.cols {
        return Err(CoreError::shape("N:M matmul input", &[x.nrows(), w.cols], x.shape()).into());
    }
    if let Some(b) = bias
        && b.len() != w.rows
    {
        return Err(CoreError::shape("N:M matmul bias", &[w.rows], &[b.len()]).into());
    }
    let tokens = x.nrows();
    let xs = x.as_standard_layout();
    let xs = xs
        .as_slice()
        .unwrap_or_else(|| unreachable!("standard layout"));
    let mut y = Array2::<F>::zeros((tokens, w.rows));
    if let (Some(panels), Some(xf)) = (panels, F::as_f32_slice(xs)) {
        debug_assert_eq!((panels.rows(), panels.cols()), (w.rows, w.cols));
        let bias = bias.map(|b| F::as_f32_slice(b).unwrap_or_else(|| unreachable!("F is f32")));
        let ys = y
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("fresh array"));
        let yf = F::as_f32_slice_mut(ys).unwrap_or_else(|| unreachable!("F is f32"));
        nm24::spmm24(Path::current(), panels, xf, tokens, bias, yf, scratch);
        return Ok(y);
    }
    let groups = w.cols / w.m;
    let bits = position_bits(w.m);
    for (i, yr) in y.rows_mut().into_iter().enumerate() {
        let xr = &xs[i * w.cols..(i + 1) * w.cols];
        for (j, out) in yr.into_iter().enumerate() {
            let mut acc = F::zero();
            for q in j * groups * w.n..(j + 1) * groups * w.n {
                let c = q / w.n % groups * w.m + read_bits(w.positions, q * bits, bits);
                acc += w.values[q] * xr[c];
            }
            *out = acc + bias.map_or(F::zero(), |b| b[j]);
        }
    }
    Ok(y)
}

/// Writes `value` in `bits` bits at bit offset `at` (LSB first).
fn write_bits(buf: &mut [u8], at: usize, bits: usize, value: usize) {
    for b in 0..bits {
        if value >> b & 1 == 1 {
            buf[(at + b) / 8] |= 1 << ((at + b) % 8);
        }
    }
}

/// Reads `bits` bits at bit offset `at` (LSB first).
fn read_bits(buf: &[u8], at: usize, bits: usize) -> usize {
    (0..bits).fold(0, |acc, b| {
        acc | (usize::from(buf[(at + b) / 8] >> ((at + b) % 8) & 1) << b)
    })
}
