//! Fully connected layer.

mod dense;
mod packed;

use compress_core::CoreError;
use compress_core::{
    Cost, Float, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor, ParamVisitorMut,
    Result, TensorExt,
};
use ndarray::{Array2, ArrayD, ArrayRef, ArrayView2, Ix1, Ix2, IxDyn};
use rand::Rng;

use super::as_2d;
use crate::gemm;
use crate::init::kaiming_uniform;
use packed::Packed;

/// Up to this many rows, an eval-mode layer too large to pack computes dot products
/// straight from its weight instead of calling a GEMM.
const GEMV_ROWS: usize = 4;

/// `sum a[i] * b[i]` with 16 interleaved partial sums, so that it vectorizes.
fn dot<F: Float>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::zero(); 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let mut tail = F::zero();
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += x * y;
        }
    }
    acc.iter().fold(F::zero(), |s, &v| s + v) + tail
}

/// `y = x W^T + b`.
///
/// # Shapes
///
/// - input: `[batch, in_features]`
/// - output: `[batch, out_features]`
/// - `weight`: `[out_features, in_features]`, `bias`: `[out_features]`
///
/// # Eval-mode fast path
///
/// In [`Mode::Eval`] an `f32` layer of at most 2^20 `in x out` weights (`out` rounded up
/// to a multiple of 16) on a CPU with vector FMA (AVX2, AVX-512 or aarch64) keeps a
/// transposed copy of its effective weight and multiplies with a kernel that needs no
/// per-call packing: small batches (a few rows, as in early-exit inference or serving) no
/// longer pay for repacking the weight on every call (5x faster on one row of 128 x 128,
/// 1.1-1.4x on full batches such as a transformer's 128 x 384 x 1536). Layers with more
/// than 512 inputs take the general GEMM from 256 rows on, where its cache blocking wins.
/// Large products are split into row blocks across the rayon pool. The copy is rebuilt when [`Param::version`] says the weight,
/// bias or their parametrizations may have changed, so it is never stale. Each output is
/// one fused multiply-add chain over the inputs in order, so a sample's result does not
/// depend on the batch it is in. Larger layers (and other element types and CPUs) run the
/// general GEMM ([`crate::gemm`]), except on at most 4 rows, where one dot product per output reads the weight
/// once in place instead of copying it into a GEMM's packed layout (batch-1 serving of a
/// 4096 x 4096 layer: 2.56 ms instead of 13.7 ms).
#[derive(Debug, Clone)]
pub struct Linear<F: Float> {
    /// Weight `[out, in]`.
    pub weight: Param<F>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<F>>,
    input: Option<Array2<F>>,
    packed: Option<Packed>,
}

impl<F: Float> Linear<F> {
    /// A layer with PyTorch's default initialisation (uniform in `±1/sqrt(in)`).
    pub fn new<R: Rng + ?Sized>(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut R,
    ) -> Self {
        let w = kaiming_uniform(&[out_features, in_features], in_features, rng);
        let b = bias.then(|| kaiming_uniform(&[out_features], in_features, rng));
        Self::from_arrays(w, b)
    }

    /// A layer holding the given weight `[out, in]` and bias `[out]`.
    ///
    /// # Panics
    ///
    /// If `weight` is not 2-D or `bias` does not have `out` elements.
    #[track_caller]
    pub fn from_arrays(weight: ArrayD<F>, bias: Option<ArrayD<F>>) -> Self {
        assert_eq!(weight.ndim(), 2, "Linear weight must be [out, in]");
        if let Some(b) = &bias {
            assert_eq!(b.shape(), &weight.shape()[..1], "Linear bias must be [out]");
        }
        Self {
            weight: Param::new(weight),
            bias: bias.map(|b| Param::with_kind(b, ParamKind::Bias)),
            input: None,
            packed: None,
        }
    }

    /// Number of input features.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Number of output features.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The eval-mode product on at most [`GEMV_ROWS`] rows of a layer too large to pack: one
    /// dot product per output straight from the row-major weight, which is streamed once
    /// (a GEMM would first copy all of it into its packed layout, on every call).
    fn few_rows_forward(&self, x: &ArrayView2<'_, F>) -> Result<ArrayD<F>> {
        let w = self.weight.effective();
        let w = w.view().into_dimensionality::<Ix2>()?;
        let (w, x) = (w.as_standard_layout(), x.as_standard_layout());
        let (n, k) = (w.nrows(), w.ncols());
        let (Some(ws), Some(xs)) = (w.as_slice(), x.as_slice()) else {
            return Err(compress_core::CoreError::InvalidState {
                layer: "Linear".into(),
                reason: "standard-layout arrays are not contiguous".into(),
            });
        };
        let b = self.bias.as_ref().map(Param::effective);
        let mut y = Array2::zeros((x.nrows(), n));
        for (j, wr) in ws.chunks_exact(k).enumerate() {
            let bj = b.as_ref().map_or(F::zero(), |b| b[[j]]);
            for (i, xr) in xs.chunks_exact(k).enumerate() {
                y[[i, j]] = dot(xr, wr) + bj;
            }
        }
        Ok(y.into_dyn())
    }

