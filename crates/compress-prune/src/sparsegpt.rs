//! SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be
//! Accurately Pruned in One-Shot"): an approximate Optimal Brain Surgeon. For the layer's
//! squared output error `||X W^T - X W'^T||^2`, whose Hessian is `H = X^T X`, the columns
//! (inputs) are processed left to right; each pruned weight's error is spread over the
//! columns not yet processed through the upper Cholesky factor `U` of `H^-1`
//! (`H^-1 = U^T U`), in blocks of columns with lazy updates of the columns after the block.
//! The mask is chosen per block (unstructured: the lowest `w^2 / U_jj^2` of the block across
//! all rows) or per group of `m` columns when the group is reached (N:M), from the weights
//! as updated so far.

use compress_core::{CoreError, Float};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use ndarray::{Array2, ArrayRef, Ix2, s};

use crate::wanda::SparsityPattern;
use crate::{PruneError, Result};

/// SparseGPT's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGptConfig {
    /// Dampening added to `H`'s diagonal, as a fraction of its mean diagonal (0.01 in the
    /// paper), in `[0, 1]`.
    pub percdamp: f64,
    /// Columns per block of lazy updates (128 in the paper), rounded up to a multiple of
    /// `m` for N:M.
    pub block_size: usize,
}

impl Default for SparseGptConfig {
    fn default() -> Self {
        Self {
            percdamp: 0.01,
            block_size: 128,
        }
    }
}

/// The upper Cholesky factor `U` of `(H + damp I)^-1` (dead inputs, with a zero diagonal,
/// get a unit diagonal first).
fn inverse_factor(h: &Array2<f64>, percdamp: f64, path: &str) -> Result<Mat<f64>> {
    let n = h.nrows();
    let diag: Vec<f64> = (0..n)
        .map(|j| if h[[j, j]] == 0.0 { 1.0 } else { h[[j, j]] })
        .collect();
    let damp = percdamp * diag.iter().sum::<f64>() / n.max(1) as f64;
    let hm = Mat::<f64>::from_fn(n, n, |i, j| if i == j { diag[i] + damp } else { h[[i, j]] });
    let singular = |e: faer::linalg::cholesky::llt::factor::LltError| {
        let faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } = e;
        PruneError::SingularHessian {
            path: path.to_string(),
            damp,
            pivot: index,
        }
    };
    let inv = hm.llt(Side::Lower).map_err(singular)?.inverse();
    let l = inv.llt(Side::Lower).map_err(singular)?;
    let l = l.L();
    Ok(Mat::from_fn(
        n,
        n,
        |i, j| if j >= i { l[(j, i)] } else { 0.0 },
    ))
}

