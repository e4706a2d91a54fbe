//! Element-wise activations.

use compress_core::CoreError;
use compress_core::derive::Module;
use compress_core::{Cost, Float, Layer, Mode, Result, concrete};
use ndarray::{ArrayD, ArrayRef, IxDyn, Zip};

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $label:literal, |$x:ident| $f:expr, |$xi:ident| $df:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Module)]
        pub struct $name<F: Float> {
            #[module(skip)]
            input: Option<ArrayD<F>>,
        }

        impl<F: Float> $name<F> {
            /// A new activation.
            pub fn new() -> Self {
                Self { input: None }
            }

            /// Applies the function in place (through the `f32`/`f64` kernel compiled in
            /// this crate when the array is contiguous).
            fn apply(x: &mut ArrayD<F>) {
                if let Some(s) = x.as_slice_mut() {
                    concrete! {
                        fn forward_kernel(x: mut; ;) {
                            for v in x.iter_mut() {
                                let $x = *v;
                                *v = $f;
                            }
                        }
                    }
                    forward_kernel(s);
                    return;
                }
                x.mapv_inplace(|$x: F| $f);
            }
        }

        impl<F: Float> Layer<F> for $name<F> {
            fn name(&self) -> &'static str {
                $label
            }

            fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
                let mut y = x.to_owned();
                Self::apply(&mut y);
                self.input = (mode == Mode::Train).then(|| x.to_owned());
                Ok(y)
            }

            /// In eval mode the output overwrites the input; in training mode the input
            /// becomes the cache without a copy.
            fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
                if mode == Mode::Train {
                    let mut y = x.clone();
                    Self::apply(&mut y);
                    self.input = Some(x);
                    return Ok(y);
                }
                self.input = None;
                let mut x = x;
                Self::apply(&mut x);
                Ok(x)
            }

            fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
                let x = self.input.as_ref().ok_or_else(|| CoreError::no_forward($label))?;
                if x.shape() != grad.shape() {
                    return Err(compress_core::CoreError::shape(
                        concat!($label, " grad"),
                        x.shape(),
                        grad.shape(),
                    ));
                }
                let mut out = grad.to_owned();
                if let (Some(g), Some(xs)) = (out.as_slice_mut(), x.as_slice()) {
                    concrete! {
                        fn backward_kernel(g: mut; x: slice;) {
                            for (g, &$xi) in g.iter_mut().zip(x) {
                                *g *= $df;
                            }
                        }
                    }
                    backward_kernel(g, xs);
                    return Ok(out);
                }
                Zip::from(&mut out).and(x).for_each(|g, &$xi| *g *= $df);
                Ok(out)
            }

            fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
                Ok(Cost::passthrough(input_shape))
            }
        }
    };
}

activation!(
    /// `max(0, x)`; NaN stays NaN (as in PyTorch), so a diverged input is not hidden.
    ReLU, "ReLU",
    |x| if x > F::zero() || x.is_nan() { x } else { F::zero() },
    |x| if x > F::zero() { F::one() } else { F::zero() }
);

activation!(
    /// `min(max(0, x), 6)` (MobileNet); NaN stays NaN.
    ReLU6, "ReLU6",
    |x| if x.is_nan() { x } else { x.max(F::zero()).min(F::lit(6.0)) },
    |x| if x > F::zero() && x < F::lit(6.0) { F::one() } else { F::zero() }
);

activation!(
    /// Hyperbolic tangent.
    Tanh, "Tanh",
    |x| x.tanh(),
    |x| { let t = x.tanh(); F::one() - t * t }
);

activation!(
    /// Logistic sigmoid `1 / (1 + e^-x)`.
    Sigmoid, "Sigmoid",
    |x| sigmoid(x),
    |x| { let s = sigmoid(x); s * (F::one() - s) }
);

activation!(
    /// `x * relu6(x + 3) / 6` (MobileNetV3); NaN stays NaN.
    HardSwish, "HardSwish",
    |x| x * (x + F::lit(3.0)).max(F::zero()).min(F::lit(6.0)) / F::lit(6.0),
    |x| if x <= F::lit(-3.0) {
        F::zero()
    } else if x >= F::lit(3.0) {
        F::one()
    } else {
        (F::lit(2.0) * x + F::lit(3.0)) / F::lit(6.0)
    }
);

/// Numerically stable logistic function.
fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}
