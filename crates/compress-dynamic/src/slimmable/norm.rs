//! Switchable batch normalisation: separate statistics and affine parameters per width.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Param, ParamKind};
use ndarray::{Array1, Array3, ArrayD, ArrayRef, Axis, Ix1, Ix3, IxDyn, s};

use super::width::{Slimmable, active_channels, check_width, width_index};
use crate::Result;

/// One width's private batch-norm state.
#[derive(Debug, Clone, Module)]
struct WidthNorm<F: Float> {
    weight: Param<F>,
    bias: Param<F>,
    running_mean: Param<F>,
    running_var: Param<F>,
    #[module(skip)]
    batches: usize,
}

impl<F: Float> WidthNorm<F> {
    fn new(c: usize) -> Self {
        Self {
            weight: Param::with_kind(ArrayD::from_elem(vec![c], F::one()), ParamKind::Norm),
            bias: Param::with_kind(ArrayD::zeros(vec![c]), ParamKind::Norm),
            running_mean: Param::with_kind(ArrayD::zeros(vec![c]), ParamKind::Buffer),
            running_var: Param::with_kind(ArrayD::from_elem(vec![c], F::one()), ParamKind::Buffer),
            batches: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Cache<F: Float> {
    xhat: Array3<F>,
    inv_std: Array1<F>,
    shape: Vec<usize>,
}

/// Batch normalisation over channel axis 1 of `[N, C]` or `[N, C, ...]` inputs, with one
/// private set of statistics and affine parameters per configured width (Yu et al.,
/// Slimmable Networks): the first `ceil(w * C)` channels at width `w`.
///
/// Parameter paths: `bn.<i>.weight`, `bn.<i>.bias` (kind Norm), `bn.<i>.running_mean`,
/// `bn.<i>.running_var` (kind Buffer), where `i` indexes [`SwitchableBatchNorm::widths`].
/// Defaults: eps `1e-5`, momentum `0.1` (PyTorch); `momentum = None` keeps a cumulative
/// average over the batches seen (used for recalibration).
///
/// ```
/// use compress_core::{Layer, Mode, Module};
/// use compress_dynamic::{Slimmable, SwitchableBatchNorm};
/// use ndarray::ArrayD;
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut bn = SwitchableBatchNorm::<f64>::new(8, &[0.5, 1.0])?;
/// assert_eq!(bn.named_params()[0].path, "bn.0.weight");
/// bn.set_width(0.5)?;
/// let y = bn.forward(&ArrayD::from_shape_fn(vec![4, 4], |d| d[0] as f64), Mode::Train)?;
/// assert!(y.sum().abs() < 1e-9); // normalised per channel
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Module)]
pub struct SwitchableBatchNorm<F: Float> {
    #[module(skip)]
    channels: usize,
    #[module(skip)]
    widths: Vec<f64>,
    #[module(rename = "bn")]
    norms: Vec<WidthNorm<F>>,
    #[module(skip)]
    current: usize,
    #[module(skip)]
    eps: f64,
    #[module(skip)]
    momentum: Option<f64>,
    #[module(skip)]
    cache: Option<Cache<F>>,
}

impl<F: Float> SwitchableBatchNorm<F> {
    /// A norm over `channels` (at full width) for each of `widths`; starts at the largest.
    ///
    /// # Errors
    ///
    /// No widths, a width outside `(0, 1]`, or a repeated width.
    pub fn new(channels: usize, widths: &[f64]) -> Result<Self> {
        if widths.is_empty() {
            return Err(CoreError::config("widths", "at least one width is needed").into());
        }
        let mut bn = Self {
            channels,
            widths: Vec::new(),
            norms: Vec::new(),
            current: 0,
            eps: 1e-5,
            momentum: Some(0.1),
            cache: None,
        };
        for &w in widths {
            check_width(w)?;
            if width_index("", &bn.widths, w).is_ok() {
                return Err(
                    CoreError::config("widths", format!("{w} is repeated in {widths:?}")).into(),
                );
            }
            bn.widths.push(w);
            bn.norms.push(WidthNorm::new(active_channels(w, channels)));
        }
        bn.current = (0..bn.widths.len())
            .max_by(|&a, &b| bn.widths[a].total_cmp(&bn.widths[b]))
            .unwrap_or(0);
        Ok(bn)
    }

