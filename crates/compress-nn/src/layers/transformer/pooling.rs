//! Sentence pooling as sentence-transformers does it: masked mean or CLS, then optional
//! L2 normalisation.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use ndarray::{Array2, Array3, ArrayD, ArrayRef, ArrayView3, Ix3, IxDyn, s};

use super::{PaddingMask, check_mask};

/// Smallest token count mean pooling divides by (sentence-transformers clamps at `1e-9`).
const MIN_COUNT: f64 = 1e-9;
/// Smallest norm L2 normalisation divides by (`torch.nn.functional.normalize`'s `eps`).
const MIN_NORM: f64 = 1e-12;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingKind {
    /// Mean over the real (non-padding) tokens (all-MiniLM-L6-v2 and most
    /// sentence-transformers models).
    #[default]
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
}

/// Mean of the token states of each sequence over its real tokens: `hidden [batch, seq,
/// dim]` -> `[batch, dim]`, dividing by `max(count, 1e-9)` as sentence-transformers does
/// (a sequence without real tokens pools to zeros). Without a mask, every token counts.
///
/// # Errors
///
/// A shape error when the mask is not `[batch, seq]`.
pub fn mean_pool<F: Float>(
    hidden: &ArrayView3<'_, F>,
    mask: Option<&PaddingMask>,
) -> Result<Array2<F>> {
    let (batch, seq, dim) = hidden.dim();
    check_mask(mask, batch, seq)?;
    let mut out = Array2::<F>::zeros((batch, dim));
    for (b, mut row) in out.rows_mut().into_iter().enumerate() {
        let valid = mask.map(|m| m.row(b));
        let mut count = 0usize;
        for t in 0..seq {
            if valid.is_none_or(|v| v[t]) {
                row += &hidden.slice(s![b, t, ..]);
                count += 1;
            }
        }
        let inv = F::one() / F::lit((count as f64).max(MIN_COUNT));
        row.mapv_inplace(|v| v * inv);
    }
    Ok(out)
}

/// The first token's state of each sequence: `[batch, seq, dim]` -> `[batch, dim]`.
///
/// # Errors
///
/// A shape error when `seq` is zero.
pub fn cls_pool<F: Float>(hidden: &ArrayView3<'_, F>) -> Result<Array2<F>> {
    let (batch, seq, dim) = hidden.dim();
    if seq == 0 {
        return Err(CoreError::shape(
            "Pooling input",
            &[batch, 1, dim],
            &[batch, seq, dim],
        ));
    }
    Ok(hidden.slice(s![.., 0, ..]).to_owned())
}

/// Divides each row by `max(||row||_2, 1e-12)` in place (`F.normalize(x, p=2, dim=1)`);
/// returns the norms used.
pub fn l2_normalize<F: Float>(x: &mut Array2<F>) -> Vec<F> {
    let mut norms = Vec::with_capacity(x.nrows());
    for mut row in x.rows_mut() {
        let n = row.iter().fold(F::zero(), |s, &v| s + v * v).sqrt();
        let n = n.max(F::lit(MIN_NORM));
        let inv = F::one() / n;
        row.mapv_inplace(|v| v * inv);
        norms.push(n);
    }
    norms
}

/// What a training-mode forward keeps for backward.
#[derive(Debug, Clone)]
struct Cache<F> {
    shape: (usize, usize, usize),
    /// Normalised output and the norms, when normalising.
    normalized: Option<(Array2<F>, Vec<F>)>,
}

/// Pools `[batch, seq, dim]` token states into `[batch, dim]` sentence vectors
/// ([`PoolingKind`]), optionally L2-normalised; no parameters. The padding mask is set
/// with [`set_padding_mask`](Self::set_padding_mask) (used by mean pooling).
#[derive(Debug, Clone, Default, Module)]
pub struct Pooling<F: Float> {
    #[module(skip)]
    kind: PoolingKind,
    #[module(skip)]
    normalize: bool,
    #[module(skip)]
    mask: Option<PaddingMask>,
    #[module(skip)]
    cache: Option<Cache<F>>,
}

