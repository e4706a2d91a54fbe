//! Calibration: choosing clipping ranges for weights and activations.
//!
//! An [`Observer`] accumulates statistics over one or more batches and turns them into a
//! range with one of the [`Calibration`] methods. [`ObserverLayer`] wraps a layer to observe
//! its inputs while a model runs over calibration data ([`attach_observers`],
//! [`calibrate`], [`detach_observers`]); [`quantize_calibrated`] applies a method to each
//! channel or group of a weight.

mod histogram;
mod observer_layer;

pub use histogram::{Histogram, kl_threshold};
pub use observer_layer::{ObserverLayer, attach_observers, calibrate, detach_observers};

use compress_core::CoreError;

use crate::error::non_finite;
use crate::kernels::quantize::min_max;
use crate::qtensor::BlockLayout;
use crate::{IntScheme, QTensor, QuantError, qparams_from_range};

/// Bins of the activation histograms.
pub const DEFAULT_BINS: usize = 2048;

/// How a clipping range is chosen from observed values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Calibration {
    /// The smallest and largest value seen.
    #[default]
    MinMax,
    /// Per-batch min and max, averaged with `new = (1 - momentum) old + momentum batch`
    /// (PyTorch's `MovingAverageMinMaxObserver`, momentum 0.01). The first batch sets them.
    MovingAverageMinMax {
        /// Weight of each new batch, in `(0, 1]`.
        momentum: f32,
    },
    /// The `percentile`-th and `(100 - percentile)`-th percentiles (e.g. 99.99), from a
    /// histogram.
    Percentile {
        /// In `(50, 100]`.
        percentile: f64,
    },
    /// The clip range (a fraction of the min-max range) minimising the expected squared
    /// quantization error for the scheme's bit width.
    Mse,
    /// TensorRT's entropy calibration: the symmetric threshold minimising the KL divergence
    /// between the clipped and the quantized histogram of `|x|`.
    Entropy,
}

impl Calibration {
    /// Checks the method's parameters.
    ///
    /// # Errors
    ///
    /// An invalid-config error naming `momentum` or `percentile`.
    pub fn validate(&self) -> Result<(), QuantError> {
        match *self {
            Self::MovingAverageMinMax { momentum } if !(momentum > 0.0 && momentum <= 1.0) => Err(
                CoreError::config("momentum", format!("must be in (0, 1], got {momentum}")).into(),
            ),
            Self::Percentile { percentile } if !(percentile > 50.0 && percentile <= 100.0) => {
                Err(CoreError::config(
                    "percentile",
                    format!("must be in (50, 100], got {percentile}"),
                )
                .into())
            }
            _ => Ok(()),
        }
    }

    fn needs_histogram(&self) -> bool {
        matches!(self, Self::Percentile { .. } | Self::Mse | Self::Entropy)
    }

    /// A short label (`minmax`, `percentile(99.99)`, ...).
    pub fn label(&self) -> String {
        match self {
            Self::MinMax => "minmax".into(),
            Self::MovingAverageMinMax { momentum } => format!("moving-average({momentum})"),
            Self::Percentile { percentile } => format!("percentile({percentile})"),
            Self::Mse => "mse".into(),
            Self::Entropy => "entropy".into(),
        }
    }
}

/// Collects statistics of the values it sees and turns them into a clipping range.
///
/// ```
/// use compress_quant::{Calibration, IntScheme, Observer};
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let mut obs = Observer::new(Calibration::MinMax, IntScheme::new(8).affine());
/// obs.observe(&[0.0, 2.0, 1.0])?;
/// obs.observe(&[-1.0, 0.5])?;
/// assert_eq!(obs.range()?, (-1.0, 2.0));
/// let (scale, zp) = obs.qparams()?;
/// assert_eq!(zp, 85);
/// assert!((scale - 3.0 / 255.0).abs() < 1e-7);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Observer {
    method: Calibration,
    scheme: IntScheme,
    min: f32,
    max: f32,
    batches: usize,
    hist: Option<Histogram>,
    abs_hist: Option<Histogram>,
}

impl Observer {
    /// An observer with [`DEFAULT_BINS`] histogram bins (when the method needs them).
    pub fn new(method: Calibration, scheme: IntScheme) -> Self {
        Self::with_bins(method, scheme, DEFAULT_BINS)
    }

    /// An observer with `bins` histogram bins.
    pub fn with_bins(method: Calibration, scheme: IntScheme, bins: usize) -> Self {
        let (hist, abs_hist) = if method.needs_histogram() {
            (Some(Histogram::new(bins)), Some(Histogram::new(bins)))
        } else {
            (None, None)
        };
        Self {
            method,
            scheme,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            batches: 0,
            hist,
            abs_hist,
        }
    }

    /// The method.
    pub fn method(&self) -> Calibration {
        self.method
    }

    /// The scheme ranges are made for.
    pub fn scheme(&self) -> IntScheme {
        self.scheme
    }

