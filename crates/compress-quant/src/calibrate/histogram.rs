//! A growable histogram and the range searches built on it (percentile, MSE, KL entropy).

use crate::{IntScheme, qparams_from_range};

/// A histogram of values over `[lo, hi]` with a fixed number of equal bins. When new data
/// falls outside the range, the range grows to cover it and the old counts are re-binned
/// by their bin centres (as PyTorch's `HistogramObserver` does).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    lo: f32,
    hi: f32,
    counts: Vec<f64>,
}

impl Histogram {
    /// An empty histogram with `bins` bins (at least 8).
    pub fn new(bins: usize) -> Self {
        Self {
            lo: f32::INFINITY,
            hi: f32::NEG_INFINITY,
            counts: vec![0.0; bins.max(8)],
        }
    }

    /// Whether nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    /// The covered range `(lo, hi)`.
    pub fn range(&self) -> (f32, f32) {
        (self.lo, self.hi)
    }

    /// The counts.
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    fn width(&self) -> f64 {
        (f64::from(self.hi) - f64::from(self.lo)) / self.counts.len() as f64
    }

    fn center(&self, i: usize) -> f64 {
        f64::from(self.lo) + (i as f64 + 0.5) * self.width()
    }

    #[inline]
    fn bin(&self, v: f32) -> usize {
        let nb = self.counts.len();
        let w = self.width();
        if w <= 0.0 {
            return 0;
        }
        let b = ((f64::from(v) - f64::from(self.lo)) / w) as usize;
        b.min(nb - 1)
    }

    /// Adds finite values whose minimum and maximum are `lo` and `hi`.
    pub(crate) fn add(&mut self, x: &[f32], lo: f32, hi: f32) {
        if x.is_empty() {
            return;
        }
        if lo < self.lo || hi > self.hi {
            self.grow(lo.min(self.lo), hi.max(self.hi));
        }
        if self.hi == self.lo {
            self.counts[0] += x.len() as f64;
            return;
        }
        for &v in x {
            let b = self.bin(v);
            self.counts[b] += 1.0;
        }
    }

    fn grow(&mut self, lo: f32, hi: f32) {
        let old = self.clone();
        self.lo = lo;
        self.hi = hi;
        self.counts.iter_mut().for_each(|c| *c = 0.0);
        if old.is_empty() {
            return;
        }
        for (i, &c) in old.counts.iter().enumerate() {
            if c > 0.0 {
                let v = if old.hi == old.lo {
                    old.lo
                } else {
                    old.center(i) as f32
                };
                let b = self.bin(v);
                self.counts[b] += c;
            }
        }
    }

    /// The value below which a fraction `q` (in `[0, 1]`) of the mass lies, interpolated
    /// linearly inside the bin.
    pub fn quantile(&self, q: f64) -> f32 {
        let total: f64 = self.counts.iter().sum();
        if total == 0.0 {
            return 0.0;
        }
        let target = q.clamp(0.0, 1.0) * total;
        let mut acc = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            if acc + c >= target && c > 0.0 {
                let frac = (target - acc) / c;
                return (f64::from(self.lo) + (i as f64 + frac) * self.width()) as f32;
            }
            acc += c;
        }
        self.hi
    }

    /// Expected squared quantization error per element of the clip range `[a, b]` under
    /// `scheme`: `scale^2 / 12` rounding noise inside the range (uniform-noise model) and the
    /// squared clipping distance of each bin centre outside it.
    fn clip_mse(&self, a: f32, b: f32, scheme: IntScheme) -> f64 {
        let Ok((s, z)) = qparams_from_range(a, b, scheme) else {
            return f64::INFINITY;
        };
        let (qlo, qhi) = scheme.code_range();
        let lo = f64::from(s) * f64::from(qlo - z);
        let hi = f64::from(s) * f64::from(qhi - z);
        let noise = f64::from(s) * f64::from(s) / 12.0;
        let mut err = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            let v = self.center(i);
            err += c * if v < lo {
                (lo - v) * (lo - v)
            } else if v > hi {
                (v - hi) * (v - hi)
            } else {
                noise
            };
        }
        err
    }

    /// The clip range `[alpha * lo, alpha * hi]` (alpha on a grid of `steps` values in
    /// `(0, 1]`) that minimises the expected squared error under `scheme`.
    pub fn mse_range(&self, scheme: IntScheme, steps: usize) -> (f32, f32) {
        let (lo, hi) = self.range();
        let steps = steps.max(1);
        let mut best = (f64::INFINITY, lo, hi);
        for i in 1..=steps {
            let alpha = i as f32 / steps as f32;
            let (a, b) = (lo * alpha, hi * alpha);
            let e = self.clip_mse(a, b, scheme);
            if e < best.0 {
                best = (e, a, b);
            }
        }
        (best.1, best.2)
    }
}

