//! Layer normalisation over the last axis.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamKind, ParamPath, ParamVisitor,
    ParamVisitorMut, Result,
};
use ndarray::{Array1, ArrayD, ArrayRef, IxDyn};

use super::vmath;

/// What a training-mode forward keeps for backward.
#[derive(Debug, Clone)]
struct Cache<F> {
    xhat: ArrayD<F>,
    inv_std: Vec<F>,
}

/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, statistics over the last axis
/// (biased variance, `eps` inside the square root, as PyTorch's `nn.LayerNorm`).
///
/// Parameters: `weight` and `bias` `[dim]`, of kind [`ParamKind::Norm`]. Any input
/// whose last axis is `dim` is accepted (`[tokens, dim]`, `[batch, seq, dim]`, ...).
#[derive(Debug, Clone)]
pub struct LayerNorm<F: Float> {
    /// Scale `[dim]` (`gamma`).
    pub weight: Param<F>,
    /// Shift `[dim]` (`beta`).
    pub bias: Param<F>,
    eps: f64,
    cache: Option<Cache<F>>,
}

impl<F: Float> LayerNorm<F> {
    /// Ones and zeros, with `eps` (BERT: `1e-12`, PyTorch's default `1e-5`).
    ///
    /// # Panics
    ///
    /// If `eps` is negative or not finite.
    #[track_caller]
    pub fn new(dim: usize, eps: f64) -> Self {
        assert!(eps.is_finite() && eps >= 0.0, "LayerNorm eps must be >= 0");
        Self {
            weight: Param::with_kind(ArrayD::from_elem(IxDyn(&[dim]), F::one()), ParamKind::Norm),
            bias: Param::with_kind(ArrayD::zeros(IxDyn(&[dim])), ParamKind::Norm),
            eps,
            cache: None,
        }
    }

    /// Width of the normalised axis.
    pub fn dim(&self) -> usize {
        self.weight.len()
    }

    /// The `eps` added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    fn check(&self, shape: &[usize], what: &str) -> Result<()> {
        if shape.last() != Some(&self.dim()) {
            let mut expected = shape.to_vec();
            match expected.last_mut() {
                Some(l) => *l = self.dim(),
                None => expected.push(self.dim()),
            }
            return Err(CoreError::shape(
                format!("LayerNorm {what}"),
                &expected,
                shape,
            ));
        }
        Ok(())
    }

    /// Normalises the rows of `x` (its last axis) in place and returns `1 / std` per row;
    /// when `xhat` is given it receives the normalised rows before the affine map.
    fn normalise(&self, x: &mut ArrayD<F>, xhat: Option<&mut Vec<F>>) -> Result<Vec<F>> {
        let d = self.dim();
        let w = self.weight.effective();
        let b = self.bias.effective();
        let (Some(ws), Some(bs)) = (w.as_slice(), b.as_slice()) else {
            return Err(CoreError::InvalidState {
                layer: "LayerNorm".into(),
                reason: "parameters are not contiguous".into(),
            });
        };
        let Some(xs) = x.as_slice_mut() else {
            return Err(CoreError::InvalidState {
                layer: "LayerNorm".into(),
                reason: "input is not contiguous".into(),
            });
        };
        let eps = F::lit(self.eps);
        let inv_d = F::lit(1.0 / d.max(1) as f64);
        let mut inv = Vec::with_capacity(xs.len() / d.max(1));
        let mut hat = xhat;
        if let Some(h) = hat.as_deref_mut() {
            h.clear();
            h.reserve(xs.len());
        }
        for row in xs.chunks_exact_mut(d.max(1)) {
            let mean = row.iter().fold(F::zero(), |s, &v| s + v) * inv_d;
            let var = row
                .iter()
                .fold(F::zero(), |s, &v| s + (v - mean) * (v - mean))
                * inv_d;
            let r = F::one() / (var + eps).sqrt();
            for v in row.iter_mut() {
                *v = (*v - mean) * r;
            }
            if let Some(h) = hat.as_deref_mut() {
                h.extend_from_slice(row);
            }
            for ((v, &g), &bb) in row.iter_mut().zip(ws).zip(bs) {
                *v = *v * g + bb;
            }
            inv.push(r);
        }
        Ok(inv)
    }
}

