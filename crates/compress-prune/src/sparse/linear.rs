//! A fully connected layer whose weight is stored in CSR form.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor,
    ParamVisitorMut, Result as CoreResult, TensorExt,
};
use compress_nn::Linear;
use compress_nn::layers::as_2d;
use ndarray::{Array2, ArrayD, ArrayRef, Axis, Ix1, Ix2, IxDyn};

use super::csr::{ColIndices, Csr, IndexWidth};
use crate::Result;

/// `y = x W^T + b` with `W` `[out, in]` in CSR: memory and MACs proportional to the
/// non-zeros. The non-zero values are a [`Param`] of shape `[nnz]` (read through
/// `effective()`, so they can still be fine-tuned or quantized); the sparsity pattern is
/// fixed.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::Linear;
/// use compress_prune::{IndexWidth, SparseLinear, magnitude_prune_inplace};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut dense = Linear::<f32>::new(16, 8, true, &mut StdRng::seed_from_u64(0));
/// magnitude_prune_inplace(dense.weight.value_mut().as_slice_mut().unwrap(), 0.75).unwrap();
/// let mut sparse = SparseLinear::from_linear(&dense, IndexWidth::Auto).unwrap();
/// assert_eq!(sparse.nnz(), 32);
/// let x = ArrayD::from_elem(vec![3, 16], 0.5f32);
/// let (a, b) = (dense.forward(&x, Mode::Eval).unwrap(), sparse.forward(&x, Mode::Eval).unwrap());
/// assert!(a.iter().zip(b.iter()).all(|(p, q)| (p - q).abs() < 1e-5));
/// assert_eq!(sparse.cost(&[16]).unwrap().macs, 32);
/// ```
#[derive(Debug, Clone)]
pub struct SparseLinear<F: Float> {
    out_features: usize,
    in_features: usize,
    row_ptr: Vec<u32>,
    col_idx: ColIndices,
    /// The non-zero values `[nnz]`, row by row.
    pub values: Param<F>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<F>>,
    input: Option<Array2<F>>,
}

impl<F: Float> SparseLinear<F> {
    /// A layer from a CSR weight `[out, in]` and an optional bias `[out]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when the bias does not have `out` entries.
    pub fn new(weight: Csr<F>, bias: Option<ArrayD<F>>) -> Result<Self> {
        let (out_features, in_features) = weight.dim();
        if let Some(b) = &bias
            && b.shape() != [out_features]
        {
            return Err(CoreError::shape("SparseLinear bias", &[out_features], b.shape()).into());
        }
        let (_, _, row_ptr, col_idx, values) = weight.into_parts();
        let nnz = values.len();
        let values = ArrayD::from_shape_vec(IxDyn(&[nnz]), values).map_err(CoreError::from)?;
        Ok(Self {
            out_features,
            in_features,
            row_ptr,
            col_idx,
            values: Param::new(values),
            bias: bias.map(|b| Param::with_kind(b, ParamKind::Bias)),
            input: None,
        })
    }

    /// Converts a dense [`Linear`] (its effective weight, so masks apply) to CSR.
    ///
    /// # Errors
    ///
    /// As [`Csr::from_dense`].
    pub fn from_linear(layer: &Linear<F>, width: IndexWidth) -> Result<Self> {
        let w2 = layer.weight.effective2()?;
        let csr = Csr::from_dense(&w2, width)?;
        Self::new(csr, layer.bias.as_ref().map(|b| b.effective().into_owned()))
    }

    /// The weight as a [`Csr`] matrix (with the effective values).
    pub fn to_csr(&self) -> Csr<F> {
        let values = self.values.effective().iter().copied().collect();
        Csr::from_parts(
            self.out_features,
            self.in_features,
            self.row_ptr.clone(),
            self.col_idx.clone(),
            values,
        )
        .unwrap_or_else(|_| unreachable!("the layer's CSR parts were validated on construction"))
    }

