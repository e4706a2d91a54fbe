//! Ternary Weight Networks (Li et al. 2016): weights in `{-alpha, 0, +alpha}` with threshold
//! `delta = 0.7 * mean |w|` and `alpha` = mean `|w|` of the weights above it (per layer);
//! 2-bit packed storage and a training-time [`Parametrization`].

use compress_core::{CoreError, Float, Parametrization, Result as CoreResult, TensorExt};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::QuantError;
use crate::cluster::PackedIndices;

/// TWN's threshold factor: `delta = 0.7 * mean |w|`.
pub const TWN_THRESHOLD: f64 = 0.7;

/// `(delta, alpha)` for `w` with `delta = factor * mean |w|` and `alpha` the mean `|w|` over
/// `|w| > delta` (0 when none is).
pub fn twn_params<F: Float>(w: &ArrayRef<F, IxDyn>, factor: f64) -> (f64, f64) {
    let n = w.len().max(1) as f64;
    let delta = factor * w.iter().map(|x| x.abs().as_f64()).sum::<f64>() / n;
    let (mut s, mut c) = (0.0, 0usize);
    for x in w.iter().map(|x| x.abs().as_f64()).filter(|&a| a > delta) {
        s += x;
        c += 1;
    }
    (delta, if c == 0 { 0.0 } else { s / c as f64 })
}

/// A ternary tensor: one scale and a 2-bit code per element (0 = zero, 1 = +alpha,
/// 2 = -alpha).
///
/// ```
/// use compress_quant::ternary::TernaryTensor;
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let w = ArrayD::from_shape_vec(vec![4], vec![0.9f32, -1.1, 0.05, 1.0])?;
/// let t = TernaryTensor::ternarize(&w)?;
/// assert_eq!(t.bytes(), 1 + 4); // four 2-bit codes + one f32 scale
/// assert_eq!(t.decode()?.as_slice().unwrap(), &[1.0, -1.0, 0.0, 1.0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryTensor<F: Float> {
    shape: Vec<usize>,
    alpha: F,
    codes: PackedIndices,
}

impl<F: Float> TernaryTensor<F> {
    /// TWN ternarization with the standard threshold factor 0.7.
    ///
    /// # Errors
    ///
    /// As [`TernaryTensor::ternarize_with`].
    pub fn ternarize(w: &ArrayRef<F, IxDyn>) -> Result<Self, QuantError> {
        Self::ternarize_with(w, TWN_THRESHOLD)
    }

    /// TWN ternarization with threshold `factor * mean |w|`.
    ///
    /// # Errors
    ///
    /// [`CoreError::NonFinite`] (`weights`) for NaN or infinity, [`CoreError::InvalidConfig`]
    /// (`factor`) for a negative or non-finite factor.
    pub fn ternarize_with(w: &ArrayRef<F, IxDyn>, factor: f64) -> Result<Self, QuantError> {
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(CoreError::config(
                "factor",
                format!("must be finite and >= 0, got {factor}"),
            )
            .into());
        }
        w.check_finite("weights")?;
        let (delta, alpha) = twn_params(w, factor);
        let codes: Vec<u32> = w
            .iter()
            .map(|x| {
                let v = x.as_f64();
                if v > delta {
                    1
                } else if v < -delta {
                    2
                } else {
                    0
                }
            })
            .collect();
        Ok(Self {
            shape: w.shape().to_vec(),
            alpha: F::lit(alpha),
            codes: PackedIndices::pack(&codes, 2)?,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The scale.
    pub fn alpha(&self) -> F {
        self.alpha
    }

    /// The packed 2-bit codes.
    pub fn codes(&self) -> &PackedIndices {
        &self.codes
    }

    /// Exact storage: `ceil(n / 4)` code bytes plus one scale of `size_of::<F>()` bytes.
    pub fn bytes(&self) -> usize {
        self.codes.bytes() + std::mem::size_of::<F>()
    }

    /// Fraction of zero codes.
    pub fn sparsity(&self) -> f64 {
        let n = self.codes.len().max(1);
        self.codes.unpack().iter().filter(|&&c| c == 0).count() as f64 / n as f64
    }

    /// The dense tensor `alpha * t`.
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] if a code is 3 (not produced by this crate).
    pub fn decode(&self) -> Result<ArrayD<F>, QuantError> {
        let v = self
            .codes
            .unpack()
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                0 => Ok(F::zero()),
                1 => Ok(self.alpha),
                2 => Ok(-self.alpha),
                _ => Err(QuantError::Format {
                    path: "<ternary codes>".into(),
                    reason: format!("invalid code {c} at element {i}"),
                }),
            })
            .collect::<Result<Vec<F>, _>>()?;
        Ok(ArrayD::from_shape_vec(IxDyn(&self.shape), v).map_err(CoreError::from)?)
    }
}

/// TWN as a parametrization: forward `alpha * t(w)` with `delta` and `alpha` recomputed from
/// the stored real weights each time; backward the straight-through estimator (the gradient
/// passes unchanged to the real weights, as in the paper).
///
/// ```
/// use compress_core::Param;
/// use compress_quant::ternary::TernaryWeights;
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Param::new(ArrayD::from_shape_vec(vec![4], vec![0.9f64, -1.1, 0.05, 1.0])?);
/// p.push_parametrization(Box::new(TernaryWeights::new()))?;
/// assert_eq!(p.effective().as_slice().unwrap(), &[1.0, -1.0, 0.0, 1.0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TernaryWeights {
    factor: f64,
}

impl Default for TernaryWeights {
    fn default() -> Self {
        Self::new()
    }
}

impl TernaryWeights {
    /// TWN with threshold factor 0.7.
    pub fn new() -> Self {
        Self {
            factor: TWN_THRESHOLD,
        }
    }

    /// A custom threshold factor.
    pub fn with_factor(factor: f64) -> Self {
        Self { factor }
    }
}

impl<F: Float> Parametrization<F> for TernaryWeights {
    fn name(&self) -> &'static str {
        "ternary"
    }

    fn validate(&self, _shape: &[usize]) -> CoreResult<()> {
        if !(self.factor.is_finite() && self.factor >= 0.0) {
            return Err(CoreError::config(
                "factor",
                format!("must be finite and >= 0, got {}", self.factor),
            ));
        }
        Ok(())
    }

    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        let (delta, alpha) = twn_params(input, self.factor);
        let (d, a) = (F::lit(delta), F::lit(alpha));
        input.mapv(|x| {
            if x > d {
                a
            } else if x < -d {
                -a
            } else {
                F::zero()
            }
        })
    }

    fn backward(&self, _input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        grad_output
    }
}
