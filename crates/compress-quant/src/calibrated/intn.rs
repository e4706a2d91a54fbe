//! [`IntNLinear`]: a weight-only linear layer for any code width (2..=8 bits, e.g. int3
//! from GPTQ), where [`Int4Linear`](crate::Int4Linear) covers 4 bits with its fused kernel.

use crate::int_linear::{IntLinear, LinearShape, check_bias_len, int_linear_layer, wrong_weight};
use compress_core::{
    CoreError, Cost, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, ArrayView2, ArrayViewMut2, IxDyn};

use crate::{QTensor, QuantError, QuantScheme};

/// Weight-only integer linear layer: the packed codes (any scheme and width of
/// [`QTensor`], usually affine per group) stay packed in memory; each forward call
/// dequantizes the weight 256 output rows at a time into a scratch tile kept
/// across calls and multiplies each tile with compress-nn's float GEMM. Inference only.
///
/// # Shapes
///
/// - input: `[batch, in_features]`; output: `[batch, out_features]`.
#[derive(Debug, Clone)]
pub struct IntNLinear {
    weight: QTensor,
    bias: Option<Vec<f32>>,
    /// Dequantized rows of one tile (`TILE_ROWS * in` at most).
    tile: Vec<f32>,
    /// Unpacked codes of one tile.
    codes: Vec<u8>,
}

/// Output rows of the weight dequantized per tile (a multiple of 8, so that every tile
/// starts on a byte of the packed codes at any width).
const TILE_ROWS: usize = 256;

impl IntNLinear {
    /// Builds from a 2-D integer tensor `[out, in]` and an optional bias `[out]`.
    ///
    /// # Errors
    ///
    /// An invalid-config error for a float cast or a tensor that is not 2-D; a bias of the
    /// wrong length.
    pub fn from_qtensor(weight: QTensor, bias: Option<Vec<f32>>) -> Result<Self, QuantError> {
        if !matches!(weight.scheme(), QuantScheme::Int(_)) || weight.shape().len() != 2 {
            return Err(wrong_weight("IntNLinear", "2-D integer", &weight));
        }
        check_bias_len(bias.as_ref(), weight.shape()[0])?;
        Ok(Self {
            weight,
            bias,
            tile: Vec::new(),
            codes: Vec::new(),
        })
    }
}

impl IntLinear for IntNLinear {
    fn shape(&self) -> LinearShape {
        LinearShape::of(&self.weight, self.bias.as_ref())
    }
    /// Dequantizes the weight tile by tile (`TILE_ROWS` output rows) into the layer's
    /// scratch tile and multiplies each with compress-nn's float GEMM.
    fn forward_rows(&mut self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let shape = self.shape();
        let (n, k) = (shape.out_width, shape.in_width);
        let xv = ArrayView2::from_shape((m, k), x).map_err(CoreError::from)?;
        let mut yv = ArrayViewMut2::from_shape((m, n), out).map_err(CoreError::from)?;
        let rows = TILE_ROWS.min(n);
        if self.tile.len() < rows * k {
            self.tile.resize(rows * k, 0.0);
        }
        for j0 in (0..n).step_by(TILE_ROWS) {
            let nc = TILE_ROWS.min(n - j0);
            let w = &mut self.tile[..nc * k];
            self.weight
                .dequantize_range_into(j0 * k, w, &mut self.codes);
            let wv = ArrayView2::from_shape((nc, k), &*w).map_err(CoreError::from)?;
            let mut ys = yv.slice_mut(ndarray::s![.., j0..j0 + nc]);
            compress_nn::gemm::matmul_into(1.0, &xv, &wv.t(), 0.0, &mut ys);
        }
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

int_linear_layer!(IntNLinear, "IntNLinear", qtensor);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Granularity, IntScheme};
    use proptest::prelude::*;

    fn scheme(bits: u32, affine: bool, gran: u8) -> IntScheme {
        let s = IntScheme::new(bits);
        let s = match gran {
            0 => s.per_group(8),
            1 => IntScheme {
                granularity: Granularity::PerChannel { axis: 0 },
                ..s
            },
            _ => s,
        };
        if affine { s.affine() } else { s }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any width and granularity, more output rows than one tile, ragged shapes: the
        /// tiled forward is `x W_hat^T + b` with the whole dequantized weight, and every
        /// dequantized range is the same slice of the whole.
        #[test]
        fn tiled_forward_equals_the_dequantized_weight(
            (m, k, n, bits, affine, gran, seed) in
                (1usize..6, 1usize..5, prop::sample::select(vec![3usize, 255, 300, 520]),
                 2u32..=8, any::<bool>(), 0u8..3, 0u64..100)
                .prop_map(|(m, k8, n, b, a, g, s)| (m, 8 * k8, n, b, a, g, s))
        ) {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i as f32 + seed as f32) * 0.618).sin())
                .collect();
            let q = QTensor::quantize_slice(&w, &[n, k], scheme(bits, affine, gran)).unwrap();
            let mut whole = vec![0.0f32; n * k];
            q.dequantize_into(&mut whole);
            let mut codes = Vec::new();
            // The whole tensor, row 8 (a byte boundary at any width) and a middle row.
            for (start, len) in [(0, n * k), (8 * k, k), (k * (n / 2), k)] {
                if start + len <= n * k {
                    let mut part = vec![0.0f32; len];
                    q.dequantize_range_into(start, &mut part, &mut codes);
                    prop_assert_eq!(&part[..], &whole[start..start + len]);
                }
            }
            let b: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
            let mut layer = IntNLinear::from_qtensor(q, Some(b.clone())).unwrap();
            let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).cos()).collect();
            let mut y = vec![0.0f32; m * n];
            layer.forward_rows(&x, m, &mut y).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| f64::from(x[i * k + t]) * f64::from(whole[j * k + t]))
                        .sum::<f64>()
                        + f64::from(b[j]);
                    let got = f64::from(y[i * n + j]);
                    prop_assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{got} vs {want}");
                }
            }
        }
    }
}
