//! Truncated SVD: exact (faer) and randomized (Halko, Martinsson and Tropp 2011).

use compress_core::{CoreError, Float, TensorExt};
use faer::Mat;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::config::{RankRule, SvdMethod};
use crate::{ArchError, Result};

/// A rank-`r` factorization `A ~ U diag(s) V^T` with the energy of the matrix it came from.
///
/// `u` has orthonormal columns and `vt` orthonormal rows; `s` is non-increasing.
/// The approximation is the orthogonal projection of `A` onto the span of `u` (for the exact
/// and the randomized SVD alike), so by Pythagoras its Frobenius error is
/// `sqrt(||A||_F^2 - sum s_i^2)` and, for the exact SVD, by Eckart-Young it equals
/// `sqrt(sum of the dropped s_i^2)`, the smallest possible at rank `r`.
#[derive(Debug, Clone, PartialEq)]
pub struct TruncatedSvd<F: Float> {
    /// Left singular vectors `[m, r]`.
    pub u: Array2<F>,
    /// Singular values `[r]`, non-increasing.
    pub s: Array1<F>,
    /// Right singular vectors, transposed `[r, n]`.
    pub vt: Array2<F>,
    /// `||A||_F^2` of the factorized matrix (in `f64`).
    pub total_energy: f64,
}

impl<F: Float> TruncatedSvd<F> {
    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.s.len()
    }

    /// `sum s_i^2` (in `f64`).
    pub fn kept_energy(&self) -> f64 {
        self.s.iter().map(|x| x.as_f64() * x.as_f64()).sum()
    }

    /// Fraction of `||A||_F^2` kept, in `[0, 1]` (`1` for an all-zero matrix).
    pub fn kept_energy_fraction(&self) -> f64 {
        if self.total_energy <= 0.0 {
            return 1.0;
        }
        (self.kept_energy() / self.total_energy).min(1.0)
    }

    /// `||A - U S V^T||_F` from the energies: `sqrt(||A||_F^2 - sum s_i^2)`.
    pub fn frobenius_error(&self) -> f64 {
        (self.total_energy - self.kept_energy()).max(0.0).sqrt()
    }

    /// `||A - U S V^T||_F / ||A||_F` (`0` for an all-zero matrix).
    pub fn relative_error(&self) -> f64 {
        if self.total_energy <= 0.0 {
            return 0.0;
        }
        self.frobenius_error() / self.total_energy.sqrt()
    }

    /// Keeps the first `r` triplets (`r` clamped to the current rank, at least 1 when
    /// there is one).
    #[must_use]
    pub fn truncate(mut self, r: usize) -> Self {
        let r = r.min(self.rank());
        self.u = self.u.slice(s![.., ..r]).to_owned();
        self.s = self.s.slice(s![..r]).to_owned();
        self.vt = self.vt.slice(s![..r, ..]).to_owned();
        self
    }

    /// `U diag(s) V^T`, `[m, n]`.
    pub fn reconstruct(&self) -> Array2<F> {
        let us = &self.u * &self.s.view().insert_axis(Axis(0));
        us.dot(&self.vt)
    }

    /// The balanced factors `(U sqrt(S) [m, r], sqrt(S) V^T [r, n])` whose product is
    /// [`TruncatedSvd::reconstruct`].
    pub fn balanced_factors(&self) -> (Array2<F>, Array2<F>) {
        let root = self.s.mapv(|x| x.max(F::zero()).sqrt());
        let left = &self.u * &root.view().insert_axis(Axis(0));
        let right = &self.vt * &root.view().insert_axis(Axis(1));
        (left, right)
    }
}

fn check_matrix<F: Float>(a: &ArrayView2<'_, F>, path: &str) -> Result<()> {
    if a.is_empty() {
        return Err(CoreError::Empty {
            path: path.to_string(),
            shape: a.shape().to_vec(),
        }
        .into());
    }
    a.check_finite(path)?;
    Ok(())
}

fn energy<F: Float>(a: &ArrayView2<'_, F>) -> f64 {
    a.iter().map(|x| x.as_f64() * x.as_f64()).sum()
}

fn to_faer<F: Float>(a: &ArrayView2<'_, F>) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]].as_f64())
}

fn from_faer<F: Float>(m: faer::MatRef<'_, f64>, cols: usize) -> Array2<F> {
    Array2::from_shape_fn((m.nrows(), cols), |(i, j)| F::lit(m[(i, j)]))
}

fn svd_failed(path: &str, rows: usize, cols: usize) -> ArchError {
    ArchError::SvdFailed {
        path: path.to_string(),
        rows,
        cols,
    }
}

