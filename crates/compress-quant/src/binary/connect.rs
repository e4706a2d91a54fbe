//! BinaryConnect (Courbariaux et al. 2015) with optional XNOR-Net scaling, as a
//! [`Parametrization`]: binary weights in forward, real-valued shadow weights kept (clipped to
//! `[-1, 1]`) for the updates.

use std::marker::PhantomData;

use compress_core::{CoreError, Float, Parametrization, Result as CoreResult};
use ndarray::{ArrayD, Axis};

/// How the real-valued weight is turned into ±1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Binarization {
    /// `sign(w)` (with `sign(0) = +1`).
    #[default]
    Deterministic,
    /// `+1` with probability `hard_sigmoid(w) = clip((w + 1) / 2, 0, 1)`, else `-1`; a fresh
    /// sample after every optimizer step (fixed between steps, so forward and backward agree).
    Stochastic,
}

/// The scale applied to the ±1 weights.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum BinaryScale {
    /// Plain ±1 (BinaryConnect as published, which relies on batch normalisation).
    None,
    /// XNOR-Net: per output channel (axis 0), `alpha = mean |w|` of the real weights.
    #[default]
    PerChannel,
    /// A fixed scale, e.g. `1 / sqrt(fan_in)`.
    Constant(f64),
}

/// A fast, stateless uniform draw in `[0, 1)` for element `i` at `step` (SplitMix64).
#[inline]
pub(crate) fn uniform(seed: u64, step: u64, i: u64) -> f64 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// BinaryConnect as a parametrization.
///
/// - forward: `alpha_c * b(w)` with `b` the deterministic or stochastic binarization and
///   `alpha_c` from [`BinaryScale`] (per output channel `c`);
/// - backward: the clipped straight-through estimator `g * 1{|w| <= 1} * alpha_c`, plus, for
///   [`BinaryScale::PerChannel`], the exact gradient through `alpha_c = mean |w|`:
///   `sign(w_i) / n_c * sum_j g_j b_j` (XNOR-Net);
/// - `project` clips the stored (shadow) weights to `[-1, 1]` after every update.
///
/// [`BinaryConnect::set_deterministic`] switches a stochastic one to `sign(w)` for inference.
///
/// ```
/// use compress_core::Param;
/// use compress_quant::binary::{BinaryConnect, BinaryScale};
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let w = ArrayD::from_shape_vec(vec![2, 2], vec![0.5f32, -0.25, 3.0, -1.0])?;
/// let mut p = Param::new(w);
/// p.push_parametrization(Box::new(BinaryConnect::<f32>::deterministic(BinaryScale::PerChannel)))?;
/// assert_eq!(p.value()[[1, 0]], 1.0); // shadow weights clipped to [-1, 1]
/// assert_eq!(p.effective().as_slice().unwrap(), &[0.375, -0.375, 1.0, -1.0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BinaryConnect<F: Float> {
    mode: Binarization,
    scale: BinaryScale,
    seed: u64,
    step: u64,
    deterministic_override: bool,
    _f: PhantomData<F>,
}

impl<F: Float> BinaryConnect<F> {
    /// Deterministic BinaryConnect with the given scale.
    pub fn deterministic(scale: BinaryScale) -> Self {
        Self::new(Binarization::Deterministic, scale, 0)
    }

    /// Stochastic BinaryConnect with the given scale and sampling seed.
    pub fn stochastic(scale: BinaryScale, seed: u64) -> Self {
        Self::new(Binarization::Stochastic, scale, seed)
    }

    /// BinaryConnect with every setting given.
    pub fn new(mode: Binarization, scale: BinaryScale, seed: u64) -> Self {
        Self {
            mode,
            scale,
            seed,
            step: 0,
            deterministic_override: false,
            _f: PhantomData,
        }
    }

    /// The binarization mode.
    pub fn mode(&self) -> Binarization {
        self.mode
    }

    /// The scale.
    pub fn scale(&self) -> BinaryScale {
        self.scale
    }

    /// Uses `sign(w)` regardless of the mode (for evaluation of a stochastic model).
    pub fn set_deterministic(&mut self, yes: bool) {
        self.deterministic_override = yes;
    }

