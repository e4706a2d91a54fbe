//! GELU activation, exact (erf) or with the tanh approximation.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn, Zip};

use super::super::no_forward;

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
#[derive(Debug, Clone, Default)]
pub struct Gelu<F: Float> {
    kind: GeluKind,
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

impl<F: Float> Module<F> for Gelu<F> {
    fn visit(&self, _: &mut ParamPath, _: &mut dyn ParamVisitor<F>) {}
    fn visit_mut(&mut self, _: &mut ParamPath, _: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        Ok(())
    }
}

impl<F: Float> Layer<F> for Gelu<F> {
    fn name(&self) -> &'static str {
        "Gelu"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let k = self.kind;
        let y = x.mapv(|v| k.apply(v));
        self.input = (mode == Mode::Train).then(|| x.to_owned());
        Ok(y)
    }

    /// In eval mode the output overwrites the input; in training mode the input becomes
    /// the cache without a copy.
    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let k = self.kind;
        if mode == Mode::Train {
            let y = x.mapv(|v| k.apply(v));
            self.input = Some(x);
            return Ok(y);
        }
        self.input = None;
        let mut x = x;
        x.mapv_inplace(|v| k.apply(v));
        Ok(x)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let x = self.input.as_ref().ok_or_else(|| no_forward("Gelu"))?;
        if x.shape() != grad.shape() {
            return Err(CoreError::shape("Gelu grad", x.shape(), grad.shape()));
        }
        let k = self.kind;
        let mut out = grad.to_owned();
        Zip::from(&mut out)
            .and(x)
            .for_each(|g, &v| *g *= k.derivative(v));
        Ok(out)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}