/// Prunes `w` `[out, in]` with SparseGPT against the Hessian `h = X^T X` `[in, in]` (from
/// [`crate::InputStats`]); the kept weights are updated to compensate. Returns the
/// keep-mask. Inputs that never fired (zero diagonal) have their weights pruned.
///
/// # Errors
///
/// As [`SparsityPattern::check`]; [`CoreError::ShapeMismatch`] when `h` is not `[in, in]`;
/// [`CoreError::InvalidConfig`] for `percdamp` outside `[0, 1]` or a zero block size;
/// [`CoreError::NonFinite`] for NaN weights or Hessian entries;
/// [`PruneError::SingularHessian`] when the dampened Hessian is still not positive
/// definite.
pub fn sparsegpt_prune<F: Float>(
    w: &mut Array2<F>,
    h: &ArrayRef<f64, Ix2>,
    pattern: SparsityPattern,
    cfg: &SparseGptConfig,
    path: &str,
) -> Result<Array2<bool>> {
    let (rows, cols) = w.dim();
    pattern.check(path, rows, cols)?;
    if h.dim() != (cols, cols) {
        return Err(CoreError::shape(format!("{path} Hessian"), &[cols, cols], h.shape()).into());
    }
    if !(0.0..=1.0).contains(&cfg.percdamp) || cfg.block_size == 0 {
        return Err(CoreError::config(
            "sparsegpt",
            format!(
                "percdamp must be in [0, 1] and block_size > 0, got {} and {}",
                cfg.percdamp, cfg.block_size
            ),
        )
        .into());
    }
    let bad_w = w
        .iter()
        .map(|v| v.as_f64())
        .enumerate()
        .find(|(_, v)| !v.is_finite());
    let bad_h = h.iter().copied().enumerate().find(|(_, v)| !v.is_finite());
    if let Some((what, (index, value))) = bad_w.map(|b| ("", b)).or(bad_h.map(|b| (" Hessian", b)))
    {
        return Err(CoreError::NonFinite {
            path: format!("{path}{what}"),
            index,
            value,
        }
        .into());
    }
    let h = h.to_owned();
    let u = inverse_factor(&h, cfg.percdamp, path)?;
    // Columns of W as contiguous rows: wt[j] is input j's weights over all outputs.
    let mut wt: Array2<f64> = w.t().mapv(|v| v.as_f64());
    for j in 0..cols {
        if h[[j, j]] == 0.0 {
            wt.row_mut(j).fill(0.0);
        }
    }
    let mut keep_t = Array2::from_elem((cols, rows), true);
    let bs = match pattern {
        SparsityPattern::NM { m, .. } => cfg.block_size.div_ceil(m) * m,
        SparsityPattern::Unstructured(_) => cfg.block_size,
    };
    let mut pruned_so_far = 0usize;
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + bs).min(cols);
        if let SparsityPattern::Unstructured(sp) = pattern {
            // Exact total: this block prunes up to round(sp * weights so far).
            let target = (sp * (i2 * rows) as f64).round() as usize;
            let k = target.saturating_sub(pruned_so_far).min((i2 - i1) * rows);
            pruned_so_far += k;
            if k > 0 {
                let score = |j: usize, r: usize| {
                    let d = u[(j, j)];
                    wt[[j, r]] * wt[[j, r]] / (d * d)
                };
                let mut idx: Vec<(usize, usize)> = (i1..i2)
                    .flat_map(|j| (0..rows).map(move |r| (j, r)))
                    .collect();
                idx.select_nth_unstable_by(k - 1, |&(a, ra), &(b, rb)| {
                    score(a, ra)
                        .total_cmp(&score(b, rb))
                        .then((b, rb).cmp(&(a, ra)))
                });
                for &(j, r) in &idx[..k] {
                    keep_t[[j, r]] = false;
                }
            }
        }
        let mut err = Array2::<f64>::zeros((i2 - i1, rows));
        for j in i1..i2 {
            if let SparsityPattern::NM { n, m } = pattern
                && j % m == 0
            {
                for r in 0..rows {
                    let mut g: Vec<usize> = (j..j + m).collect();
                    let sc = |c: usize| wt[[c, r]] * wt[[c, r]] / (u[(c, c)] * u[(c, c)]);
                    g.sort_by(|&a, &b| sc(a).total_cmp(&sc(b)).then(b.cmp(&a)));
                    for &c in &g[..m - n] {
                        keep_t[[c, r]] = false;
                    }
                }
            }
            let d = u[(j, j)];
            let mut e = err.row_mut(j - i1);
            {
                let mut col = wt.row_mut(j);
                for ((v, ev), &k) in col.iter_mut().zip(e.iter_mut()).zip(keep_t.row(j)) {
                    if !k {
                        *ev = *v / d;
                        *v = 0.0;
                    }
                }
            }
            for c in j + 1..i2 {
                let f = u[(j, c)];
                if f != 0.0 {
                    let mut dst = wt.row_mut(c);
                    dst.scaled_add(-f, &e);
                }
            }
        }
        if i2 < cols {
            // wt[i2..] -= U[i1..i2, i2..]^T err
            let ub = Array2::from_shape_fn((i2 - i1, cols - i2), |(a, b)| u[(i1 + a, i2 + b)]);
            let mut rest = wt.slice_mut(s![i2.., ..]);
            ndarray::linalg::general_mat_mul(-1.0, &ub.t(), &err, 1.0, &mut rest);
        }
        i1 = i2;
    }
    for ((v, &nv), &k) in w.iter_mut().zip(wt.t().iter()).zip(keep_t.t().iter()) {
        *v = if k { F::lit(nv) } else { F::zero() };
    }
    Ok(keep_t.t().to_owned())
}