    /// The configured widths, in parameter-path order.
    pub fn widths(&self) -> &[f64] {
        &self.widths
    }

    /// Channels at full width.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Channels at the current width.
    pub fn active_channels(&self) -> usize {
        self.norms[self.current].weight.len()
    }

    /// Sets the running-statistics momentum (`None` = cumulative average).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a momentum outside `(0, 1]`.
    pub fn set_momentum(&mut self, momentum: Option<f64>) -> Result<()> {
        if let Some(m) = momentum
            && !(m > 0.0 && m <= 1.0)
        {
            return Err(CoreError::config("momentum", format!("{m} is not in (0, 1]")).into());
        }
        self.momentum = momentum;
        Ok(())
    }

    /// Adds a width (for universally slimmable use): its affine parameters start as a copy
    /// of the first channels of the smallest configured width that has enough channels,
    /// its statistics at mean 0 / variance 1 (recalibrate them with
    /// [`recalibrate_bn`](crate::recalibrate_bn)). Returns its index; an existing width
    /// returns its index unchanged.
    ///
    /// # Errors
    ///
    /// A width outside `(0, 1]`.
    pub fn add_width(&mut self, w: f64) -> Result<usize> {
        check_width(w)?;
        if let Ok(i) = width_index("", &self.widths, w) {
            return Ok(i);
        }
        let c = active_channels(w, self.channels);
        let mut norm = WidthNorm::new(c);
        let donor = (0..self.widths.len())
            .filter(|&i| self.norms[i].weight.len() >= c)
            .min_by(|&a, &b| self.widths[a].total_cmp(&self.widths[b]));
        if let Some(d) = donor {
            let (g, b) = (&self.norms[d].weight, &self.norms[d].bias);
            norm.weight
                .set_value(g.value().slice(s![..c]).to_owned().into_dyn())?;
            norm.bias
                .set_value(b.value().slice(s![..c]).to_owned().into_dyn())?;
        }
        self.widths.push(w);
        self.norms.push(norm);
        Ok(self.widths.len() - 1)
    }

    /// Resets the current width's running statistics (mean 0, variance 1, no batches).
    pub fn reset_running_stats(&mut self) {
        let n = &mut self.norms[self.current];
        n.running_mean.value_mut().fill(F::zero());
        n.running_var.value_mut().fill(F::one());
        n.batches = 0;
    }

    fn as_3d(&self, x: &ArrayRef<F, IxDyn>) -> Result<Array3<F>> {
        let c = self.active_channels();
        if x.ndim() < 2 || x.shape()[1] != c {
            let n = x.shape().first().copied().unwrap_or(0);
            return Err(CoreError::shape("SwitchableBatchNorm input", &[n, c], x.shape()).into());
        }
        let n = x.shape()[0];
        let sp: usize = x.shape()[2..].iter().product();
        Ok(x.as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, c, sp))
            .map_err(CoreError::from)?)
    }
}

impl<F: Float> Slimmable for SwitchableBatchNorm<F> {
    fn set_width(&mut self, w: f64) -> Result<()> {
        check_width(w)?;
        self.current = width_index("SwitchableBatchNorm", &self.widths, w)?;
        self.cache = None;
        Ok(())
    }

    fn width(&self) -> f64 {
        self.widths[self.current]
    }
}

