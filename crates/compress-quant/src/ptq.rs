//! Model-level post-training quantization of any [`Module`].

use compress_core::{Float, Module, Param, ParamFilter, ParamPath};
use ndarray::{ArrayD, IxDyn};

use crate::qtensor::effective_f32;
use crate::{
    Calibration, Granularity, IntScheme, QTensor, QuantError, QuantScheme, quantize_calibrated,
    sqnr_db,
};

/// What to quantize and how. Defaults: int8 symmetric per output channel, min-max ranges,
/// every weight (biases and norms skipped), per-group schemes fall back to per-channel where
/// the group size does not divide a weight's input dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct PtqConfig {
    /// The scheme (integer or f16/bf16 cast).
    pub scheme: QuantScheme,
    /// Which parameters (path globs and kinds).
    pub filter: ParamFilter,
    /// How weight ranges are chosen (integer schemes).
    pub calibration: Calibration,
    /// With a per-group scheme, quantize per channel (axis 0) the weights whose input
    /// dimension the group size does not divide, instead of failing.
    pub group_fallback: bool,
}

impl Default for PtqConfig {
    fn default() -> Self {
        Self::new(IntScheme::int8_per_channel())
    }
}

impl PtqConfig {
    /// A configuration for `scheme` with the defaults above.
    pub fn new(scheme: impl Into<QuantScheme>) -> Self {
        Self {
            scheme: scheme.into(),
            filter: ParamFilter::new(),
            calibration: Calibration::MinMax,
            group_fallback: true,
        }
    }

    /// Sets the parameter filter.
    #[must_use]
    pub fn filter(mut self, filter: ParamFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the calibration method.
    #[must_use]
    pub fn calibration(mut self, c: Calibration) -> Self {
        self.calibration = c;
        self
    }
}

/// One quantized parameter: its original shape and the quantized tensor (whose shape is
/// `[shape[0], prod(shape[1..])]` for per-group schemes on weights with more than two axes).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedParam {
    /// Dotted parameter path.
    pub path: String,
    /// The parameter's shape.
    pub shape: Vec<usize>,
    /// The quantized values.
    pub tensor: QTensor,
}

/// A model's quantized parameters plus the float parameters left as they were (biases,
/// norms, anything not selected), in visiting order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuantizedModel {
    /// Quantized parameters.
    pub quantized: Vec<QuantizedParam>,
    /// Parameters kept in f32: `(path, shape, values)`.
    pub float: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// Per-parameter outcome of [`quantize_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParamReport {
    /// Dotted path.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Scheme label actually used (after any per-group fallback).
    pub scheme: String,
    /// Bytes as f32.
    pub f32_bytes: usize,
    /// Bytes quantized (codes, scales and zero points).
    pub bytes: usize,
    /// Signal-to-quantization-noise ratio in dB.
    pub sqnr_db: f64,
}

/// Summary of [`quantize_model`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PtqReport {
    /// One entry per quantized parameter.
    pub params: Vec<ParamReport>,
    /// Bytes of the float parameters kept as f32.
    pub float_bytes: usize,
}

impl PtqReport {
    /// Bytes of the quantized parameters.
    pub fn quantized_bytes(&self) -> usize {
        self.params.iter().map(|p| p.bytes).sum()
    }

    /// Total model bytes after quantization (quantized + float parameters).
    pub fn total_bytes(&self) -> usize {
        self.quantized_bytes() + self.float_bytes
    }

    /// Total model bytes in f32.
    pub fn f32_total_bytes(&self) -> usize {
        self.params.iter().map(|p| p.f32_bytes).sum::<usize>() + self.float_bytes
    }

