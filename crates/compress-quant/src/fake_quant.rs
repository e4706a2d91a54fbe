//! Quantization-aware training: a fake-quant [`Parametrization`] for weights and a
//! fake-quant layer for activations, both with the straight-through estimator (STE).

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamFilter, ParamKind, Parametrization,
    Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::qtensor::BlockLayout;
use crate::{IntScheme, QTensor, QuantError, qparams_from_range};

/// Quantize-dequantize `x` (any float type) with one scale and zero point:
/// `(clamp(round_ties_even(x / s) + z, qlo, qhi) - z) * s`, computed in `f64`.
#[inline]
fn fq<F: Float>(x: F, s: f64, z: i32, qlo: i32, qhi: i32) -> F {
    let q =
        ((x.as_f64() / s).round_ties_even() + f64::from(z)).clamp(f64::from(qlo), f64::from(qhi));
    F::lit((q - f64::from(z)) * s)
}

/// Per-parameter-set min-max ranges of `x` laid out by `lay`.
fn block_ranges<F: Float>(x: &[F], lay: &BlockLayout) -> Vec<(f32, f32)> {
    let mut r = vec![(f32::INFINITY, f32::NEG_INFINITY); lay.params];
    for (b, block) in x.chunks_exact(lay.block_len).enumerate() {
        let e = &mut r[lay.param(b)];
        for &v in block {
            let v = v.as_f64() as f32;
            e.0 = e.0.min(v);
            e.1 = e.1.max(v);
        }
    }
    r
}

fn contiguous<F: Float>(a: &ArrayD<F>) -> std::borrow::Cow<'_, [F]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

fn rebuild<F: Float>(shape: &[usize], v: Vec<F>) -> ArrayD<F> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape)))
}

/// Fake quantization of a weight: forward is quantize-dequantize, backward is the
/// straight-through estimator with clipping (gradient passes where the weight lies inside
/// the clip range, zero outside).
///
/// Two range modes:
/// - **observer** ([`FakeQuant::observer`]): min-max of the current weight per tensor, channel
///   or group, recomputed on every forward (so the clip range never clips; STE = identity);
/// - **learnable** ([`FakeQuant::learnable`], symmetric schemes): LSQ (Esser et al. 2020):
///   trainable scales, gradient `sum g * (round(w/s) - w/s)` inside the range and `g * qmin`
///   / `g * qmax` where clipped, scaled by `1 / sqrt(n * qmax)`. The scales are a nested
///   parameter `<weight path>.fake_quant.scale` (kind
///   [`ParamKind::Parametrization`]), so the model's optimizer (Adam moments included),
///   statistics and checkpoints handle them.
///
/// ```
/// use compress_core::Param;
/// use compress_quant::{FakeQuant, IntScheme};
/// use ndarray::ArrayD;
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let mut p = Param::new(ArrayD::from_shape_vec(vec![2, 2], vec![0.1f32, -0.4, 0.25, 1.0]).unwrap());
/// p.push_parametrization(Box::new(FakeQuant::observer(IntScheme::new(2))?))?;
/// // 2-bit symmetric: codes {-1, 0, 1}, scale = 1.0 -> values snap to {-1, 0, 1}.
/// assert_eq!(p.effective().as_slice().unwrap(), &[0.0, 0.0, 0.0, 1.0]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FakeQuant<F: Float = f32> {
    scheme: IntScheme,
    /// LSQ scales, one per parameter set (learnable mode only).
    scale: Option<Param<F>>,
}

/// Scales never fall to zero or below (a trained scale is clamped where it is read).
const MIN_SCALE: f64 = 1e-12;

impl<F: Float> FakeQuant<F> {
    /// Observer-driven ranges (min-max of the current weight).
    ///
    /// # Errors
    ///
    /// An invalid scheme.
    pub fn observer(scheme: IntScheme) -> Result<Self, QuantError> {
        scheme.validate()?;
        Ok(Self {
            scheme,
            scale: None,
        })
    }

