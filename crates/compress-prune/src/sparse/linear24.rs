//! An inference-only fully connected layer whose weight is stored and multiplied in 2:4 form.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor,
    ParamVisitorMut, Result as CoreResult,
};
use compress_nn::Linear;
use compress_nn::layers::as_2d;
use ndarray::{Array2, ArrayD, ArrayRef, IxDyn};

use super::nm24::{NmMatrix, panels_of, product};
use crate::Result;
use crate::kernels::nm24::Panels24;

/// `y = x W^T + b` with `W` `[out, in]` 2:4 sparse: the kept values (a [`Param`]
/// `values` of shape `[out, in / 2]`, read through `effective()`) and a 2-bit position per
/// value, multiplied by the 2:4 kernel (AVX-512, AVX2 or portable, as
/// [`compress_core::Isa::current`] allows) without ever forming the dense weight.
///
/// Inference only: `forward` works in both modes, `backward` is an
/// [`CoreError::InvalidState`] error (fine-tune the dense [`Linear`] under a 2:4
/// [`crate::Mask`], then convert).
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::Linear;
/// use compress_prune::{Sparse24Linear, nm_mask};
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut dense = Linear::<f32>::new(16, 8, true, &mut StdRng::seed_from_u64(0));
/// let mask = nm_mask(&dense.weight.effective(), 2, 4, None, "weight").unwrap();
/// *dense.weight.value_mut() *= mask.array();
/// let mut sparse = Sparse24Linear::from_linear(&dense, "fc").unwrap();
/// let x = ArrayD::from_elem(vec![3, 16], 0.5f32);
/// let (a, b) = (dense.forward(&x, Mode::Eval).unwrap(), sparse.forward(&x, Mode::Eval).unwrap());
/// assert!(a.iter().zip(b.iter()).all(|(p, q)| (p - q).abs() < 1e-5));
/// // 64 values x 4 B + 64 x 2 bits + bias 8 x 4 B
/// assert_eq!(sparse.storage_bytes(), 256 + 16 + 32);
/// ```
#[derive(Debug, Clone)]
pub struct Sparse24Linear<F: Float> {
    weight: NmMatrix<F>,
    /// The kept values `[out, in / 2]` (two per group of four inputs, in position order).
    pub values: Param<F>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<F>>,
    /// The 2:4 kernel's panel form of the effective values and the [`Param::version`] it
    /// was built from (`None` inside when the kernel does not apply).
    panels: (u64, Option<Panels24>),
    scratch: Vec<f32>,
}

impl<F: Float> Sparse24Linear<F> {
    /// A layer from a 2:4 matrix `[out, in]` and an optional bias `[out]`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] when the matrix is not 2:4; [`CoreError::ShapeMismatch`]
    /// when the bias does not have `out` entries.
    pub fn new(weight: NmMatrix<F>, bias: Option<ArrayD<F>>) -> Result<Self> {
        if weight.pattern() != (2, 4) {
            let (n, m) = weight.pattern();
            return Err(
                CoreError::config("Sparse24Linear", format!("needs 2:4, got {n}:{m}")).into(),
            );
        }
        let (out, inp) = weight.dim();
        if let Some(b) = &bias
            && b.shape() != [out]
        {
            return Err(CoreError::shape("Sparse24Linear bias", &[out], b.shape()).into());
        }
        let values = Array2::from_shape_vec((out, inp / 2), weight.values().to_vec())
            .map_err(CoreError::from)?
            .into_dyn();
        let values = Param::new(values);
        let panels = (values.version(), panels_of(weight.parts(weight.values())));
        Ok(Self {
            weight,
            values,
            bias: bias.map(|b| Param::with_kind(b, ParamKind::Bias)),
            panels,
            scratch: Vec::new(),
        })
    }