/// The full thin SVD of `a` (`min(m, n)` triplets), computed by faer in `f64`.
///
/// # Errors
///
/// [`CoreError::Empty`] for an empty matrix, [`CoreError::NonFinite`] for NaN or infinite
/// entries (both naming `path`), [`ArchError::SvdFailed`] if faer does not converge.
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::svd_exact;
/// use ndarray::array;
///
/// let a = array![[3.0f64, 0.0], [0.0, 4.0]];
/// let svd = svd_exact(a.view(), "a").unwrap();
/// assert!((svd.s[0] - 4.0).abs() < 1e-12 && (svd.s[1] - 3.0).abs() < 1e-12);
/// ```
pub fn svd_exact<F: Float>(a: ArrayView2<'_, F>, path: &str) -> Result<TruncatedSvd<F>> {
    check_matrix(&a, path)?;
    let (m, n) = a.dim();
    let fa = to_faer(&a);
    let svd = fa.thin_svd().map_err(|_| svd_failed(path, m, n))?;
    let k = m.min(n);
    let sv = svd.S().column_vector();
    let s = Array1::from_shape_fn(k, |i| F::lit(sv[i]));
    let u = from_faer(svd.U(), k);
    let v = svd.V();
    let vt = Array2::from_shape_fn((k, n), |(i, j)| F::lit(v[(j, i)]));
    Ok(TruncatedSvd {
        u,
        s,
        vt,
        total_energy: energy(&a),
    })
}

/// The singular values of `a`, non-increasing, in `f64`.
///
/// # Errors
///
/// As [`svd_exact`].
pub fn singular_values<F: Float>(a: ArrayView2<'_, F>, path: &str) -> Result<Vec<f64>> {
    check_matrix(&a, path)?;
    let (m, n) = a.dim();
    to_faer(&a)
        .singular_values()
        .map_err(|_| svd_failed(path, m, n))
}

/// The working precision of the randomized SVD: `f32` for `f32` input, `f64` otherwise.
trait Work: faer::traits::RealField + Copy {
    fn of(x: f64) -> Self;
    fn to(self) -> f64;
}

impl Work for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn to(self) -> f64 {
        f64::from(self)
    }
}

impl Work for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn to(self) -> f64 {
        self
    }
}

/// Standard normal samples by the Box-Muller transform.
fn gaussian_matrix<T: Work>(rows: usize, cols: usize, seed: u64) -> Mat<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut spare: Option<f64> = None;
    Mat::from_fn(rows, cols, |_, _| {
        if let Some(z) = spare.take() {
            return T::of(z);
        }
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        spare = Some(r * t.sin());
        T::of(r * t.cos())
    })
}

fn product<T: Work>(lhs: faer::MatRef<'_, T>, rhs: faer::MatRef<'_, T>) -> Mat<T> {
    let mut out = Mat::zeros(lhs.nrows(), rhs.ncols());
    faer::linalg::matmul::matmul(
        out.as_mut(),
        faer::Accum::Replace,
        lhs,
        rhs,
        T::of(1.0),
        faer::Par::Seq,
    );
    out
}

/// Orthonormal basis of the columns of `y` (thin QR).
fn orthonormal<T: Work>(y: &Mat<T>) -> Mat<T> {
    y.qr().compute_thin_Q()
}

/// Randomized range finder + small SVD in precision `T`; `at` is `A^T` (`[n, m]`), which is
/// how a row-major ndarray matrix looks to column-major faer without a transposing copy.
fn randomized_core<F: Float, T: Work>(
    a: &ArrayView2<'_, F>,
    k: usize,
    l: usize,
    power_iters: usize,
    seed: u64,
    path: &str,
) -> Result<TruncatedSvd<F>> {
    let (m, n) = a.dim();
    let at: Mat<T> = Mat::from_fn(n, m, |i, j| T::of(a[[j, i]].as_f64()));
    let a_f = at.transpose();
    let omega = gaussian_matrix::<T>(n, l, seed);
    let mut q = orthonormal(&product(a_f, omega.as_ref()));
    for _ in 0..power_iters {
        let z = orthonormal(&product(at.as_ref(), q.as_ref()));
        q = orthonormal(&product(a_f, z.as_ref()));
    }
    // B^T = A^T Q, [n, l]; its thin SVD B^T = W S Z^T gives A ~ (Q Z) S W^T.
    let bt = product(at.as_ref(), q.as_ref());
    let small = bt.thin_svd().map_err(|_| svd_failed(path, m, n))?;
    let w = small.U(); // [n, l]
    let z = small.V(); // [l, l]
    let uq = product(q.as_ref(), z.get(.., ..k)); // [m, k]
    let sv = small.S().column_vector();
    Ok(TruncatedSvd {
        u: Array2::from_shape_fn((m, k), |(i, j)| F::lit(uq[(i, j)].to())),
        s: Array1::from_shape_fn(k, |i| F::lit(sv[i].to())),
        vt: Array2::from_shape_fn((k, n), |(i, j)| F::lit(w[(j, i)].to())),
        total_energy: energy(a),
    })
}