    /// Learnable (LSQ) scales, initialised from the min-max ranges of `init` (the weight the
    /// parametrization will see).
    ///
    /// # Errors
    ///
    /// An invalid scheme, an affine scheme (LSQ here is symmetric), or a layout error for
    /// `init`'s shape.
    pub fn learnable(scheme: IntScheme, init: &ArrayD<F>) -> Result<Self, QuantError> {
        scheme.validate()?;
        if scheme.affine {
            return Err(CoreError::config(
                "scheme",
                "learnable (LSQ) fake quantization needs a symmetric scheme",
            )
            .into());
        }
        let lay = BlockLayout::new(init.shape(), scheme.granularity, "weight")?;
        let x = contiguous(init);
        let scales = block_ranges(&x, &lay)
            .into_iter()
            .map(|(lo, hi)| qparams_from_range(lo, hi, scheme).map(|(s, _)| F::lit(f64::from(s))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            scheme,
            scale: Some(Param::with_kind(
                ArrayD::from_shape_vec(IxDyn(&[scales.len()]), scales).map_err(CoreError::from)?,
                ParamKind::Parametrization,
            )),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> IntScheme {
        self.scheme
    }

    /// The learnable scales (empty in observer mode).
    pub fn scales(&self) -> Vec<f64> {
        self.scale
            .as_ref()
            .map_or_else(Vec::new, |s| s.value().iter().map(|v| v.as_f64()).collect())
    }

    /// The learnable scales as a parameter (`None` in observer mode).
    pub fn scale_param(&self) -> Option<&Param<F>> {
        self.scale.as_ref()
    }

    /// The quantized tensor this fake quantization simulates for `input` (the value it sees
    /// in forward, e.g. the stored weight or the masked weight): same scales, zero points and
    /// codes, so `to_qtensor(w).dequantize()` equals `forward(w)` up to f32 rounding.
    ///
    /// # Errors
    ///
    /// A layout error for `input`'s shape, non-finite values, or a scale that f32 cannot hold.
    pub fn to_qtensor(&self, input: &ArrayD<F>) -> Result<QTensor, QuantError> {
        let lay = BlockLayout::new(input.shape(), self.scheme.granularity, "weight")?;
        let x = contiguous(input);
        let params = self.qparams(&x, &lay);
        let xs: Vec<f32> = x.iter().map(|v| v.as_f64() as f32).collect();
        let scales: Vec<f32> = params.iter().map(|p| p.0 as f32).collect();
        let zps: Vec<i32> = params.iter().map(|p| p.1).collect();
        QTensor::quantize_with_params(&xs, input.shape(), self.scheme, &scales, &zps)
    }

    /// Scales and zero points used for `x` (shape `shape`).
    fn qparams(&self, x: &[F], lay: &BlockLayout) -> Vec<(f64, i32)> {
        if let Some(s) = &self.scale {
            return s
                .value()
                .iter()
                .map(|v| (v.as_f64().max(MIN_SCALE), 0))
                .collect();
        }
        block_ranges(x, lay)
            .into_iter()
            .map(|(lo, hi)| {
                qparams_from_range(lo, hi, self.scheme).map_or((1.0, 0), |(s, z)| (f64::from(s), z))
            })
            .collect()
    }

    fn layout(&self, shape: &[usize]) -> Option<BlockLayout> {
        BlockLayout::new(shape, self.scheme.granularity, "weight").ok()
    }
}

impl<F: Float> Parametrization<F> for FakeQuant<F> {
    fn name(&self) -> &'static str {
        "fake_quant"
    }

    fn validate(&self, shape: &[usize]) -> Result<()> {
        let lay =
            BlockLayout::new(shape, self.scheme.granularity, "weight").map_err(|e| match e {
                QuantError::Core(c) => c,
                other => CoreError::technique("granularity", other),
            })?;
        if let Some(s) = &self.scale
            && lay.params != s.len()
        {
            return Err(CoreError::config(
                "scales",
                format!(
                    "{} learnable scales for {} parameter sets",
                    s.len(),
                    lay.params
                ),
            ));
        }
        Ok(())
    }

    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        let Some(lay) = self.layout(input.shape()) else {
            return input.clone();
        };
        let x = contiguous(input);
        let params = self.qparams(&x, &lay);
        let (qlo, qhi) = self.scheme.code_range();
        let mut out = Vec::with_capacity(x.len());
        for (b, block) in x.chunks_exact(lay.block_len).enumerate() {
            let (s, z) = params[lay.param(b)];
            out.extend(block.iter().map(|&v| fq(v, s, z, qlo, qhi)));
        }
        rebuild(input.shape(), out)
    }

    fn backward(&self, input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        let Some(lay) = self.layout(input.shape()) else {
            return grad_output;
        };
        let x = contiguous(input);
        let params = self.qparams(&x, &lay);
        let (qlo, qhi) = self.scheme.code_range();
        let g = contiguous(&grad_output);
        let mut out = Vec::with_capacity(x.len());
        for (b, (block, gb)) in x
            .chunks_exact(lay.block_len)
            .zip(g.chunks_exact(lay.block_len))
            .enumerate()
        {
            let (s, z) = params[lay.param(b)];
            let lo = (f64::from(qlo - z) - 0.5) * s;
            let hi = (f64::from(qhi - z) + 0.5) * s;
            out.extend(block.iter().zip(gb).map(|(&v, &gv)| {
                let v = v.as_f64();
                if v >= lo && v <= hi { gv } else { F::zero() }
            }));
        }
        rebuild(input.shape(), out)
    }

    fn accumulate_own_grad(&mut self, input: &ArrayD<F>, grad_output: &ArrayD<F>) {
        let Some(lay) = self.layout(input.shape()) else {
            return;
        };
        let Some(scale) = &mut self.scale else {
            return;
        };
        let scales: Vec<f64> = scale
            .value()
            .iter()
            .map(|v| v.as_f64().max(MIN_SCALE))
            .collect();
        let mut grad = vec![0f64; scales.len()];
        let (qlo, qhi) = self.scheme.code_range();
        let x = contiguous(input);
        let g = contiguous(grad_output);
        let per = (lay.blocks / lay.params * lay.block_len) as f64;
        let gscale = 1.0 / (per * f64::from(qhi)).sqrt();
        for (b, (block, gb)) in x
            .chunks_exact(lay.block_len)
            .zip(g.chunks_exact(lay.block_len))
            .enumerate()
        {
            let p = lay.param(b);
            let s = scales[p];
            let mut acc = 0.0;
            for (&v, &gv) in block.iter().zip(gb) {
                let r = v.as_f64() / s;
                let d = if r < f64::from(qlo) {
                    f64::from(qlo)
                } else if r > f64::from(qhi) {
                    f64::from(qhi)
                } else {
                    r.round_ties_even() - r
                };
                acc += gv.as_f64() * d;
            }
            grad[p] += acc * gscale;
        }
        let g = ArrayD::from_shape_fn(IxDyn(&[grad.len()]), |ix| F::lit(grad[ix[0]]));
        // The shape is the scale's own, so this cannot fail.
        let _ = scale.accumulate_grad(g);
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        self.scale.iter().map(|s| ("scale", s)).collect()
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        self.scale.iter_mut().map(|s| ("scale", s)).collect()
    }
}

/// Attaches a [`FakeQuant`] to every parameter of `model` selected by `filter` (on top of
/// any existing parametrization, e.g. a pruning mask). Returns the paths.
///
/// # Errors
///
/// An invalid scheme, or a parameter whose shape does not fit it (the path is named).
pub fn attach_fake_quant<F: Float>(
    model: &mut dyn Module<F>,
    filter: &ParamFilter,
    scheme: IntScheme,
    learnable: bool,
) -> Result<Vec<String>, QuantError> {
    scheme.validate()?;
    let mut paths = Vec::new();
    crate::ptq::for_selected_mut(model, filter, |key, p| {
        let fqz = if learnable {
            FakeQuant::learnable(scheme, &p.effective())
        } else {
            FakeQuant::observer(scheme)
        }?;
        p.push_parametrization(Box::new(fqz))?;
        paths.push(key.to_string());
        Ok(())
    })?;
    Ok(paths)
}

/// How a [`FakeQuantAct`] chooses its activation range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActRange {
    /// Min-max of each batch (per tensor, or per row with `PerChannel { axis: 0 }`), at
    /// training and at inference: dynamic quantization.
    Dynamic,
    /// A moving-average min-max updated in training mode and frozen in eval mode.
    Observed {
        /// Weight of each new batch.
        momentum: f32,
    },
    /// A fixed range (e.g. from calibration).
    Fixed {
        /// Lower end.
        lo: f32,
        /// Upper end.
        hi: f32,
    },
}

