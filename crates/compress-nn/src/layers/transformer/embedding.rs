//! Token embedding: ids -> rows of a table.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamPath, ParamVisitor, ParamVisitorMut,
    Result,
};
use ndarray::{Array2, ArrayD, ArrayRef, IxDyn};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// A lookup table `weight [num_embeddings, dim]`: id `i` becomes row `i`.
///
/// Use [`Embedding::lookup`] / [`Embedding::forward_ids`] with integer ids. As a
/// [`Layer`] the input holds the ids as floats (any shape, each an exact non-negative
/// integer) and the output has one more axis of size `dim`; the input gradient is zero
/// (ids are not differentiable), the weight gradient is the scatter-add of the output
/// gradient rows.
#[derive(Debug, Clone)]
pub struct Embedding<F: Float> {
    /// The table `[num_embeddings, dim]` (parameter path `weight`).
    pub weight: Param<F>,
    ids: Option<Vec<usize>>,
}

impl<F: Float> Embedding<F> {
    /// A table with entries drawn from `N(0, std^2)` (PyTorch uses `std = 1`, BERT `0.02`).
    ///
    /// # Panics
    ///
    /// If `std` is negative or not finite.
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(num: usize, dim: usize, std: f64, rng: &mut R) -> Self {
        let normal = Normal::new(0.0, std).expect("Embedding std must be finite and >= 0");
        let w = ArrayD::from_shape_simple_fn(IxDyn(&[num, dim]), || F::lit(normal.sample(rng)));
        Self::from_array(w)
    }

    /// A layer holding the given table `[num_embeddings, dim]`.
    ///
    /// # Panics
    ///
    /// If `weight` is not 2-D.
    #[track_caller]
    pub fn from_array(weight: ArrayD<F>) -> Self {
        assert_eq!(weight.ndim(), 2, "Embedding weight must be [num, dim]");
        Self {
            weight: Param::new(weight),
            ids: None,
        }
    }

    /// Number of rows (vocabulary size).
    pub fn num_embeddings(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Width of a row.
    pub fn dim(&self) -> usize {
        self.weight.shape()[1]
    }

    fn check_ids(&self, ids: &[usize]) -> Result<()> {
        let n = self.num_embeddings();
        if let Some((pos, &id)) = ids.iter().enumerate().find(|&(_, &id)| id >= n) {
            return Err(CoreError::config(
                "token id",
                format!("id {id} at position {pos} is outside the table of {n} rows"),
            ));
        }
        Ok(())
    }

    /// Rows for `ids`, `[ids.len(), dim]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the first id that is not below
    /// [`num_embeddings`](Self::num_embeddings).
    pub fn lookup(&self, ids: &[usize]) -> Result<Array2<F>> {
        self.check_ids(ids)?;
        let w = self.weight.effective();
        let w = w.view().into_dimensionality::<ndarray::Ix2>()?;
        let mut out = Array2::zeros((ids.len(), self.dim()));
        for (mut row, &id) in out.rows_mut().into_iter().zip(ids) {
            row.assign(&w.row(id));
        }
        Ok(out)
    }

    /// [`lookup`](Self::lookup) that, in [`Mode::Train`], remembers the ids for
    /// [`backward_ids`](Self::backward_ids).
    ///
    /// # Errors
    ///
    /// As [`lookup`](Self::lookup).
    pub fn forward_ids(&mut self, ids: &[usize], mode: Mode) -> Result<Array2<F>> {
        let out = self.lookup(ids)?;
        self.ids = (mode == Mode::Train).then(|| ids.to_vec());
        Ok(out)
    }

    /// Adds `grad [ids.len(), dim]` (gradient of the rows returned by the last training
    /// forward) into the weight gradient, row by row (scatter-add).
    ///
    /// # Errors
    ///
    /// Without a training-mode forward, or when `grad` has the wrong shape.
    pub fn backward_ids(&mut self, grad: &ArrayRef<F, ndarray::Ix2>) -> Result<()> {
        let ids = self
            .ids
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Embedding"))?;
        if grad.shape() != [ids.len(), self.dim()] {
            return Err(CoreError::shape(
                "Embedding grad",
                &[ids.len(), self.dim()],
                grad.shape(),
            ));
        }
        let mut dw = Array2::<F>::zeros((self.num_embeddings(), self.dim()));
        for (g, &id) in grad.rows().into_iter().zip(ids) {
            let mut row = dw.row_mut(id);
            row += &g;
        }
        self.weight.accumulate_grad(dw.into_dyn())
    }
}

/// Float-encoded ids to indices, with a typed error for anything that is not an exact
/// non-negative integer.
fn float_ids<F: Float>(x: &ArrayRef<F, IxDyn>) -> Result<Vec<usize>> {
    x.iter()
        .enumerate()
        .map(|(pos, &v)| {
            let f = v.as_f64();
            if f >= 0.0 && f.fract() == 0.0 && f < usize::MAX as f64 {
                Ok(f as usize)
            } else {
                Err(CoreError::config(
                    "token id",
                    format!("{f} at position {pos} is not a non-negative integer"),
                ))
            }
        })
        .collect()
}

impl<F: Float> Module<F> for Embedding<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))
    }
}

impl<F: Float> Layer<F> for Embedding<F> {
    fn name(&self) -> &'static str {
        "Embedding"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let ids = float_ids(x)?;
        let rows = self.forward_ids(&ids, mode)?;
        let mut shape = x.shape().to_vec();
        shape.push(self.dim());
        Ok(rows.into_shape_with_order(IxDyn(&shape))?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let n = self
            .ids
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Embedding"))?
            .len();
        let in_shape = &grad.shape()[..grad.ndim().saturating_sub(1)];
        if grad.ndim() == 0 || grad.shape()[grad.ndim() - 1] != self.dim() {
            return Err(CoreError::shape(
                "Embedding grad",
                &[n, self.dim()],
                grad.shape(),
            ));
        }
        let in_shape = in_shape.to_vec();
        let g = grad
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, self.dim()))
            .map_err(|_| CoreError::shape("Embedding grad", &[n, self.dim()], grad.shape()))?;
        self.backward_ids(&g)?;
        Ok(ArrayD::zeros(IxDyn(&in_shape)))
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let mut out = input_shape.to_vec();
        out.push(self.dim());
        let w = self.weight.effective();
        Ok(Cost {
            output_shape: out,
            params: self.weight.len(),
            nonzero_params: w.iter().filter(|&&v| v != F::zero()).count(),
            macs: 0,
        })
    }
}
