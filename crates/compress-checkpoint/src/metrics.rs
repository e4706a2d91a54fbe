//! Error metrics between an original tensor and its reconstruction.

use serde::Serialize;

/// Sums over one or more tensors, accumulated in f64 (products of f32 values near
/// `f32::MAX` neither overflow nor lose the small terms).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrSums {
    /// `sum a^2` over positions where both values are finite.
    pub signal: f64,
    /// `sum (a - b)^2` over the same positions.
    pub noise: f64,
    /// `sum b^2` over the same positions.
    pub other: f64,
    /// `sum a * b` over the same positions.
    pub dot: f64,
    /// `max |a - b|` over the same positions.
    pub max_abs: f64,
    /// Positions where either value is NaN or infinite and the two are not bit-identical.
    pub nonfinite: usize,
    /// Elements.
    pub n: usize,
}

impl ErrSums {
    /// The sums of `a` (reference) against `b`.
    ///
    /// # Panics
    ///
    /// If the lengths differ (callers compare shapes first).
    pub fn of(a: &[f32], b: &[f32]) -> Self {
        assert_eq!(a.len(), b.len(), "compared tensors differ in length");
        const L: usize = 4;
        let mut s = Self {
            n: a.len(),
            ..Self::default()
        };
        // Four independent f64 lanes per quantity (which the compiler vectorizes); positions
        // holding a non-finite value are counted apart instead of poisoning the sums.
        let (mut sig, mut noise, mut oth, mut dot, mut mx) = (
            [0.0f64; L],
            [0.0f64; L],
            [0.0f64; L],
            [0.0f64; L],
            [0.0f64; L],
        );
        let mut nonfinite = 0usize;
        let mut ia = a.chunks_exact(L);
        let mut ib = b.chunks_exact(L);
        let mut one = |k: usize, x: f32, y: f32, mx: &mut [f64; L]| {
            if x.is_finite() && y.is_finite() {
                let (x, y) = (f64::from(x), f64::from(y));
                let d = x - y;
                sig[k] += x * x;
                noise[k] += d * d;
                oth[k] += y * y;
                dot[k] += x * y;
                let ad = d.abs();
                mx[k] = if ad > mx[k] { ad } else { mx[k] };
            } else if x.to_bits() != y.to_bits() {
                nonfinite += 1;
            }
        };
        for (xa, xb) in (&mut ia).zip(&mut ib) {
            for k in 0..L {
                one(k, xa[k], xb[k], &mut mx);
            }
        }
        for (&x, &y) in ia.remainder().iter().zip(ib.remainder()) {
            one(0, x, y, &mut mx);
        }
        s.nonfinite = nonfinite;
        s.signal = sig.iter().sum();
        s.noise = noise.iter().sum();
        s.other = oth.iter().sum();
        s.dot = dot.iter().sum();
        s.max_abs = mx.iter().copied().fold(0.0, f64::max);
        s
    }

    /// Adds another tensor's sums.
    pub fn add(&mut self, o: &Self) {
        self.signal += o.signal;
        self.noise += o.noise;
        self.other += o.other;
        self.dot += o.dot;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.nonfinite += o.nonfinite;
        self.n += o.n;
    }

    /// The metrics.
    pub fn metrics(&self) -> ErrMetrics {
        // Identity is decided by the largest difference, which cannot underflow to zero the
        // way a sum of squares of tiny differences can.
        let identical = self.max_abs == 0.0 && self.nonfinite == 0;
        let sqnr_db = (!identical && self.noise != 0.0 && self.nonfinite == 0)
            .then(|| compress_core::sqnr_db_of_sums(self.signal, self.noise));
        let rel_error = if self.nonfinite > 0 {
            f64::INFINITY
        } else if self.signal > 0.0 {
            (self.noise / self.signal).sqrt()
        } else if self.noise == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        let cosine = if self.signal > 0.0 && self.other > 0.0 {
            // Clamped: rounding can overshoot 1 by a few ulps.
            (self.dot / (self.signal.sqrt() * self.other.sqrt())).clamp(-1.0, 1.0)
        } else if self.signal == self.other {
            1.0
        } else {
            0.0
        };
        ErrMetrics {
            identical,
            sqnr_db: sqnr_db.filter(|v| v.is_finite()),
            rel_error: Some(rel_error).filter(|v| v.is_finite()),
            cosine,
            max_abs_error: self.max_abs,
            nonfinite: self.nonfinite,
        }
    }
}

/// Error of a reconstruction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrMetrics {
    /// Bit-identical values (the SQNR is then infinite and reported as `null`).
    pub identical: bool,
    /// `10 log10(sum a^2 / sum (a-b)^2)`; `None` when identical or the signal is zero.
    pub sqnr_db: Option<f64>,
    /// `||a - b|| / ||a||`; `None` for a zero signal with noise.
    pub rel_error: Option<f64>,
    /// `a . b / (||a|| ||b||)`.
    pub cosine: f64,
    /// `max |a - b|` over positions where both values are finite.
    pub max_abs_error: f64,
    /// Positions where a NaN or infinity differs between the two (then never `identical`,
    /// and the SQNR and relative error are not reported).
    #[serde(skip_serializing_if = "is_zero")]
    pub nonfinite: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        let m = ErrSums::of(&[1.0, -1.0], &[1.1, -0.9]).metrics();
        assert!((m.sqnr_db.unwrap() - 20.0).abs() < 1e-3);
        assert!((m.rel_error.unwrap() - 0.1).abs() < 1e-6);
        assert!(!m.identical);
        let m = ErrSums::of(&[1.0, 2.0], &[1.0, 2.0]).metrics();
        assert!(m.identical && m.sqnr_db.is_none() && (m.cosine - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_and_huge_values_are_not_identical_and_sum_in_f64() {
        let m = ErrSums::of(&[1.0, f32::NAN], &[1.0, 2.0]).metrics();
        assert!(
            !m.identical && m.nonfinite == 1 && m.sqnr_db.is_none(),
            "{m:?}"
        );
        let m = ErrSums::of(&[1.0, f32::NAN], &[1.0, f32::NAN]).metrics();
        assert!(m.identical, "the same NaN bits on both sides are identical");
        let m = ErrSums::of(&[1e20, -1e20], &[1.01e20, -1e20]).metrics();
        assert!(m.rel_error.is_some_and(|r| r > 1e-3), "{m:?}");
        assert!(m.cosine.is_finite() && m.cosine > 0.99, "{m:?}");
    }

    proptest! {
        #[test]
        fn sqnr_matches_the_library_and_sums_compose(
            a in proptest::collection::vec(-10.0f32..10.0, 1..300),
            noise in proptest::collection::vec(-0.1f32..0.1, 300),
        ) {
            let b: Vec<f32> = a.iter().zip(&noise).map(|(x, e)| x + e).collect();
            let s = ErrSums::of(&a, &b);
            let lib = compress_quant::sqnr_db(&a, &b);
            if let Some(db) = s.metrics().sqnr_db {
                prop_assert!((db - lib).abs() < 1e-4 * lib.abs().max(1.0), "{} vs {}", db, lib);
            }
            let h = a.len() / 2;
            let mut parts = ErrSums::of(&a[..h], &b[..h]);
            parts.add(&ErrSums::of(&a[h..], &b[h..]));
            prop_assert!((parts.noise - s.noise).abs() <= 1e-5 * s.noise.max(1e-30));
            prop_assert!(s.metrics().cosine <= 1.0 + 1e-9);
        }
    }
}