/// A fake-quant layer for activations: quantize-dequantize in forward, STE with clipping in
/// backward. Has no parameters.
///
/// # Shapes
///
/// - input: any `[batch, ...]`; output: the same.
#[derive(Debug, Clone)]
pub struct FakeQuantAct {
    scheme: IntScheme,
    range: ActRange,
    observed: Option<(f32, f32)>,
    pass: Option<Vec<bool>>,
}

impl FakeQuantAct {
    /// A fake-quant activation layer. Per-group granularity is not supported; per-channel
    /// only along axis 0 (per sample) and only with [`ActRange::Dynamic`].
    ///
    /// # Errors
    ///
    /// An invalid scheme or range, or an unsupported granularity.
    pub fn new(scheme: IntScheme, range: ActRange) -> Result<Self, QuantError> {
        scheme.validate()?;
        use crate::Granularity::*;
        match (scheme.granularity, range) {
            (PerTensor, _) | (PerChannel { axis: 0 }, ActRange::Dynamic) => {}
            (g, _) => {
                return Err(CoreError::config(
                    "granularity",
                    format!("{g:?} is not supported for activations with {range:?}"),
                )
                .into());
            }
        }
        if let ActRange::Fixed { lo, hi } = range {
            qparams_from_range(lo, hi, scheme)?;
        }
        Ok(Self {
            scheme,
            range,
            observed: None,
            pass: None,
        })
    }

