//! [`IntNLinear`]: a weight-only linear layer for any code width (2..=8 bits, e.g. int3
//! from GPTQ), where [`Int4Linear`](crate::Int4Linear) covers 4 bits with its fused kernel.

use crate::int_linear::{IntLinear, int_linear_layer};
use compress_core::{
    CoreError, Cost, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, ArrayView2, ArrayViewMut2, IxDyn};

use crate::{QTensor, QuantError, QuantScheme};

/// Weight-only integer linear layer: the packed codes (any scheme and width of
/// [`QTensor`], usually affine per group) stay packed in memory; each forward call
/// dequantizes the weight once into a scratch buffer and multiplies with compress-nn's float
/// GEMM. Inference only.
///
/// # Shapes
///
/// - input: `[batch, in_features]`; output: `[batch, out_features]`.
#[derive(Debug, Clone)]
pub struct IntNLinear {
    weight: QTensor,
    bias: Option<Vec<f32>>,
}

impl IntNLinear {
    /// Builds from a 2-D integer tensor `[out, in]` and an optional bias `[out]`.
    ///
    /// # Errors
    ///
    /// An invalid-config error for a float cast or a tensor that is not 2-D; a bias of the
    /// wrong length.
    pub fn from_qtensor(weight: QTensor, bias: Option<Vec<f32>>) -> Result<Self, QuantError> {
        if !matches!(weight.scheme(), QuantScheme::Int(_)) || weight.shape().len() != 2 {
            return Err(CoreError::config(
                "weight",
                format!(
                    "IntNLinear needs a 2-D integer weight, got {} {:?}",
                    weight.scheme().label(),
                    weight.shape()
                ),
            )
            .into());
        }
        if let Some(b) = &bias
            && b.len() != weight.shape()[0]
        {
            return Err(CoreError::shape("bias", &[weight.shape()[0]], &[b.len()]).into());
        }
        Ok(Self { weight, bias })
    }

    /// The quantized weight.
    pub fn weight(&self) -> &QTensor {
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

impl IntLinear for IntNLinear {
    fn in_width(&self) -> usize {
        self.weight.shape()[1]
    }
    fn out_width(&self) -> usize {
        self.weight.shape()[0]
    }
    fn param_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)
    }
    /// Dequantizes the weight once into a scratch buffer and multiplies with compress-nn's
    /// float GEMM.
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let (n, k) = (self.out_width(), self.in_width());
        let mut w = vec![0.0f32; n * k];
        self.weight.dequantize_into(&mut w);
        let xv = ArrayView2::from_shape((m, k), x).map_err(CoreError::from)?;
        let wv = ArrayView2::from_shape((n, k), &w).map_err(CoreError::from)?;
        let mut yv = ArrayViewMut2::from_shape((m, n), out).map_err(CoreError::from)?;
        compress_nn::gemm::matmul_into(1.0, &xv, &wv.t(), 0.0, &mut yv);
        if let Some(b) = &self.bias {
            for mut row in yv.rows_mut() {
                for (o, bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
        Ok(())
    }
}

int_linear_layer!(IntNLinear, "IntNLinear");

/// Multiplies its input by a per-feature factor (`1 / s` of AWQ / SmoothQuant) and runs the
/// wrapped layer: the explicit form of an activation scale that cannot be folded into the
/// layer that produced the activation. Parameter paths are the wrapped layer's.
#[derive(Debug)]
pub struct InputScaled {
    factor: Vec<f32>,
    inner: Box<dyn Layer<f32>>,
}

impl InputScaled {
    /// Wraps `inner` with the per-feature `factor`.
    pub fn new(factor: Vec<f32>, inner: Box<dyn Layer<f32>>) -> Self {
        Self { factor, inner }
    }

    /// The per-feature input factor.
    pub fn factor(&self) -> &[f32] {
        &self.factor
    }

    /// The wrapped layer.
    pub fn inner(&self) -> &dyn Layer<f32> {
        self.inner.as_ref()
    }

    /// The wrapped layer, replaceable.
    pub fn inner_mut(&mut self) -> &mut Box<dyn Layer<f32>> {
        &mut self.inner
    }
}

impl Module<f32> for InputScaled {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
        self.inner.visit(path, v);
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
        self.inner.visit_mut(path, v)
    }
}

impl Layer<f32> for InputScaled {
    fn name(&self) -> &'static str {
        "InputScaled"
    }

    fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, mode: Mode) -> Result<ArrayD<f32>> {
        let k = self.factor.len();
        if x.shape().last() != Some(&k) {
            return Err(CoreError::shape("InputScaled input", &[k], x.shape()));
        }
        let mut y = x.to_owned();
        if let Some(flat) = y.as_slice_mut() {
            for row in flat.chunks_exact_mut(k) {
                for (v, f) in row.iter_mut().zip(&self.factor) {
                    *v *= f;
                }
            }
        }
        self.inner.forward_owned(y, mode)
    }

    fn backward(&mut self, _grad: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        Err(CoreError::InvalidState {
            layer: "InputScaled".into(),
            reason: "is inference only (no backward)".into(),
        })
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.inner.cost(input_shape)
    }
}
