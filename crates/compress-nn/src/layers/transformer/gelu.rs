//! GELU activation, exact (erf) or with the tanh approximation.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use ndarray::{ArrayD, ArrayRef, IxDyn, Zip};

use super::vmath;

/// `x := gelu(x)`: the vectorised kernel for contiguous `f32`, [`GeluKind::apply`]
/// otherwise.
fn apply_in_place<F: Float>(kind: GeluKind, x: &mut ArrayD<F>) {
    if let Some(s) = x.as_slice_mut().and_then(F::as_f32_slice_mut) {
        vmath::gelu_slice(kind, s);
    } else {
        x.mapv_inplace(|v| kind.apply(v));
    }
}

/// Which GELU formula a [`Gelu`] layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeluKind {
    /// `x * Phi(x) = x / 2 * (1 + erf(x / sqrt 2))`, as BERT (`hidden_act: "gelu"`).
    #[default]
    Exact,
    /// `x / 2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))` (`"gelu_new"`,
    /// `"gelu_pytorch_tanh"`).
    Tanh,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`, the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const TANH_C: f64 = 0.044_715;

/// `erf` at the precision of `F`: `libm`'s `erff` for `f32` (error below 1 ulp) and `erf`
/// for `f64`.
#[inline]
pub fn erf<F: Float>(x: F) -> F {
    if F::IS_F32 {
        F::lit(f64::from(libm::erff(x.as_f64() as f32)))
    } else {
        F::lit(libm::erf(x.as_f64()))
    }
}

impl GeluKind {
    /// `gelu(x)`.
    #[inline]
    pub fn apply<F: Float>(self, x: F) -> F {
        let half = F::lit(0.5);
        match self {
            Self::Exact => half * x * (F::one() + erf(x * F::lit(INV_SQRT_2))),
            Self::Tanh => {
                let u = F::lit(SQRT_2_OVER_PI) * (x + F::lit(TANH_C) * x * x * x);
                half * x * (F::one() + u.tanh())
            }
        }
    }

    /// `d gelu / dx` at `x`.
    #[inline]
    pub fn derivative<F: Float>(self, x: F) -> F {
        let half = F::lit(0.5);
        match self {
            Self::Exact => {
                let cdf = half * (F::one() + erf(x * F::lit(INV_SQRT_2)));
                let pdf = F::lit(INV_SQRT_2PI) * (-half * x * x).exp();
                cdf + x * pdf
            }
            Self::Tanh => {
                let k = F::lit(SQRT_2_OVER_PI);
                let c = F::lit(TANH_C);
                let t = (k * (x + c * x * x * x)).tanh();
                let du = k * (F::one() + F::lit(3.0) * c * x * x);
                half * (F::one() + t) + half * x * (F::one() - t * t) * du
            }
        }
    }
}

/// The GELU activation (element-wise, any shape).
///
/// On contiguous `f32` arrays forward and backward run vectorised kernels (an `erf`
/// within `1.5e-7` absolute, an `exp` within 2 ulp; see the `vmath` module); other element
/// types and layouts use [`GeluKind::apply`] / [`GeluKind::derivative`] with `libm`.
#[derive(Debug, Clone, Default, Module)]
pub struct Gelu<F: Float> {
    #[module(skip)]
    kind: GeluKind,
    #[module(skip)]
    input: Option<ArrayD<F>>,
}

impl<F: Float> Gelu<F> {
    /// A GELU of the given kind.
    pub fn new(kind: GeluKind) -> Self {
        Self { kind, input: None }
    }

    /// The formula in use.
    pub fn kind(&self) -> GeluKind {
        self.kind
    }
}

impl<F: Float> Layer<F> for Gelu<F> {
    fn name(&self) -> &'static str {
        "Gelu"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        self.forward_owned(x.as_standard_layout().into_owned(), mode)
    }

    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let mut y = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        self.input = (mode == Mode::Train).then(|| y.clone());
        apply_in_place(self.kind, &mut y);
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let x = self
            .input
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Gelu"))?;
        if x.shape() != grad.shape() {
            return Err(CoreError::shape("Gelu grad", x.shape(), grad.shape()));
        }
        let k = self.kind;
        let mut out = grad.as_standard_layout().into_owned();
        if let (Some(g), Some(xs)) = (
            out.as_slice_mut().and_then(F::as_f32_slice_mut),
            x.as_slice().and_then(F::as_f32_slice),
        ) {
            vmath::gelu_backward_slice(k, g, xs);
            return Ok(out);
        }
        Zip::from(&mut out)
            .and(x)
            .for_each(|g, &v| *g *= k.derivative(v));
        Ok(out)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}
