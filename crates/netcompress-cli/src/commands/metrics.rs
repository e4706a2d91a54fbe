//! Error metrics between an original tensor and its reconstruction.

use serde::Serialize;

/// Sums over one or more tensors, accumulated in f64.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ErrSums {
    /// `sum a^2`.
    pub(crate) signal: f64,
    /// `sum (a - b)^2`.
    pub(crate) noise: f64,
    /// `sum b^2`.
    pub(crate) other: f64,
    /// `sum a * b`.
    pub(crate) dot: f64,
    /// `max |a - b|`.
    pub(crate) max_abs: f64,
    /// Elements.
    pub(crate) n: usize,
}

impl ErrSums {
    /// The sums of `a` (reference) against `b`.
    ///
    /// # Panics
    ///
    /// If the lengths differ (callers compare shapes first).
    pub(crate) fn of(a: &[f32], b: &[f32]) -> Self {
        assert_eq!(a.len(), b.len(), "compared tensors differ in length");
        const L: usize = 4;
        let mut s = Self {
            n: a.len(),
            ..Self::default()
        };
        // Blocks of 256 elements are summed in 4 independent f32 lanes (one SSE register per
        // quantity, which the compiler vectorizes), then each block total is added in f64:
        // the relative rounding error stays near 1e-6 whatever the tensor size.
        for (ca, cb) in a.chunks(256).zip(b.chunks(256)) {
            let (mut sig, mut noise, mut oth, mut dot, mut mx) = (
                [0.0f32; L],
                [0.0f32; L],
                [0.0f32; L],
                [0.0f32; L],
                [0.0f32; L],
            );
            let mut ia = ca.chunks_exact(L);
            let mut ib = cb.chunks_exact(L);
            for (xa, xb) in (&mut ia).zip(&mut ib) {
                for k in 0..L {
                    let (x, y) = (xa[k], xb[k]);
                    let d = x - y;
                    sig[k] += x * x;
                    noise[k] += d * d;
                    oth[k] += y * y;
                    dot[k] += x * y;
                    // A plain compare-select (not f32::max, whose NaN rules block `maxps`).
                    let ad = d.abs();
                    mx[k] = if ad > mx[k] { ad } else { mx[k] };
                }
            }
            for (&x, &y) in ia.remainder().iter().zip(ib.remainder()) {
                let d = x - y;
                sig[0] += x * x;
                noise[0] += d * d;
                oth[0] += y * y;
                dot[0] += x * y;
                mx[0] = mx[0].max(d.abs());
            }
            let sum = |v: [f32; L]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
            s.signal += sum(sig);
            s.noise += sum(noise);
            s.other += sum(oth);
            s.dot += sum(dot);
            s.max_abs = s
                .max_abs
                .max(f64::from(mx.iter().copied().fold(0.0f32, f32::max)));
        }
        s
    }

    /// Adds another tensor's sums.
    pub(crate) fn add(&mut self, o: &Self) {
        self.signal += o.signal;
        self.noise += o.noise;
        self.other += o.other;
        self.dot += o.dot;
        self.max_abs = self.max_abs.max(o.max_abs);
        self.n += o.n;
    }

    /// The metrics.
    pub(crate) fn metrics(&self) -> ErrMetrics {
        // Identity is decided by the largest difference, which cannot underflow to zero the
        // way a sum of squares of tiny differences can.
        let identical = self.max_abs == 0.0;
        let sqnr_db = if identical || self.noise == 0.0 {
            None
        } else if self.signal == 0.0 {
            Some(f64::NEG_INFINITY)
        } else {
            Some(10.0 * (self.signal / self.noise).log10())
        };
        let rel_error = if self.signal > 0.0 {
            (self.noise / self.signal).sqrt()
        } else if self.noise == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        let cosine = if self.signal > 0.0 && self.other > 0.0 {
            // Clamped: the f32 block sums can overshoot 1 by a few ulps.
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
        }
    }
}

/// Error of a reconstruction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct ErrMetrics {
    /// Bit-identical values (the SQNR is then infinite and reported as `null`).
    pub(crate) identical: bool,
    /// `10 log10(sum a^2 / sum (a-b)^2)`; `None` when identical or the signal is zero.
    pub(crate) sqnr_db: Option<f64>,
    /// `||a - b|| / ||a||`; `None` for a zero signal with noise.
    pub(crate) rel_error: Option<f64>,
    /// `a . b / (||a|| ||b||)`.
    pub(crate) cosine: f64,
    /// `max |a - b|`.
    pub(crate) max_abs_error: f64,
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