    /// The eval-mode product through the packed weight, `None` when the layer does not
    /// qualify (see the type's docs). `x` is `[m, in]`.
    fn packed_forward(&mut self, x: &ArrayView2<'_, F>) -> Result<Option<ArrayD<F>>> {
        let (n, k) = (self.out_features(), self.in_features());
        let Some(path) = packed::eligible::<F>(x.nrows(), n, k) else {
            return Ok(None);
        };
        let current = self
            .packed
            .as_ref()
            .is_some_and(|p| p.is_current(&self.weight, self.bias.as_ref()));
        if !current {
            self.packed = None;
        }
        let packed = self
            .packed
            .get_or_insert_with(|| Packed::new(&self.weight, self.bias.as_ref(), path));
        let xs = x.as_standard_layout();
        let Some(y) = xs
            .as_slice()
            .and_then(F::as_f32_slice)
            .and_then(|xs| packed.forward::<F>(xs))
        else {
            return Ok(None);
        };
        Ok(Some(ArrayD::from_shape_vec(IxDyn(&[x.nrows(), n]), y)?))
    }
}

impl<F: Float> Module<F> for Linear<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
        path.scoped("bias", |p| self.bias.visit(p, v));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
        path.scoped("bias", |p| self.bias.visit_mut(p, v))?;
        Ok(())
    }
}

impl<F: Float> Layer<F> for Linear<F> {
    fn name(&self) -> &'static str {
        "Linear"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let x2 = as_2d(x, "Linear", self.in_features())?;
        if mode == Mode::Eval {
            self.input = None;
            if let Some(y) = self.packed_forward(&x2)? {
                return Ok(y);
            }
            if x2.nrows() <= GEMV_ROWS && self.in_features() > 0 {
                return self.few_rows_forward(&x2);
            }
        }
        let w = self.weight.effective();
        let w = w.view().into_dimensionality::<Ix2>()?;
        // The output starts as the bias (or zero) and the product is added to it: one pass
        // over `y`, not two.
        let (y, beta) = match &self.bias {
            Some(b) => {
                let b = b.effective();
                let b = b.view().into_dimensionality::<Ix1>()?;
                let n = self.out_features();
                if b.len() != n {
                    return Err(compress_core::CoreError::shape(
                        "Linear bias",
                        &[n],
                        b.shape(),
                    ));
                }
                let b = b.as_standard_layout();
                let mut y = Array2::zeros((x2.nrows(), n));
                if let (Some(ys), Some(bs)) = (y.as_slice_mut(), b.as_slice()) {
                    crate::kernels::fill_rows(ys, bs);
                } else {
                    y.assign(&b);
                }
                (y, F::one())
            }
            None => (Array2::zeros((x2.nrows(), self.out_features())), F::zero()),
        };
        let mut y = y;
        gemm::matmul_into(F::one(), &x2, &w.t(), beta, &mut y.view_mut());
        self.input = (mode == Mode::Train).then(|| x2.to_owned());
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let x = self
            .input
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Linear"))?;
        let g = as_2d(grad, "Linear grad", self.out_features())?;
        if g.nrows() != x.nrows() {
            return Err(compress_core::CoreError::shape(
                "Linear grad",
                &[x.nrows(), self.out_features()],
                g.shape(),
            ));
        }
        let w = self.weight.effective();
        let w = w.view().into_dimensionality::<Ix2>()?;
        let dx = gemm::matmul(&g, &w);
        self.weight
            .accumulate_grad(gemm::matmul(&g.t(), &x.view()).into_dyn())?;
        if let Some(b) = &mut self.bias {
            let g = g.as_standard_layout();
            let mut db = ndarray::Array1::<F>::zeros(g.ncols());
            if let (Some(acc), Some(gs)) = (db.as_slice_mut(), g.as_slice()) {
                crate::kernels::add_column_sums(acc, gs);
            } else {
                db = g.sum_axis(ndarray::Axis(0));
            }
            b.accumulate_grad(db.into_dyn())?;
        }
        Ok(dx.into_dyn())
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        if input_shape != [self.in_features()] {
            return Err(compress_core::CoreError::shape(
                "Linear input",
                &[self.in_features()],
                input_shape,
            ));
        }
        let bias_n = self.bias.as_ref().map_or(0, Param::len);
        let bias_nz = self
            .bias
            .as_ref()
            .map_or(0, |b| b.effective().count_nonzero());
        let w = self.weight.effective();
        Ok(Cost {
            output_shape: vec![self.out_features()],
            params: self.weight.len() + bias_n,
            nonzero_params: w.count_nonzero() + bias_nz,
            macs: self.weight.len() as u64,
        })
    }
}