    /// The current range for non-dynamic modes.
    pub fn range(&self) -> Option<(f32, f32)> {
        match self.range {
            ActRange::Fixed { lo, hi } => Some((lo, hi)),
            _ => self.observed,
        }
    }
}

crate::int_linear::no_params!(FakeQuantAct);

impl<F: Float> Layer<F> for FakeQuantAct {
    fn name(&self) -> &'static str {
        "FakeQuantAct"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let xs: Vec<F> = x.iter().copied().collect();
        if let Some(i) = xs.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::NonFinite {
                path: "FakeQuantAct input".into(),
                index: i,
                value: xs[i].as_f64(),
            });
        }
        let to_core = |e: QuantError| match e {
            QuantError::Core(c) => c,
            other => CoreError::technique("FakeQuantAct", other),
        };
        let lay = BlockLayout::new(x.shape(), self.scheme.granularity, "FakeQuantAct input")
            .map_err(to_core)?;
        let ranges = match self.range {
            ActRange::Dynamic => block_ranges(&xs, &lay),
            ActRange::Fixed { lo, hi } => vec![(lo, hi)],
            ActRange::Observed { momentum } => {
                if mode == Mode::Train {
                    let (lo, hi) = block_ranges(&xs, &lay)[0];
                    self.observed = Some(match self.observed {
                        None => (lo, hi),
                        Some((a, b)) => (a + momentum * (lo - a), b + momentum * (hi - b)),
                    });
                }
                vec![self.observed.ok_or_else(|| CoreError::InvalidState {
                    layer: "FakeQuantAct".into(),
                    reason: "observed range used in eval mode before any training batch".into(),
                })?]
            }
        };
        let (qlo, qhi) = self.scheme.code_range();
        let mut out = Vec::with_capacity(xs.len());
        let mut pass = Vec::with_capacity(if mode == Mode::Train { xs.len() } else { 0 });
        for (b, block) in xs.chunks_exact(lay.block_len).enumerate() {
            let (lo, hi) = ranges[lay.param(b)];
            let (s, z) = qparams_from_range(lo, hi, self.scheme).map_err(to_core)?;
            let s = f64::from(s);
            let (clo, chi) = (
                (f64::from(qlo - z) - 0.5) * s,
                (f64::from(qhi - z) + 0.5) * s,
            );
            for &v in block {
                out.push(fq(v, s, z, qlo, qhi));
                if mode == Mode::Train {
                    let a = v.as_f64();
                    pass.push(a >= clo && a <= chi);
                }
            }
        }
        self.pass = (mode == Mode::Train).then_some(pass);
        Ok(rebuild(x.shape(), out))
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let pass = self
            .pass
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("FakeQuantAct"))?;
        if grad.len() != pass.len() {
            return Err(CoreError::shape(
                "FakeQuantAct grad",
                &[pass.len()],
                &[grad.len()],
            ));
        }
        let out: Vec<F> = grad
            .iter()
            .zip(pass)
            .map(|(&g, &p)| if p { g } else { F::zero() })
            .collect();
        Ok(rebuild(grad.shape(), out))
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}
