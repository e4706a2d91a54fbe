//! The `Module` / `Layer` surface shared by the integer inference linear layers
//! ([`QLinear`](crate::QLinear), [`Int4Linear`](crate::Int4Linear),
//! [`DynamicQLinear`](crate::DynamicQLinear), [`IntNLinear`](crate::calibrated::IntNLinear)):
//! each provides its widths, its parameter counts and a row-wise `f32` kernel
//! ([`IntLinear`]); [`int_linear_layer!`] writes the rest once: no float parameters to visit,
//! `forward` on any input `[..., in]` (no copy for `f32`), `backward` refused (inference only)
//! and the exact cost.

use compress_core::{Cost, Result};

use crate::QuantError;
use crate::dynamic::rows_of;

/// What an integer inference linear layer provides to [`int_linear_layer!`].
pub(crate) trait IntLinear {
    /// Input features.
    fn in_width(&self) -> usize;
    /// Output features.
    fn out_width(&self) -> usize;
    /// Stored weight and bias entries.
    fn param_count(&self) -> usize;
    /// Non-zero weight and bias entries.
    fn nonzero_count(&self) -> usize {
        self.param_count()
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
    let (k, n) = (layer.in_width(), layer.out_width());
    let rows = rows_of(input_shape, what, k)?;
    let mut output_shape = input_shape.to_vec();
    *output_shape
        .last_mut()
        .expect("checked: at least one dimension") = n;
    Ok(Cost {
        output_shape,
        params: layer.param_count(),
        nonzero_params: layer.nonzero_count(),
        macs: (rows * k * n) as u64,
    })
}

/// Writes `Module<F>` (no float parameters) and `Layer<F>` for an [`IntLinear`] type named
/// `$name` in errors.
macro_rules! int_linear_layer {
    ($t:ty, $name:literal) => {
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
                let (k, n) = (self.in_width(), self.out_width());
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
