//! Low-rank factors of a large tall matrix through its Gram matrix, in memory near the matrix
//! itself: `G = A^T A` (`cols x cols`, f64) is accumulated one block of rows at a time, its
//! eigenvectors are the right singular vectors `V` and its eigenvalues the squared singular
//! values, and the left factor `A V_r S^(-1/2)` is computed one block of rows at a time.
//!
//! In exact arithmetic the factors are those of the truncated SVD (balanced as
//! `U S^(1/2)`, `S^(1/2) V^T`). Squaring the matrix squares its condition number, so a
//! singular value below `1e-6` of the largest is resolved less accurately than by a direct
//! SVD; components that small carry under `1e-12` of the energy and are dropped.

use compress_arch::lowrank::{RankRule, svd_exact};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul, s};

/// Rows per block of `A`.
const BLOCK_ROWS: usize = 2048;

/// The balanced rank-`r` factors of a tall `m x cols` matrix and the fraction of its energy
/// they keep.
#[derive(Debug)]
pub(crate) struct GramFactors {
    /// `m x r`, row-major.
    pub(crate) u: Vec<f32>,
    /// `r x cols`, row-major.
    pub(crate) v: Vec<f32>,
    /// The rank.
    pub(crate) rank: usize,
    /// Kept energy over total energy.
    pub(crate) kept_energy_fraction: f64,
}

/// Factors `a` (`m x cols`, row-major, `m >= cols`) at the rank `rule` gives.
///
/// # Errors
///
/// A reason string when the eigen-decomposition of the Gram matrix fails.
pub(crate) fn gram_factors(
    a: &[f32],
    m: usize,
    cols: usize,
    rule: RankRule,
    name: &str,
) -> Result<GramFactors, String> {
    let mut g = Array2::<f64>::zeros((cols, cols));
    let mut block = Array2::<f64>::zeros((BLOCK_ROWS.min(m), cols));
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + BLOCK_ROWS).min(m);
        let mut b = block.slice_mut(s![..r1 - r0, ..]);
        for (dst, &x) in b.iter_mut().zip(&a[r0 * cols..r1 * cols]) {
            *dst = f64::from(x);
        }
        general_mat_mul(1.0, &b.t(), &b, 1.0, &mut g);
        r0 = r1;
    }
    drop(block);
    let total: f64 = (0..cols).map(|i| g[[i, i]]).sum();
    let eig = svd_exact(g.view(), name).map_err(|e| e.to_string())?;
    let lambda: Vec<f64> = eig.s.iter().map(|&l| l.max(0.0)).collect();
    let keep = lambda.first().map_or(0.0, |&l0| l0 * 1e-12);
    let sv: Vec<f64> = lambda.iter().map(|l| l.sqrt()).collect();
    let rank = rule.rank_for(&sv, total, m, cols);
    // V_r scaled for each factor: u = A V_r S^(-1/2), v = S^(1/2) V_r^T (S = sqrt(lambda)).
    let mut vr_scaled = Array2::<f32>::zeros((cols, rank));
    let mut v = vec![0.0f32; rank * cols];
    for j in 0..rank {
        let (inv, fwd) = if lambda[j] > keep && lambda[j] > 0.0 {
            (lambda[j].powf(-0.25), lambda[j].powf(0.25))
        } else {
            (0.0, 0.0)
        };
        for i in 0..cols {
            let vij = eig.u[[i, j]];
            vr_scaled[[i, j]] = (vij * inv) as f32;
            v[j * cols + i] = (vij * fwd) as f32;
        }
    }
    let mut u = vec![0.0f32; m * rank];
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + BLOCK_ROWS).min(m);
        let rows = ArrayView2::from_shape((r1 - r0, cols), &a[r0 * cols..r1 * cols])
            .map_err(|e| e.to_string())?;
        let mut out = ArrayViewMut2::from_shape((r1 - r0, rank), &mut u[r0 * rank..r1 * rank])
            .map_err(|e| e.to_string())?;
        general_mat_mul(1.0, &rows, &vr_scaled, 0.0, &mut out);
        r0 = r1;
    }
    let kept: f64 = lambda[..rank].iter().sum();
    Ok(GramFactors {
        u,
        v,
        rank,
        kept_energy_fraction: if total > 0.0 { kept / total } else { 1.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use compress_arch::lowrank::{SvdMethod, truncated_svd};

    /// The Gram factors reconstruct the matrix as well as the exact truncated SVD, at the
    /// same rank.
    #[test]
    fn matches_the_exact_truncated_svd() {
        let (m, cols) = (700, 40);
        let a: Vec<f32> = (0..m * cols)
            .map(|i| {
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                (r * 0.013).sin() * (c * 0.3).cos()
                    + 0.5 * (r * 0.007 + c * 0.11).cos()
                    + 0.05 * (((i * 7919) % 97) as f32 / 97.0 - 0.5)
            })
            .collect();
        let view = ArrayView2::from_shape((m, cols), &a).unwrap();
        for rule in [
            RankRule::Energy(0.9),
            RankRule::Energy(0.999),
            RankRule::Fixed(5),
        ] {
            let g = gram_factors(&a, m, cols, rule, "a").unwrap();
            let svd = truncated_svd(view, rule, SvdMethod::Exact, "a").unwrap();
            assert_eq!(g.rank, svd.rank(), "{rule:?}");
            assert!((g.kept_energy_fraction - svd.kept_energy_fraction()).abs() < 1e-6);
            let u = ArrayView2::from_shape((m, g.rank), &g.u).unwrap();
            let v = ArrayView2::from_shape((g.rank, cols), &g.v).unwrap();
            let err = |b: &Array2<f32>| -> f64 {
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| f64::from(x - y).powi(2))
                    .sum::<f64>()
            };
            let (e_gram, e_svd) = (err(&u.dot(&v)), err(&svd.reconstruct()));
            assert!(
                (e_gram - e_svd).abs() <= 1e-3 * e_svd.max(1e-9),
                "{rule:?}: {e_gram} vs {e_svd}"
            );
        }
    }
}
