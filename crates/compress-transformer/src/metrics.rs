//! Fidelity of one set of sentence embeddings to another (a compressed model's to its
//! original's, row `i` of both for sentence `i`).
//!
//! Definitions (all in `f64`, `cos(u, v) = u.v / (|u| |v|)`, `0` when a norm is `0`):
//! - **cosine** of sentence `i`: `cos(a_i, b_i)`; [`Fidelity::mean_cosine`] and
//!   [`Fidelity::min_cosine`] over all sentences.
//! - **top-1 agreement**: the fraction of sentences `i` whose nearest neighbour among the
//!   other sentences (highest `cos(x_i, x_j)`, `j != i`, lowest `j` on ties) is the same
//!   under `a` and under `b`.
//! - **Spearman**: Spearman's rank correlation between the pairwise similarities
//!   `cos(a_i, a_j)` and `cos(b_i, b_j)` over all pairs `i < j` (Pearson correlation of
//!   the ranks, ties given their average rank).

use ndarray::{Array2, ArrayView2};

use crate::{Result, TransformerError};
use compress_core::CoreError;

/// The fidelity metrics of [the module](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fidelity {
    /// Number of sentences.
    pub sentences: usize,
    /// Mean of the per-sentence cosines.
    pub mean_cosine: f64,
    /// Smallest per-sentence cosine.
    pub min_cosine: f64,
    /// Fraction of sentences whose nearest neighbour agrees.
    pub top1_agreement: f64,
    /// Spearman correlation of the pairwise similarities.
    pub spearman: f64,
}

fn cos(u: &[f64], v: &[f64]) -> f64 {
    let (mut uv, mut uu, mut vv) = (0.0, 0.0, 0.0);
    for (&x, &y) in u.iter().zip(v) {
        uv += x * y;
        uu += x * x;
        vv += y * y;
    }
    if uu == 0.0 || vv == 0.0 {
        0.0
    } else {
        uv / (uu.sqrt() * vv.sqrt())
    }
}

fn rows(a: &ArrayView2<'_, f32>) -> Vec<Vec<f64>> {
    a.rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

/// `cos(a_i, b_i)` for every row.
///
/// # Errors
///
/// A shape error when `a` and `b` differ in shape.
pub fn cosine_rows(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Result<Vec<f64>> {
    if a.dim() != b.dim() {
        return Err(CoreError::shape("embeddings", a.shape(), b.shape()).into());
    }
    let (ra, rb) = (rows(a), rows(b));
    Ok(ra.iter().zip(&rb).map(|(u, v)| cos(u, v)).collect())
}

/// The pairwise cosine similarity matrix `[n, n]` of the rows of `a`.
pub fn similarity_matrix(a: &ArrayView2<'_, f32>) -> Array2<f64> {
    let r = rows(a);
    let n = r.len();
    let mut s = Array2::zeros((n, n));
    for i in 0..n {
        for j in i..n {
            let c = cos(&r[i], &r[j]);
            s[[i, j]] = c;
            s[[j, i]] = c;
        }
    }
    s
}

/// Index of the nearest other row of each row of a similarity matrix (lowest index on
/// ties).
pub fn nearest_neighbours(sim: &Array2<f64>) -> Vec<usize> {
    let n = sim.nrows();
    (0..n)
        .map(|i| {
            let mut best = usize::MAX;
            let mut best_s = f64::NEG_INFINITY;
            for j in (0..n).filter(|&j| j != i) {
                if best == usize::MAX || sim[[i, j]] > best_s {
                    best = j;
                    best_s = sim[[i, j]];
                }
            }
            best
        })
        .collect()
}

/// Ranks `1..=n` of `x`, ties given their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut e = k;
        while e + 1 < idx.len() && x[idx[e + 1]] == x[idx[k]] {
            e += 1;
        }
        let avg = (k + e) as f64 / 2.0 + 1.0;
        for &i in &idx[k..=e] {
            r[i] = avg;
        }
        k = e + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    if x == y {
        return 1.0;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        // One side is constant: no rank information.
        return 0.0;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman's rank correlation of `x` and `y` (equal lengths, at least 2).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for different lengths or fewer than 2 values.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return Err(CoreError::config(
            "spearman",
            format!(
                "need two series of equal length >= 2, got {} and {}",
                x.len(),
                y.len()
            ),
        )
        .into());
    }
    Ok(pearson(&ranks(x), &ranks(y)))
}

/// All four metrics of `b` against `a` (`[n, dim]` each, `n >= 3`).
///
/// # Errors
///
/// A shape error when the shapes differ, [`TransformerError::NoInput`] for fewer than 3
/// sentences (nearest neighbours and pair ranks need them).
pub fn fidelity(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Result<Fidelity> {
    let c = cosine_rows(a, b)?;
    let n = c.len();
    if n < 3 {
        return Err(TransformerError::NoInput {
            what: format!("sentences (need at least 3, got {n})"),
        });
    }
    let (sa, sb) = (similarity_matrix(a), similarity_matrix(b));
    let (na, nb) = (nearest_neighbours(&sa), nearest_neighbours(&sb));
    let agree = na.iter().zip(&nb).filter(|(x, y)| x == y).count();
    let mut pa = Vec::with_capacity(n * (n - 1) / 2);
    let mut pb = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            pa.push(sa[[i, j]]);
            pb.push(sb[[i, j]]);
        }
    }
    Ok(Fidelity {
        sentences: n,
        mean_cosine: c.iter().sum::<f64>() / n as f64,
        min_cosine: c.iter().copied().fold(f64::INFINITY, f64::min),
        top1_agreement: agree as f64 / n as f64,
        spearman: spearman(&pa, &pb)?,
    })
}