/// TensorRT-style entropy calibration: the threshold `t` over a histogram of `|x|` (range
/// `[0, amax]`) that minimises `KL(P || Q)`, where `P` is the histogram clipped at `t` (the
/// outliers added to its last bin) and `Q` is `P` quantized to `levels` bins and expanded back.
pub fn kl_threshold(abs_hist: &Histogram, levels: usize) -> f32 {
    let h = abs_hist.counts();
    let nb = h.len();
    let (_, amax) = abs_hist.range();
    let levels = levels.clamp(2, nb);
    let width = f64::from(amax) / nb as f64;
    let mut best = (f64::INFINITY, nb);
    let total_tail: Vec<f64> = {
        let mut t = vec![0.0; nb + 1];
        for i in (0..nb).rev() {
            t[i] = t[i + 1] + h[i];
        }
        t
    };
    let mut p = vec![0.0f64; nb];
    let mut q = vec![0.0f64; nb];
    for i in levels..=nb {
        p[..i].copy_from_slice(&h[..i]);
        p[i - 1] += total_tail[i];
        // Quantize h[..i] into `levels` groups, spreading each group's mass over its
        // non-empty bins.
        q[..i].iter_mut().for_each(|v| *v = 0.0);
        let merged = i as f64 / levels as f64;
        for j in 0..levels {
            let start = (j as f64 * merged).floor() as usize;
            let end = if j + 1 == levels {
                i
            } else {
                (((j + 1) as f64) * merged).floor() as usize
            };
            let slice = &h[start..end];
            let nonzero = slice.iter().filter(|&&v| v > 0.0).count();
            if nonzero == 0 {
                continue;
            }
            let mass: f64 = slice.iter().sum::<f64>() / nonzero as f64;
            for (k, &v) in slice.iter().enumerate() {
                if v > 0.0 {
                    q[start + k] = mass;
                }
            }
        }
        let kl = kl_divergence(&p[..i], &q[..i]);
        if kl < best.0 {
            best = (kl, i);
        }
    }
    ((best.1 as f64) * width) as f32
}

/// `KL(P || Q)` of two unnormalised histograms, with `Q` smoothed where `P > 0`.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let ps: f64 = p.iter().sum();
    let qs: f64 = q.iter().sum();
    if ps == 0.0 || qs == 0.0 {
        return f64::INFINITY;
    }
    let eps = 1e-10;
    let mut kl = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        if a > 0.0 {
            let pa = a / ps;
            let qb = (b / qs).max(eps);
            kl += pa * (pa / qb).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_of_uniform() {
        let x: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        let mut h = Histogram::new(1000);
        h.add(&x, 0.0, 0.9999);
        assert!((h.quantile(0.5) - 0.5).abs() < 2e-3);
        assert!((h.quantile(0.99) - 0.99).abs() < 2e-3);
    }

    #[test]
    fn growing_keeps_mass() {
        let mut h = Histogram::new(100);
        h.add(&[0.0, 1.0, 0.5], 0.0, 1.0);
        h.add(&[-3.0, 4.0], -3.0, 4.0);
        assert_eq!(h.counts().iter().sum::<f64>(), 5.0);
        assert_eq!(h.range(), (-3.0, 4.0));
    }

    #[test]
    fn mse_clips_heavy_tails() {
        // Mostly small values plus one huge outlier: the best 4-bit clip ignores the outlier.
        let mut x: Vec<f32> = (0..5000).map(|i| ((i as f32) * 0.37).sin()).collect();
        x.push(100.0);
        let mut h = Histogram::new(2048);
        h.add(&x, -1.0, 100.0);
        let (_, b) = h.mse_range(IntScheme::new(4), 200);
        assert!(b < 20.0, "clip at {b}");
    }

    #[test]
    fn kl_threshold_ignores_outliers() {
        let mut x: Vec<f32> = (0..20_000)
            .map(|i| ((i as f32) * 0.731).sin().abs())
            .collect();
        x.extend([50.0f32; 3]);
        let mut h = Histogram::new(2048);
        h.add(&x, 0.0, 50.0);
        let t = kl_threshold(&h, 128);
        assert!(t > 0.5 && t < 10.0, "threshold {t}");
    }
}