/// The top-`k` singular triplets of `a` by a randomized range finder with
/// `power_iters` subspace iterations and `oversample` extra columns
/// (Halko, Martinsson and Tropp 2011, algorithms 4.4 and 5.1).
///
/// The sketch `A Omega` (`Omega` Gaussian, `n x (k + oversample)`) is refined by
/// `Q <- qr(A qr(A^T Q))` `power_iters` times; the SVD of the small `Q^T A` then gives the
/// triplets. Everything runs in faer, in `f32` for `f32` input and `f64` otherwise, on one
/// thread. `k` is clamped to `1..=min(m, n)`.
///
/// # Errors
///
/// As [`svd_exact`].
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::randomized_svd;
/// use ndarray::Array2;
///
/// // A rank-2 matrix is recovered exactly.
/// let a = Array2::from_shape_fn((40, 30), |(i, j)| (i as f64) * 0.1 + (j as f64 % 3.0));
/// let svd = randomized_svd(a.view(), 2, 5, 1, 7, "a").unwrap();
/// assert!(svd.relative_error() < 1e-6);
/// ```
pub fn randomized_svd<F: Float>(
    a: ArrayView2<'_, F>,
    k: usize,
    oversample: usize,
    power_iters: usize,
    seed: u64,
    path: &str,
) -> Result<TruncatedSvd<F>> {
    check_matrix(&a, path)?;
    let (m, n) = a.dim();
    let full = m.min(n);
    let k = k.clamp(1, full);
    let l = (k + oversample).min(full);
    if std::mem::size_of::<F>() == std::mem::size_of::<f32>() {
        randomized_core::<F, f32>(&a, k, l, power_iters, seed, path)
    } else {
        randomized_core::<F, f64>(&a, k, l, power_iters, seed, path)
    }
}

/// Power iterations of [`SvdMethod::Auto`].
const AUTO_POWER_ITERS: usize = 3;

/// Oversampling of [`SvdMethod::Auto`]: `max(10, k / 2)`.
fn auto_oversample(k: usize) -> usize {
    10.max(k / 2)
}

fn auto_is_exact(k: usize, m: usize, n: usize) -> bool {
    let full = m.min(n);
    full <= 256 || 2 * (k + auto_oversample(k)) > full
}

/// The rank-`r` truncated SVD of `a`, with `r` chosen by `rule` and computed by `method`.
///
/// For [`RankRule::Energy`] with a randomized method the sketch grows (16, 32, 64, ...
/// columns) until the kept energy reaches the fraction (the total energy `||A||_F^2` is known
/// exactly), falling back to the exact SVD when the sketch would cover half the spectrum.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] for an invalid rule, otherwise as [`svd_exact`].
///
/// # Examples
///
/// ```
/// use compress_arch::lowrank::{RankRule, SvdMethod, truncated_svd};
/// use ndarray::Array2;
///
/// let a = Array2::from_shape_fn((20, 10), |(i, j)| ((i * 7 + j * 3) % 5) as f32);
/// let svd = truncated_svd(a.view(), RankRule::Energy(0.9), SvdMethod::Exact, "a").unwrap();
/// assert!(svd.kept_energy_fraction() >= 0.9);
/// ```
pub fn truncated_svd<F: Float>(
    a: ArrayView2<'_, F>,
    rule: RankRule,
    method: SvdMethod,
    path: &str,
) -> Result<TruncatedSvd<F>> {
    rule.validate()?;
    check_matrix(&a, path)?;
    let (m, n) = a.dim();
    let full = m.min(n);
    let (fixed_oversample, power_iters, seed) = match method {
        SvdMethod::Exact => return exact_then_rank(a, rule, path),
        SvdMethod::Randomized {
            oversample,
            power_iters,
            seed,
        } => (Some(oversample), power_iters, seed),
        SvdMethod::Auto => (None, AUTO_POWER_ITERS, 0),
    };
    let oversample = |k: usize| fixed_oversample.unwrap_or_else(|| auto_oversample(k));
    let auto = method == SvdMethod::Auto;
    match rule.static_rank(m, n) {
        Some(r) => {
            if auto && auto_is_exact(r, m, n) {
                return exact_then_rank(a, rule, path);
            }
            randomized_svd(a, r, oversample(r), power_iters, seed, path)
        }
        None => {
            let mut k = 16.min(full);
            loop {
                if (auto && auto_is_exact(k, m, n)) || (k + oversample(k)) * 2 > full {
                    return exact_then_rank(a, rule, path);
                }
                let svd = randomized_svd(a, k, oversample(k), power_iters, seed, path)?;
                let vals: Vec<f64> = svd.s.iter().map(|x| x.as_f64()).collect();
                let r = rule.rank_for(&vals, svd.total_energy, m, n);
                if r <= vals.len() {
                    return Ok(svd.truncate(r));
                }
                k *= 2;
            }
        }
    }
}

fn exact_then_rank<F: Float>(
    a: ArrayView2<'_, F>,
    rule: RankRule,
    path: &str,
) -> Result<TruncatedSvd<F>> {
    let (m, n) = a.dim();
    let svd = svd_exact(a, path)?;
    let vals: Vec<f64> = svd.s.iter().map(|x| x.as_f64()).collect();
    let r = rule.rank_for(&vals, svd.total_energy, m, n);
    Ok(svd.truncate(r))
}
