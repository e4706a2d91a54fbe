//! Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
//! Models"): weight `W_ij` of a linear layer `[out, in]` scores `|W_ij| * ||X_j||_2`, the
//! norm of input feature `j` over the calibration tokens, and weights are compared within
//! their output row (per row for unstructured sparsity, per group of `m` for N:M). The kept
//! weights are not changed. With all norms equal it is per-row magnitude pruning.

use compress_core::{CoreError, Float};
use ndarray::{Array2, ArrayRef, Ix2};

use crate::error::check_sparsity;
use crate::{PruneError, Result};

/// Which weights a calibrated pruner removes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SparsityPattern {
    /// A fraction in `[0, 1)` of the weights (per output row for Wanda and magnitude, per
    /// block of columns for SparseGPT; the total is `round(sparsity * len)` in both).
    Unstructured(f64),
    /// At most `n` kept weights in every group of `m` consecutive inputs (2:4 runs on
    /// [`crate::Sparse24Linear`]).
    NM {
        /// Kept weights per group.
        n: usize,
        /// Group size.
        m: usize,
    },
}

impl SparsityPattern {
    /// 2:4.
    pub const TWO_FOUR: Self = Self::NM { n: 2, m: 4 };

    /// Checks the pattern against a weight of `cols` inputs (`path` names it).
    ///
    /// # Errors
    ///
    /// [`PruneError::Sparsity`] outside `[0, 1)`; [`CoreError::InvalidConfig`] unless
    /// `1 <= n <= m`; [`PruneError::NotDivisible`] when `m` does not divide `cols`.
    pub fn check(&self, path: &str, rows: usize, cols: usize) -> Result<()> {
        match *self {
            Self::Unstructured(s) => check_sparsity("sparsity", s),
            Self::NM { n, m } => {
                if m == 0 || n == 0 || n > m {
                    return Err(
                        CoreError::config("n:m", format!("need 1 <= n <= m, got {n}:{m}")).into(),
                    );
                }
                if !cols.is_multiple_of(m) {
                    return Err(PruneError::NotDivisible {
                        path: path.to_string(),
                        len: cols,
                        m,
                        shape: vec![rows, cols],
                    });
                }
                Ok(())
            }
        }
    }

    /// Weights pruned in a row of `cols` (as Wanda and magnitude prune).
    pub fn pruned_per_row(&self, cols: usize) -> usize {
        match *self {
            Self::Unstructured(s) => ((s * cols as f64).round() as usize).min(cols),
            Self::NM { n, m } => cols / m * (m - n),
        }
    }
}

/// The keep-mask (`true` = kept) of `scores` `[out, in]` under `pattern`, comparing within
/// each row: the `pruned_per_row` lowest scores of a row (unstructured) or the `m - n`
/// lowest of each group (N:M) are pruned; ties prune the later entry first.
///
/// # Errors
///
/// As [`SparsityPattern::check`]; [`CoreError::NonFinite`] for a NaN score.
pub fn row_mask(
    scores: &Array2<f64>,
    pattern: SparsityPattern,
    path: &str,
) -> Result<Array2<bool>> {
    let (rows, cols) = scores.dim();
    pattern.check(path, rows, cols)?;
    if let Some((index, &v)) = scores.iter().enumerate().find(|(_, v)| v.is_nan()) {
        return Err(CoreError::NonFinite {
            path: path.to_string(),
            index,
            value: v,
        }
        .into());
    }
    let mut keep = Array2::from_elem((rows, cols), true);
    // Ascending score, later index first among equals: the first `k` are pruned.
    let order = |row: &ndarray::ArrayView1<'_, f64>, a: &usize, b: &usize| {
        row[*a].total_cmp(&row[*b]).then(b.cmp(a))
    };
    for (row, mut krow) in scores.rows().into_iter().zip(keep.rows_mut()) {
        match pattern {
            SparsityPattern::Unstructured(_) => {
                let k = pattern.pruned_per_row(cols);
                if k == 0 {
                    continue;
                }
                let mut idx: Vec<usize> = (0..cols).collect();
                idx.select_nth_unstable_by(k - 1, |a, b| order(&row, a, b));
                for &j in &idx[..k] {
                    krow[j] = false;
                }
            }
            SparsityPattern::NM { n, m } => {
                let mut idx: Vec<usize> = Vec::with_capacity(m);
                for g in 0..cols / m {
                    idx.clear();
                    idx.extend(g * m..(g + 1) * m);
                    idx.sort_by(|a, b| order(&row, a, b));
                    for &j in &idx[..m - n] {
                        krow[j] = false;
                    }
                }
            }
        }
    }
    Ok(keep)
}

/// Wanda scores `|W_ij| * norms[j]` of `w` `[out, in]`.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when `norms` does not have `in` entries.
pub fn wanda_scores<F: Float>(
    w: &ArrayRef<F, Ix2>,
    norms: &[f64],
    path: &str,
) -> Result<Array2<f64>> {
    if norms.len() != w.ncols() {
        return Err(
            CoreError::shape(format!("{path} input norms"), &[w.ncols()], &[norms.len()]).into(),
        );
    }
    Ok(Array2::from_shape_fn(w.dim(), |(i, j)| {
        w[[i, j]].as_f64().abs() * norms[j]
    }))
}

/// Prunes `w` `[out, in]` in place with Wanda given the input norms `||X_j||_2`
/// ([`crate::InputStats::norms`]); returns the keep-mask. Kept weights are unchanged.
///
/// # Errors
///
/// As [`row_mask`] and [`wanda_scores`]; [`CoreError::NonFinite`] for NaN weights or norms.
///
/// ```
/// use compress_prune::{SparsityPattern, wanda_prune};
/// use ndarray::array;
/// // Column 1 has small weights but a large input norm: Wanda keeps it.
/// let mut w = array![[1.0f32, 0.1, 0.9, 0.5]];
/// wanda_prune(&mut w, &[1.0, 100.0, 1.0, 1.0], SparsityPattern::TWO_FOUR, "fc").unwrap();
/// assert_eq!(w, array![[1.0, 0.1, 0.0, 0.0]]);
/// ```
pub fn wanda_prune<F: Float>(
    w: &mut Array2<F>,
    norms: &[f64],
    pattern: SparsityPattern,
    path: &str,
) -> Result<Array2<bool>> {
    if let Some((index, v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CoreError::NonFinite {
            path: path.to_string(),
            index,
            value: v.as_f64(),
        }
        .into());
    }
    if let Some(index) = norms.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::NonFinite {
            path: format!("{path} input norms"),
            index,
            value: norms[index],
        }
        .into());
    }
    let scores = wanda_scores(w, norms, path)?;
    let keep = row_mask(&scores, pattern, path)?;
    ndarray::Zip::from(w).and(&keep).for_each(|v, &k| {
        if !k {
            *v = F::zero();
        }
    });
    Ok(keep)
}