    /// Converts a dense [`Linear`] whose effective weight is already 2:4 sparse (after
    /// [`crate::nm_prune`], Wanda or SparseGPT); `path` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`NmMatrix::from_dense`]: [`crate::PruneError::NotDivisible`] when the input
    /// features are not a multiple of 4, [`crate::PruneError::NotNmSparse`] when a group
    /// keeps more than two weights.
    pub fn from_linear(layer: &Linear<F>, path: &str) -> Result<Self> {
        let w2 = layer.weight.effective2()?;
        let weight = NmMatrix::from_dense(&w2, 2, 4, &format!("{path}.weight"))?;
        Self::new(
            weight,
            layer.bias.as_ref().map(|b| b.effective().into_owned()),
        )
    }

    /// The weight as an [`NmMatrix`] with the effective values.
    pub fn to_matrix(&self) -> NmMatrix<F> {
        let mut w = self.weight.clone();
        let vals = self.values.effective();
        for (d, &s) in w.values_mut().iter_mut().zip(vals.iter()) {
            *d = s;
        }
        w
    }

    /// Exact bytes: the values at `size_of::<F>()` each, the packed 2-bit positions, and
    /// the bias.
    pub fn storage_bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        self.weight.storage_bytes() + self.bias.as_ref().map_or(0, |b| b.len() * f)
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dim().1
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dim().0
    }
}

values_bias_module!(Sparse24Linear);

impl<F: Float> Layer<F> for Sparse24Linear<F> {
    fn name(&self) -> &'static str {
        "Sparse24Linear"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, _mode: Mode) -> CoreResult<ArrayD<F>> {
        let (out, inp) = self.weight.dim();
        let x2 = as_2d(x, "Sparse24Linear", inp)?;
        let vals = self.values.effective();
        let (vals, bias) = (
            vals.as_standard_layout(),
            self.bias.as_ref().map(Param::effective),
        );
        let vals = vals
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout"));
        if vals.len() != out * inp / 2 {
            return Err(CoreError::shape(
                "Sparse24Linear values",
                &[out, inp / 2],
                &[vals.len()],
            ));
        }
        let bias = bias.as_ref().map(|b| b.as_standard_layout());
        let bias = bias.as_ref().and_then(|b| b.as_slice());
        let parts = self.weight.parts(vals);
        if self.panels.0 != self.values.version() {
            // The values changed since the panels were built (training, quantization).
            self.panels = (self.values.version(), panels_of(parts));
        }
        product(parts, self.panels.1.as_ref(), &x2, bias, &mut self.scratch)
            .map(|y| y.into_dyn())
            .map_err(|e| CoreError::technique("Sparse24Linear", e))
    }

    fn backward(&mut self, _grad: &ArrayRef<F, IxDyn>) -> CoreResult<ArrayD<F>> {
        Err(CoreError::InvalidState {
            layer: "Sparse24Linear".to_string(),
            reason: "inference only: fine-tune the dense Linear under a 2:4 mask, then convert"
                .to_string(),
        })
    }

    fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
        let (out, inp) = self.weight.dim();
        if input_shape != [inp] {
            return Err(CoreError::shape(
                "Sparse24Linear input",
                &[inp],
                input_shape,
            ));
        }
        let (bn, bnz) = self.bias.as_ref().map_or((0, 0), |b| {
            (
                b.len(),
                b.effective().iter().filter(|v| **v != F::zero()).count(),
            )
        });
        let nz = self
            .values
            .effective()
            .iter()
            .filter(|v| **v != F::zero())
            .count();
        Ok(Cost {
            output_shape: vec![out],
            params: self.values.len() + bn,
            nonzero_params: nz + bnz,
            macs: (out * inp / 2) as u64,
        })
    }
}

/// Replaces every [`Linear`] below `model` whose path `select` accepts by a
/// [`Sparse24Linear`] (their effective weights must already be 2:4 sparse) and returns the
/// paths replaced. Linears in [`LayerSlot::Fixed`](compress_core::LayerSlot::Fixed) slots
/// cannot change type and stay dense. Every replacement is built before the first one is
/// made, so on error the model is unchanged.
///
/// # Errors
///
/// As [`Sparse24Linear::from_linear`], with the layer's path.
pub fn sparsify_24<F: Float>(
    model: &mut dyn Layer<F>,
    select: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>> {
    super::replace_linears(model, |path, lin| {
        select(path).then(|| Sparse24Linear::from_linear(lin, path))
    })
}