impl<F: Float> Pooling<F> {
    /// A pooling of `kind`, L2-normalised when `normalize`.
    pub fn new(kind: PoolingKind, normalize: bool) -> Self {
        Self {
            kind,
            normalize,
            mask: None,
            cache: None,
        }
    }

    /// The pooling kind.
    pub fn kind(&self) -> PoolingKind {
        self.kind
    }

    /// Whether outputs are L2-normalised.
    pub fn normalize(&self) -> bool {
        self.normalize
    }

    /// Sets (or clears) the padding mask used by the following forwards.
    pub fn set_padding_mask(&mut self, mask: Option<PaddingMask>) {
        self.mask = mask;
    }

    /// Pools a batch (see the type's docs) without caching anything.
    ///
    /// # Errors
    ///
    /// Shape errors for a mask that does not fit or an empty sequence axis (CLS).
    pub fn pool(&self, hidden: &ArrayView3<'_, F>) -> Result<Array2<F>> {
        let mut y = match self.kind {
            PoolingKind::Mean => mean_pool(hidden, self.mask.as_ref())?,
            PoolingKind::Cls => cls_pool(hidden)?,
        };
        if self.normalize {
            l2_normalize(&mut y);
        }
        Ok(y)
    }
}

impl<F: Float> Layer<F> for Pooling<F> {
    fn name(&self) -> &'static str {
        "Pooling"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let x3 = x
            .view()
            .into_dimensionality::<Ix3>()
            .map_err(|_| CoreError::shape("Pooling input", &[0, 0, 0], x.shape()))?;
        let mut y = match self.kind {
            PoolingKind::Mean => mean_pool(&x3, self.mask.as_ref())?,
            PoolingKind::Cls => cls_pool(&x3)?,
        };
        let norms = self.normalize.then(|| l2_normalize(&mut y));
        self.cache = (mode == Mode::Train).then(|| Cache {
            shape: x3.dim(),
            normalized: norms.map(|n| (y.clone(), n)),
        });
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Pooling"))?;
        let (batch, seq, dim) = cache.shape;
        if grad.shape() != [batch, dim] {
            return Err(CoreError::shape(
                "Pooling grad",
                &[batch, dim],
                grad.shape(),
            ));
        }
        let mut g = grad
            .view()
            .into_dimensionality::<ndarray::Ix2>()?
            .to_owned();
        if let Some((y, norms)) = &cache.normalized {
            // d(x / n) = (g - y (y . g)) / n, with n clamped below (then the clamp is a
            // constant and the gradient is g / n).
            for ((mut gr, yr), &n) in g.rows_mut().into_iter().zip(y.rows()).zip(norms) {
                let inv = F::one() / n;
                if n > F::lit(MIN_NORM) {
                    let dot = gr.iter().zip(yr).fold(F::zero(), |s, (&a, &b)| s + a * b);
                    for (gv, &yv) in gr.iter_mut().zip(yr) {
                        *gv = (*gv - yv * dot) * inv;
                    }
                } else {
                    gr.mapv_inplace(|v| v * inv);
                }
            }
        }
        let mut dx = Array3::<F>::zeros((batch, seq, dim));
        match self.kind {
            PoolingKind::Cls => {
                if seq > 0 {
                    dx.slice_mut(s![.., 0, ..]).assign(&g);
                }
            }
            PoolingKind::Mean => {
                for b in 0..batch {
                    let valid = self.mask.as_ref().map(|m| m.row(b));
                    let count = valid.map_or(seq, |v| v.iter().filter(|&&x| x).count());
                    let inv = F::one() / F::lit((count as f64).max(MIN_COUNT));
                    let gb = g.row(b).mapv(|v| v * inv);
                    for t in 0..seq {
                        if valid.is_none_or(|v| v[t]) {
                            dx.slice_mut(s![b, t, ..]).assign(&gb);
                        }
                    }
                }
            }
        }
        Ok(dx.into_dyn())
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let [seq, dim] = input_shape else {
            return Err(CoreError::shape("Pooling input", &[0, 0], input_shape));
        };
        Ok(Cost {
            output_shape: vec![*dim],
            params: 0,
            nonzero_params: 0,
            macs: (*seq * *dim) as u64,
        })
    }
}