    /// Batches observed.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Adds one batch of values.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] (path `"activation"`) for NaN or infinite values, or an
    /// invalid method.
    pub fn observe(&mut self, x: &[f32]) -> Result<(), QuantError> {
        self.method.validate()?;
        if x.is_empty() {
            return Ok(());
        }
        let (lo, hi, finite) = min_max(x);
        if !finite {
            return Err(non_finite(x, "activation"));
        }
        match self.method {
            Calibration::MovingAverageMinMax { momentum } if self.batches > 0 => {
                self.min += momentum * (lo - self.min);
                self.max += momentum * (hi - self.max);
            }
            _ => {
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
            }
        }
        if let Some(h) = &mut self.hist {
            h.add(x, lo, hi);
        }
        if let Some(h) = &mut self.abs_hist {
            let abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            let amax = lo.abs().max(hi.abs());
            let amin = abs.iter().fold(f32::INFINITY, |a, &b| a.min(b));
            // Anchor the |x| histogram at 0 so the threshold search starts there.
            h.add(&abs, amin.min(0.0), amax);
        }
        self.batches += 1;
        Ok(())
    }

    /// The clipping range chosen by the method.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`] when nothing has been observed.
    pub fn range(&self) -> Result<(f32, f32), QuantError> {
        if self.batches == 0 {
            return Err(CoreError::InvalidState {
                layer: "Observer".into(),
                reason: "no values observed yet".into(),
            }
            .into());
        }
        let (lo, hi) = (self.min, self.max);
        Ok(match self.method {
            Calibration::MinMax | Calibration::MovingAverageMinMax { .. } => (lo, hi),
            Calibration::Percentile { percentile } => {
                let h = self.hist.as_ref().map_or((lo, hi), |h| {
                    let q = percentile / 100.0;
                    (h.quantile(1.0 - q), h.quantile(q))
                });
                (h.0.max(lo), h.1.min(hi))
            }
            Calibration::Mse => self
                .hist
                .as_ref()
                .map_or((lo, hi), |h| h.mse_range(self.scheme, 100)),
            Calibration::Entropy => {
                let Some(h) = &self.abs_hist else {
                    return Ok((lo, hi));
                };
                let (qlo, qhi) = self.scheme.code_range();
                let nonneg = lo >= 0.0;
                let levels = if nonneg && self.scheme.affine {
                    (qhi - qlo + 1) as usize
                } else {
                    (qhi + 1) as usize
                };
                let t = kl_threshold(h, levels);
                (lo.max(-t), hi.min(t))
            }
        })
    }

    /// Scale and zero point for the chosen range.
    ///
    /// # Errors
    ///
    /// As [`Observer::range`] and [`qparams_from_range`].
    pub fn qparams(&self) -> Result<(f32, i32), QuantError> {
        let (lo, hi) = self.range()?;
        qparams_from_range(lo, hi, self.scheme)
    }
}

/// The clipping range of `x` under `method` (a one-batch [`Observer`]).
///
/// ```
/// use compress_quant::{Calibration, IntScheme, calibrate_range};
/// let mut x: Vec<f32> = (0..1000).map(|i| (i as f32 / 1000.0) - 0.5).collect();
/// x.push(40.0); // one outlier
/// let (_, hi) = calibrate_range(&x, Calibration::Percentile { percentile: 99.0 }, IntScheme::new(8)).unwrap();
/// assert!(hi < 1.0);
/// ```
///
/// # Errors
///
/// As [`Observer::observe`] and [`Observer::range`] (an empty `x` has no range).
pub fn calibrate_range(
    x: &[f32],
    method: Calibration,
    scheme: IntScheme,
) -> Result<(f32, f32), QuantError> {
    let mut o = Observer::new(method, scheme);
    o.observe(x)?;
    o.range()
}

/// Quantizes a weight with ranges chosen per parameter set (tensor, channel or group) by
/// `method`.
///
/// # Errors
///
/// As [`QTensor::quantize_with_ranges`] and [`Observer::observe`].
pub fn quantize_calibrated(
    x: &[f32],
    shape: &[usize],
    scheme: IntScheme,
    method: Calibration,
) -> Result<QTensor, QuantError> {
    scheme.validate()?;
    method.validate()?;
    if method == Calibration::MinMax {
        return QTensor::quantize_slice(x, shape, scheme);
    }
    let n: usize = shape.iter().product();
    if x.len() != n {
        return Err(CoreError::shape("x", &[n], &[x.len()]).into());
    }
    let lay = BlockLayout::new(shape, scheme.granularity, "x")?;
    let per_param = lay.blocks / lay.params * lay.block_len;
    let bins = per_param.clamp(64, DEFAULT_BINS);
    let mut obs = vec![Observer::with_bins(method, scheme, bins); lay.params];
    for (b, block) in x.chunks_exact(lay.block_len).enumerate() {
        obs[lay.param(b)].observe(block)?;
    }
    let ranges = obs
        .iter()
        .map(Observer::range)
        .collect::<Result<Vec<_>, _>>()?;
    QTensor::quantize_with_ranges(x, shape, scheme, &ranges)
}
