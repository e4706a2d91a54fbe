//! The `Module` / `Layer` surface shared by the integer inference linear layers
//! ([`QLinear`](crate::QLinear), [`Int4Linear`](crate::Int4Linear),
//! [`DynamicQLinear`](crate::DynamicQLinear), [`IntNLinear`](crate::calibrated::IntNLinear)):
//! each provides its shape and a row-wise `f32` kernel ([`IntLinear`]);
//! [`int_linear_layer!`] writes the rest once: no float parameters to visit, `forward` on any
//! input `[..., in]` (no copy for `f32`), `backward` refused (inference only) and the exact
//! cost, and for the layers that keep a [`QTensor`] weight its accessors.

use compress_core::{CoreError, Cost, Result};

use crate::dynamic::rows_of;
use crate::{QTensor, QuantError};

/// The widths of a linear layer `[out, in]` and whether it has a bias.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinearShape {
    /// Input features.
    pub(crate) in_width: usize,
    /// Output features.
    pub(crate) out_width: usize,
    /// Whether a bias (`out_width` values) is stored.
    pub(crate) bias: bool,
}

impl LinearShape {
    /// The shape of a 2-D weight `[out, in]` with an optional bias.
    pub(crate) fn of(weight: &QTensor, bias: Option<&Vec<f32>>) -> Self {
        Self {
            in_width: weight.shape()[1],
            out_width: weight.shape()[0],
            bias: bias.is_some(),
        }
    }

    /// Stored weight and bias entries.
    pub(crate) fn params(self) -> usize {
        self.in_width * self.out_width + if self.bias { self.out_width } else { 0 }
    }

    /// Checks that `x` and `out` hold `m` rows of the input and output widths (`layer` names
    /// them in errors: `"{layer} input"`, `"{layer} output"`).
    pub(crate) fn check_rows(
        self,
        layer: &str,
        m: usize,
        x: &[f32],
        out: &[f32],
    ) -> std::result::Result<(), QuantError> {
        let (k, n) = (self.in_width, self.out_width);
        if x.len() != m * k {
            return Err(CoreError::shape(format!("{layer} input"), &[m, k], &[x.len()]).into());
        }
        if out.len() != m * n {
            return Err(CoreError::shape(format!("{layer} output"), &[m, n], &[out.len()]).into());
        }
        Ok(())
    }
}

/// The error for a weight a layer cannot be built from: `layer` needs a `needs` weight.
pub(crate) fn wrong_weight(layer: &str, needs: &str, weight: &QTensor) -> QuantError {
    CoreError::config(
        "weight",
        format!(
            "{layer} needs a {needs} weight, got {} {:?}",
            weight.scheme().label(),
            weight.shape()
        ),
    )
    .into()
}

/// Checks that an optional bias has `n` values.
pub(crate) fn check_bias_len(
    bias: Option<&Vec<f32>>,
    n: usize,
) -> std::result::Result<(), QuantError> {
    match bias {
        Some(b) if b.len() != n => Err(CoreError::shape("bias", &[n], &[b.len()]).into()),
        _ => Ok(()),
    }
}

/// What an integer inference linear layer provides to [`int_linear_layer!`].
pub(crate) trait IntLinear {
    /// The widths and whether a bias is stored.
    fn shape(&self) -> LinearShape;
    /// Non-zero weight and bias entries.
    fn nonzero_count(&self) -> usize {
        self.shape().params()
    }
    /// `y = x W^T + b` for a row-major `[m, in]` input into a row-major `[m, out]` output.
    fn forward_rows(
        &mut self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
    ) -> std::result::Result<(), QuantError>;
}

/// The exact cost of `layer` on a per-sample input `[..., in]` (`what` names the input in
/// errors).
pub(crate) fn cost<L: IntLinear>(layer: &L, input_shape: &[usize], what: &str) -> Result<Cost> {
    let shape = layer.shape();
    let (k, n) = (shape.in_width, shape.out_width);
    let rows = rows_of(input_shape, what, k)?;
    let mut output_shape = input_shape.to_vec();
    *output_shape
        .last_mut()
        .expect("checked: at least one dimension") = n;
    Ok(Cost {
        output_shape,
        params: shape.params(),
        nonzero_params: layer.nonzero_count(),
        macs: (rows * k * n) as u64,
    })
}

/// Writes `Module<F>` (no float parameters) and `Layer<F>` for an [`IntLinear`] type named
/// `$name` in errors; with `qtensor`, also the accessors of a layer whose fields are
/// `weight: QTensor` and `bias: Option<Vec<f32>>`.
macro_rules! int_linear_layer {
    ($t:ty, $name:literal, qtensor) => {
        impl $t {
            /// The quantized weight.
            pub fn weight(&self) -> &$crate::QTensor {
                &self.weight
            }

            /// The bias.
            pub fn bias(&self) -> Option<&[f32]> {
                self.bias.as_deref()
            }

            /// Bytes of packed codes, scales, zero points and bias.
            pub fn size_bytes(&self) -> usize {
                self.weight.size_bytes() + 4 * self.bias.as_ref().map_or(0, Vec::len)
            }
        }

        $crate::int_linear::int_linear_layer!($t, $name);
    };
    ($t:ty, $name:literal) => {
        $crate::int_linear::no_params!($t);

        impl<F: compress_core::Float> compress_core::Layer<F> for $t {
            fn name(&self) -> &'static str {
                $name
            }

            fn forward(
                &mut self,
                x: &ndarray::ArrayRef<F, ndarray::IxDyn>,
                _mode: compress_core::Mode,
            ) -> compress_core::Result<ndarray::ArrayD<F>> {
                use $crate::int_linear::IntLinear;
                let shape = self.shape();
                let (k, n) = (shape.in_width, shape.out_width);
                $crate::dynamic::forward_rows(x, concat!($name, " input"), k, n, |xf, m, yf| {
                    self.forward_rows(xf, m, yf)
                })
            }

            fn backward(
                &mut self,
                _grad: &ndarray::ArrayRef<F, ndarray::IxDyn>,
            ) -> compress_core::Result<ndarray::ArrayD<F>> {
                Err($crate::qlinear::forward_only($name))
            }

            fn cost(&self, input_shape: &[usize]) -> compress_core::Result<compress_core::Cost> {
                $crate::int_linear::cost(self, input_shape, concat!($name, " input"))
            }
        }
    };
}

pub(crate) use int_linear_layer;

/// Writes `Module<F>` for every `F` for a layer without float parameters (both walks visit
/// nothing).
macro_rules! no_params {
    ($t:ty) => {
        impl<F: compress_core::Float> compress_core::Module<F> for $t {
            fn visit(
                &self,
                _: &mut compress_core::ParamPath,
                _: &mut dyn compress_core::ParamVisitor<F>,
            ) {
            }
            fn visit_mut(
                &mut self,
                _: &mut compress_core::ParamPath,
                _: &mut dyn compress_core::ParamVisitorMut<F>,
            ) -> compress_core::Result<()> {
                Ok(())
            }
        }
    };
}
pub(crate) use no_params;