impl<F: Float> Module<F> for LayerNorm<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
        path.scoped("bias", |p| v.visit(p, &self.bias));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
        path.scoped("bias", |p| v.visit_mut(p, &mut self.bias))
    }
}

impl<F: Float> Layer<F> for LayerNorm<F> {
    fn name(&self) -> &'static str {
        "LayerNorm"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        self.forward_owned(x.as_standard_layout().into_owned(), mode)
    }

    /// Normalises the given array in place.
    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.check(x.shape(), "input")?;
        let mut x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        if mode == Mode::Train {
            let mut hat = Vec::new();
            let inv_std = self.normalise(&mut x, Some(&mut hat))?;
            let xhat = ArrayD::from_shape_vec(x.raw_dim(), hat)?;
            self.cache = Some(Cache { xhat, inv_std });
        } else {
            self.cache = None;
            let (w, b) = (self.weight.effective(), self.bias.effective());
            let fast = (
                x.as_slice_mut().and_then(F::as_f32_slice_mut),
                w.as_slice().and_then(F::as_f32_slice),
                b.as_slice().and_then(F::as_f32_slice),
            );
            if let (Some(xs), Some(ws), Some(bs)) = fast {
                vmath::layer_norm_rows(xs, ws, bs, self.eps as f32);
            } else {
                self.normalise(&mut x, None)?;
            }
        }
        Ok(x)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("LayerNorm"))?;
        if grad.shape() != cache.xhat.shape() {
            return Err(CoreError::shape(
                "LayerNorm grad",
                cache.xhat.shape(),
                grad.shape(),
            ));
        }
        let d = self.dim().max(1);
        let g = grad.as_standard_layout();
        let (Some(gs), Some(hs)) = (g.as_slice(), cache.xhat.as_slice()) else {
            return Err(CoreError::InvalidState {
                layer: "LayerNorm".into(),
                reason: "gradient is not contiguous".into(),
            });
        };
        let w = self.weight.effective().into_owned();
        let ws = w.as_slice().unwrap_or(&[]);
        let mut dw = Array1::<F>::zeros(self.dim());
        let mut db = Array1::<F>::zeros(self.dim());
        let mut dx = Vec::with_capacity(gs.len());
        let inv_d = F::lit(1.0 / d as f64);
        for ((gr, hr), &r) in gs
            .chunks_exact(d)
            .zip(hs.chunks_exact(d))
            .zip(&cache.inv_std)
        {
            let mut m1 = F::zero();
            let mut m2 = F::zero();
            for (j, (&gv, &hv)) in gr.iter().zip(hr).enumerate() {
                dw[j] += gv * hv;
                db[j] += gv;
                let dh = gv * ws[j];
                m1 += dh;
                m2 += dh * hv;
            }
            m1 *= inv_d;
            m2 *= inv_d;
            for (j, (&gv, &hv)) in gr.iter().zip(hr).enumerate() {
                dx.push((gv * ws[j] - m1 - hv * m2) * r);
            }
        }
        self.weight.accumulate_grad(dw.into_dyn())?;
        self.bias.accumulate_grad(db.into_dyn())?;
        Ok(ArrayD::from_shape_vec(cache.xhat.raw_dim(), dx)?)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.check(input_shape, "input")?;
        let count = |p: &Param<F>| p.effective().iter().filter(|&&v| v != F::zero()).count();
        let rows: usize = input_shape[..input_shape.len() - 1].iter().product();
        Ok(Cost {
            output_shape: input_shape.to_vec(),
            params: 2 * self.dim(),
            nonzero_params: count(&self.weight) + count(&self.bias),
            macs: (rows * self.dim()) as u64,
        })
    }
}