    /// The ±1 values of `w` (as `F`).
    pub fn signs(&self, w: &ArrayD<F>) -> ArrayD<F> {
        let stochastic = self.mode == Binarization::Stochastic && !self.deterministic_override;
        let mut out = w.clone();
        for (i, x) in out.iter_mut().enumerate() {
            let plus = if stochastic {
                let p = ((x.as_f64() + 1.0) * 0.5).clamp(0.0, 1.0);
                uniform(self.seed, self.step, i as u64) < p
            } else {
                *x >= F::zero()
            };
            *x = if plus { F::one() } else { -F::one() };
        }
        out
    }

    /// The per-channel scales of `w` (one value for the non-channel scales).
    pub fn alphas(&self, w: &ArrayD<F>) -> Vec<F> {
        match self.scale {
            BinaryScale::None => vec![F::one()],
            BinaryScale::Constant(c) => vec![F::lit(c)],
            BinaryScale::PerChannel => channel_mean_abs(w),
        }
    }
}

/// `mean |w|` per slice along axis 0 (the whole tensor for 0-d or empty input).
pub(crate) fn channel_mean_abs<F: Float>(w: &ArrayD<F>) -> Vec<F> {
    if w.ndim() == 0 || w.is_empty() {
        let n = w.len().max(1);
        return vec![w.iter().fold(F::zero(), |a, &x| a + x.abs()) / F::lit(n as f64)];
    }
    w.axis_iter(Axis(0))
        .map(|c| {
            let n = c.len().max(1);
            c.iter().fold(F::zero(), |a, &x| a + x.abs()) / F::lit(n as f64)
        })
        .collect()
}

fn channel_len(shape: &[usize], groups: usize) -> usize {
    let n: usize = shape.iter().product();
    (n / groups.max(1)).max(1)
}

impl<F: Float> Parametrization<F> for BinaryConnect<F> {
    fn name(&self) -> &'static str {
        "binary_connect"
    }

    fn validate(&self, shape: &[usize]) -> CoreResult<()> {
        if let BinaryScale::Constant(c) = self.scale
            && !(c.is_finite() && c > 0.0)
        {
            return Err(CoreError::config(
                "scale",
                format!("constant scale must be finite and > 0, got {c}"),
            ));
        }
        let _ = shape;
        Ok(())
    }

    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        let mut b = self.signs(input);
        let alphas = self.alphas(input);
        let cl = channel_len(input.shape(), alphas.len());
        for (i, x) in b.iter_mut().enumerate() {
            *x *= alphas[(i / cl).min(alphas.len() - 1)];
        }
        b
    }

    fn backward(&self, input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        let alphas = self.alphas(input);
        let cl = channel_len(input.shape(), alphas.len());
        let one = F::one();
        let mut g = grad_output;
        if self.scale == BinaryScale::PerChannel {
            // sum_j g_j b_j per channel, for the gradient through alpha = mean |w|.
            let b = self.signs(input);
            let mut gb = vec![F::zero(); alphas.len()];
            for (i, (&gi, &bi)) in g.iter().zip(b.iter()).enumerate() {
                gb[(i / cl).min(alphas.len() - 1)] += gi * bi;
            }
            let inv = F::one() / F::lit(cl as f64);
            for (i, (gi, &w)) in g.iter_mut().zip(input.iter()).enumerate() {
                let c = (i / cl).min(alphas.len() - 1);
                let ste = if w.abs() <= one {
                    *gi * alphas[c]
                } else {
                    F::zero()
                };
                let sgn = if w > F::zero() {
                    one
                } else if w < F::zero() {
                    -one
                } else {
                    F::zero()
                };
                *gi = ste + sgn * inv * gb[c];
            }
        } else {
            let a = alphas[0];
            for (gi, &w) in g.iter_mut().zip(input.iter()) {
                *gi = if w.abs() <= one { *gi * a } else { F::zero() };
            }
        }
        g
    }

    fn after_update(&mut self) {
        self.step = self.step.wrapping_add(1);
    }

    fn project(&self, stored: &mut ArrayD<F>) {
        let one = F::one();
        stored.mapv_inplace(|x| x.max(-one).min(one));
    }
}
