//! Row kernels shared by the losses: one pass of exponentials per softmax, reused for the
//! probabilities, the log-probabilities and the gradients. Safe code only.

use compress_core::Float;

/// One row's softmax of `x / T`, kept in parts so that probabilities and
/// log-probabilities need no further `exp`/`ln`:
/// `z_j = x_j / T - max(x) / T` (so `z_j <= 0` and the largest is exactly 0),
/// `e_j = exp(z_j)`, `sum = sum_j e_j` (in `[1, C]`), `lse = ln(sum)`;
/// then `log p_j = z_j - lse` and `p_j = e_j / sum`.
#[derive(Debug, Clone)]
pub(crate) struct RowSoftmax<F: Float> {
    pub(crate) z: Vec<F>,
    pub(crate) e: Vec<F>,
    pub(crate) lse: F,
    pub(crate) inv_sum: F,
}

impl<F: Float> RowSoftmax<F> {
    /// Scratch for rows of `c` classes.
    pub(crate) fn new(c: usize) -> Self {
        Self {
            z: vec![F::zero(); c],
            e: vec![F::zero(); c],
            lse: F::zero(),
            inv_sum: F::one(),
        }
    }

    /// Fills the parts for `x * inv_t` (`inv_t > 0`; the scaled maximum is exactly
    /// `max(x) * inv_t`, since scaling by a positive number is monotone under rounding).
    #[inline]
    pub(crate) fn compute<'a>(&mut self, x: impl Iterator<Item = &'a F> + Clone, inv_t: F) {
        let m = x.clone().fold(F::neg_infinity(), |a, &b| a.max(b)) * inv_t;
        for (z, &v) in self.z.iter_mut().zip(x) {
            *z = v * inv_t - m;
        }
        let sum = exp_sum(&self.z, &mut self.e);
        self.lse = sum.ln();
        self.inv_sum = sum.recip();
    }

    /// `log p_j`.
    #[inline]
    pub(crate) fn logp(&self, j: usize) -> F {
        self.z[j] - self.lse
    }

    /// `p_j`.
    #[inline]
    pub(crate) fn p(&self, j: usize) -> F {
        self.e[j] * self.inv_sum
    }

    /// Writes `log p` into `out`.
    pub(crate) fn write_logp(&self, out: &mut [F]) {
        for (o, &z) in out.iter_mut().zip(&self.z) {
            *o = z - self.lse;
        }
    }

    /// Writes `p` into `out`.
    pub(crate) fn write_p(&self, out: &mut [F]) {
        for (o, &e) in out.iter_mut().zip(&self.e) {
            *o = e * self.inv_sum;
        }
    }
}

/// `e_j = exp(z_j)` for every `j`, returning `sum_j e_j`.
#[inline]
pub(crate) fn exp_sum<F: Float>(z: &[F], e: &mut [F]) -> F {
    let mut s = F::zero();
    for (o, &v) in e.iter_mut().zip(z) {
        let x = v.exp();
        *o = x;
        s += x;
    }
    s
}

/// `KL(p || q)` of one row from two softmax parts, clamped at 0 (it is non-negative
/// mathematically; rounding could otherwise leave `-1e-17`).
#[inline]
pub(crate) fn kl_row<F: Float>(p: &RowSoftmax<F>, q: &RowSoftmax<F>) -> F {
    let shift = q.lse - p.lse;
    let kl =
        p.e.iter()
            .zip(p.z.iter().zip(&q.z))
            .fold(F::zero(), |acc, (&e, (&zp, &zq))| {
                acc + e * (zp - zq + shift)
            });
    (kl * p.inv_sum).max(F::zero())
}