    /// Mean SQNR (dB) over quantized parameters (finite values only); 0 when none.
    pub fn mean_sqnr_db(&self) -> f64 {
        let v: Vec<f64> = self
            .params
            .iter()
            .map(|p| p.sqnr_db)
            .filter(|d| d.is_finite())
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

fn quantize_one(
    path: &str,
    shape: &[usize],
    x: &[f32],
    config: &PtqConfig,
) -> Result<QTensor, QuantError> {
    let QuantScheme::Int(mut s) = config.scheme else {
        return QTensor::quantize_slice(x, shape, config.scheme);
    };
    let mut qshape = shape.to_vec();
    if let Granularity::PerGroup { group_size } = s.granularity {
        if shape.len() > 2 {
            qshape = vec![shape[0], shape[1..].iter().product()];
        }
        let last = qshape.last().copied().unwrap_or(0);
        if config.group_fallback && (group_size == 0 || last % group_size != 0) {
            s.granularity = Granularity::PerChannel { axis: 0 };
            qshape = shape.to_vec();
        }
    }
    quantize_calibrated(x, &qshape, s, config.calibration).map_err(|e| e.at_path(path))
}

/// Quantizes every parameter of `model` selected by `config.filter` (reading effective
/// values), returning the quantized model and a per-parameter report (bytes, SQNR).
/// The model is not changed; see [`QuantizedModel::apply_to`].
///
/// ```
/// use compress_quant::{IntScheme, PtqConfig, quantize_model};
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = compress_nn::models::mlp::<f32, _>(&[64, 32, 10], &mut rng);
/// let (q, report) = quantize_model(&net, &PtqConfig::new(IntScheme::int8_per_channel()))?;
/// assert_eq!(report.params.len(), 2); // two weights; biases stay f32
/// assert!(report.mean_sqnr_db() > 35.0);
/// q.apply_to(&mut net)?; // the network now computes with the dequantized weights
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The first parameter that cannot be quantized (non-finite values, a group size that does
/// not divide with the fallback off, ...), naming its path.
pub fn quantize_model<F: Float>(
    model: &dyn Module<F>,
    config: &PtqConfig,
) -> Result<(QuantizedModel, PtqReport), QuantError> {
    config.scheme.validate()?;
    config.calibration.validate()?;
    let mut out = QuantizedModel::default();
    let mut report = PtqReport::default();
    let mut err: Option<QuantError> = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            if err.is_some() {
                return;
            }
            let key = path.to_string();
            let x = effective_f32(p);
            if !config.filter.selects(&key, p) {
                report.float_bytes += 4 * x.len();
                out.float.push((key, p.shape().to_vec(), x));
                return;
            }
            match quantize_one(&key, p.shape(), &x, config) {
                Ok(t) => {
                    let mut y = vec![0.0f32; x.len()];
                    t.dequantize_into(&mut y);
                    report.params.push(ParamReport {
                        path: key.clone(),
                        shape: p.shape().to_vec(),
                        scheme: t.scheme().label(),
                        f32_bytes: 4 * x.len(),
                        bytes: t.size_bytes(),
                        sqnr_db: sqnr_db(&x, &y),
                    });
                    out.quantized.push(QuantizedParam {
                        path: key,
                        shape: p.shape().to_vec(),
                        tensor: t,
                    });
                }
                Err(e) => err = Some(e),
            }
        },
    );
    match err {
        Some(e) => Err(e),
        None => Ok((out, report)),
    }
}

impl QuantizedModel {
    /// Bytes of the quantized tensors plus the f32 parameters.
    pub fn size_bytes(&self) -> usize {
        self.quantized
            .iter()
            .map(|q| q.tensor.size_bytes())
            .sum::<usize>()
            + self.float.iter().map(|f| 4 * f.2.len()).sum::<usize>()
    }

    /// The quantized parameter at `path`.
    pub fn get(&self, path: &str) -> Option<&QuantizedParam> {
        self.quantized.iter().find(|q| q.path == path)
    }

    /// Dequantized values of every parameter by path (quantized ones dequantized, float
    /// ones as stored).
    pub fn dequantized<F: Float>(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out = Vec::new();
        for q in &self.quantized {
            let v: ArrayD<F> = q.tensor.dequantize();
            let v = v
                .into_shape_with_order(IxDyn(&q.shape))
                .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&q.shape)));
            out.push((q.path.clone(), v));
        }
        for (p, shape, v) in &self.float {
            let a = ArrayD::from_shape_vec(
                IxDyn(shape),
                v.iter().map(|&x| F::lit(f64::from(x))).collect(),
            )
            .unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape)));
            out.push((p.clone(), a));
        }
        out
    }

    /// Sets the stored values of `model`'s parameters to the dequantized values (the
    /// model then computes what the quantized model computes, in float). Parameters of the
    /// model that this quantized model does not hold are left unchanged.
    ///
    /// # Errors
    ///
    /// A shape mismatch naming the path.
    pub fn apply_to<F: Float>(&self, model: &mut dyn Module<F>) -> Result<(), QuantError> {
        model.load_state_partial(&self.dequantized::<F>())?;
        Ok(())
    }
}

/// Runs `f` on every parameter of `model` that `filter` selects, with its path. An error of
/// `f` stops the walk and is returned with its type, naming the path ([`QuantError::at_path`]).
pub(crate) fn for_selected_mut<F: Float>(
    model: &mut dyn Module<F>,
    filter: &ParamFilter,
    mut f: impl FnMut(&str, &mut Param<F>) -> Result<(), QuantError>,
) -> Result<(), QuantError> {
    model.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            let key = path.to_string();
            if !filter.selects(&key, p) {
                return Ok(());
            }
            f(&key, p).map_err(|e| e.at_path(&key).into_core(&key))
        },
    )?;
    Ok(())
}

/// Quantize-dequantizes the selected parameters of `model` in place (weight-only PTQ
/// simulation) and returns the report.
///
/// # Errors
///
/// As [`quantize_model`].
pub fn fake_quantize_model<F: Float>(
    model: &mut dyn Module<F>,
    config: &PtqConfig,
) -> Result<PtqReport, QuantError> {
    let (q, report) = quantize_model(&*model, config)?;
    q.apply_to(model)?;
    Ok(report)
}