impl<F: Float> Layer<F> for SwitchableBatchNorm<F> {
    fn name(&self) -> &'static str {
        "SwitchableBatchNorm"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        let x3 = self
            .as_3d(x)
            .map_err(|e| e.into_core("SwitchableBatchNorm"))?;
        let (n, c, sp) = x3.dim();
        let m = n * sp;
        let eps = F::lit(self.eps);
        let (mean, var) = if mode == Mode::Train {
            if m == 0 {
                return Err(CoreError::Empty {
                    path: "SwitchableBatchNorm input".into(),
                    shape: x.shape().to_vec(),
                });
            }
            let mf = F::lit(m as f64);
            let mean = x3.sum_axis(Axis(2)).sum_axis(Axis(0)).mapv(|v| v / mf);
            let mut var = Array1::<F>::zeros(c);
            for ((_, ch, _), &v) in x3.indexed_iter() {
                let d = v - mean[ch];
                var[ch] += d * d;
            }
            var.mapv_inplace(|v| v / mf);
            let norm = &mut self.norms[self.current];
            let mom = F::lit(self.momentum.unwrap_or(1.0 / (norm.batches + 1) as f64));
            let unbias = if m > 1 {
                F::lit(m as f64 / (m - 1) as f64)
            } else {
                F::one()
            };
            ndarray::Zip::from(norm.running_mean.value_mut())
                .and(mean.view().into_dyn())
                .for_each(|r, &b| *r = (F::one() - mom) * *r + mom * b);
            ndarray::Zip::from(norm.running_var.value_mut())
                .and(var.view().into_dyn())
                .for_each(|r, &b| *r = (F::one() - mom) * *r + mom * b * unbias);
            norm.batches += 1;
            (mean, var)
        } else {
            let norm = &self.norms[self.current];
            (
                norm.running_mean
                    .value()
                    .clone()
                    .into_dimensionality::<Ix1>()?,
                norm.running_var
                    .value()
                    .clone()
                    .into_dimensionality::<Ix1>()?,
            )
        };
        let inv_std = var.mapv(|v| F::one() / (v + eps).sqrt());
        let norm = &self.norms[self.current];
        let g = norm
            .weight
            .effective()
            .into_owned()
            .into_dimensionality::<Ix1>()?;
        let b = norm
            .bias
            .effective()
            .into_owned()
            .into_dimensionality::<Ix1>()?;
        let mut xhat = x3;
        for ((_, ch, _), v) in xhat.indexed_iter_mut() {
            *v = (*v - mean[ch]) * inv_std[ch];
        }
        let mut y = xhat.clone();
        for ((_, ch, _), v) in y.indexed_iter_mut() {
            *v = *v * g[ch] + b[ch];
        }
        self.cache = (mode == Mode::Train).then(|| Cache {
            xhat,
            inv_std,
            shape: x.shape().to_vec(),
        });
        Ok(y.into_shape_with_order(IxDyn(x.shape()))?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("SwitchableBatchNorm"))?;
        if grad.shape() != cache.shape.as_slice() {
            return Err(CoreError::shape(
                "SwitchableBatchNorm grad",
                &cache.shape,
                grad.shape(),
            ));
        }
        let (n, c, sp) = cache.xhat.dim();
        let g3 = grad
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((n, c, sp))?
            .into_dimensionality::<Ix3>()?;
        let norm = &mut self.norms[self.current];
        let gamma = norm
            .weight
            .effective()
            .into_owned()
            .into_dimensionality::<Ix1>()?;
        let mut dgamma = Array1::<F>::zeros(c);
        let mut dbeta = Array1::<F>::zeros(c);
        for (((_, ch, _), &gv), &xh) in g3.indexed_iter().zip(cache.xhat.iter()) {
            dgamma[ch] += gv * xh;
            dbeta[ch] += gv;
        }
        // dx = gamma * inv_std / M * (M g - sum g - xhat * sum(g xhat)).
        let mf = F::lit((n * sp) as f64);
        let mut dx = g3;
        for (((_, ch, _), v), &xh) in dx.indexed_iter_mut().zip(cache.xhat.iter()) {
            *v = (*v * mf - dbeta[ch] - xh * dgamma[ch]) * gamma[ch] * cache.inv_std[ch] / mf;
        }
        norm.weight.accumulate_grad(dgamma.into_dyn())?;
        norm.bias.accumulate_grad(dbeta.into_dyn())?;
        Ok(dx.into_shape_with_order(IxDyn(&cache.shape))?)
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let c = self.active_channels();
        if input_shape.first() != Some(&c) {
            return Err(CoreError::shape(
                "SwitchableBatchNorm input",
                &[c],
                input_shape,
            ));
        }
        let elems: usize = input_shape.iter().product();
        Ok(Cost {
            output_shape: input_shape.to_vec(),
            params: 2 * c,
            nonzero_params: 2 * c,
            // One multiply-add per element (scale and shift; foldable into the previous layer).
            macs: elems as u64,
        })
    }
}