    /// Stored non-zeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Exact bytes of the weight (CSR arrays) plus the bias at `size_of::<F>()` each.
    pub fn storage_bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        self.nnz() * (f + self.col_idx.bytes_per_index())
            + self.row_ptr.len() * 4
            + self.bias.as_ref().map_or(0, |b| b.len() * f)
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

values_bias_module!(SparseLinear);

impl<F: Float> Layer<F> for SparseLinear<F> {
    fn name(&self) -> &'static str {
        "SparseLinear"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> CoreResult<ArrayD<F>> {
        let x2 = as_2d(x, "SparseLinear", self.in_features)?;
        let vals = self.values.effective();
        let vals = vals
            .as_slice()
            .unwrap_or_else(|| unreachable!("1-D owned values"));
        // W [out, in] x X^T [in, N] -> [out, N]; the kernel streams contiguous rows of X^T.
        let xt = x2.t().as_standard_layout().into_owned();
        let n = x2.nrows();
        let mut yt = Array2::<F>::zeros((self.out_features, n));
        let (xs, ys) = (
            xt.as_slice()
                .unwrap_or_else(|| unreachable!("standard layout")),
            yt.as_slice_mut()
                .unwrap_or_else(|| unreachable!("fresh array")),
        );
        match &self.col_idx {
            ColIndices::U16(c) => crate::kernels::spmm(&self.row_ptr, c, vals, xs, n, ys),
            ColIndices::U32(c) => crate::kernels::spmm(&self.row_ptr, c, vals, xs, n, ys),
        }
        let mut y = yt.t().as_standard_layout().into_owned();
        if let Some(b) = &self.bias {
            let b = b.effective();
            y += &b.view().into_dimensionality::<Ix1>()?;
        }
        self.input = (mode == Mode::Train).then(|| x2.to_owned());
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> CoreResult<ArrayD<F>> {
        let x = self
            .input
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("SparseLinear"))?;
        let g = grad.view().into_dimensionality::<Ix2>()?;
        if g.dim() != (x.nrows(), self.out_features) {
            return Err(CoreError::shape(
                "SparseLinear grad",
                &[x.nrows(), self.out_features],
                g.shape(),
            ));
        }
        let vals = self.values.effective().into_owned();
        let mut dx = Array2::<F>::zeros(x.dim());
        let mut dv = vec![F::zero(); self.nnz()];
        for r in 0..self.out_features {
            let gcol = g.column(r);
            for p in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                let c = self.col_idx.get(p);
                let v = vals[p];
                let mut acc = F::zero();
                for ((&gi, &xi), dxi) in gcol.iter().zip(x.column(c)).zip(dx.column_mut(c)) {
                    acc += gi * xi;
                    *dxi += gi * v;
                }
                dv[p] = acc;
            }
        }
        let nnz = dv.len();
        self.values
            .accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[nnz]), dv)?)?;
        if let Some(b) = &mut self.bias {
            b.accumulate_grad(g.sum_axis(Axis(0)).into_dyn())?;
        }
        Ok(dx.into_dyn())
    }

    fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
        if input_shape != [self.in_features] {
            return Err(CoreError::shape(
                "SparseLinear input",
                &[self.in_features],
                input_shape,
            ));
        }
        let (bn, bnz) = self
            .bias
            .as_ref()
            .map_or((0, 0), |b| (b.len(), b.effective().count_nonzero()));
        Ok(Cost {
            output_shape: vec![self.out_features],
            params: self.nnz() + bn,
            nonzero_params: self.values.effective().count_nonzero() + bnz,
            macs: self.nnz() as u64,
        })
    }
}

/// Replaces every [`Linear`] below `model` (any model that lists its children, see
/// [`compress_core::surgery`]) whose effective weight has at least `min_sparsity` zeros by a
/// [`SparseLinear`], and returns their paths (`"0"`, `"2"` in a `Sequential`;
/// `"block.fc1"` in a user's struct). A `Linear` stored as a concrete field (a
/// [`LayerSlot::Fixed`](compress_core::LayerSlot::Fixed)) cannot change type and stays
/// dense. Every replacement is built before the first one is made, so on error the model
/// is unchanged.
///
/// # Errors
///
/// As [`Csr::from_dense`], with the layer's path.
pub fn sparsify_linears<F: Float>(
    model: &mut dyn Layer<F>,
    min_sparsity: f64,
    width: IndexWidth,
) -> Result<Vec<String>> {
    super::replace_linears(model, |path, lin| {
        (lin.weight.effective().sparsity() >= min_sparsity).then(|| {
            SparseLinear::from_linear(lin, width)
                .map_err(|e| CoreError::technique(path.to_string(), e).into())
        })
    })
}
