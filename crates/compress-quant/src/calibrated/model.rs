//! Model-level calibrated quantization: each selected linear layer of any model quantized by
//! one [`Method`], with the scales of AWQ / SmoothQuant folded into the layers that produce
//! their inputs, and the quantized layers built for inference.

use std::collections::BTreeMap;

use compress_core::surgery::{replace_layer, with_param_mut};
use compress_core::{CoreError, Layer};
use ndarray::{Array2, Ix2};

use super::clip::{ClipConfig, clip_search, quantize_clipped};
use super::gptq::{GptqConfig, gptq_quantize};
use super::grid::{WeightQuant, quantize_rtn};
use super::intn::{InputScaled, IntNLinear};
use super::scaling::{ScaleSource, awq_search, fold_scales, smoothquant_scales};
use crate::{DynamicQLinear, Granularity, Int4Linear, IntScheme, QTensor, QuantError, QuantScheme};
use compress_core::capture::InputStats;

/// How the weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Round to nearest on the min-max grid of each row group (no calibration).
    Rtn,
    /// GPTQ with these settings (its `quant` is replaced by the call's).
    Gptq(GptqConfig),
    /// AWQ: scale search, then (optionally) the clipping search, then round to nearest.
    Awq(AwqConfig),
    /// SmoothQuant migration with exponent `alpha`, then int8 symmetric per-channel
    /// weights for per-token dynamic int8 activations (W8A8).
    SmoothQuant {
        /// Migration strength (0.5 in the paper).
        alpha: f32,
    },
}

/// AWQ's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwqConfig {
    /// Exponents tried by the scale search ([`awq_search`]), `i / grid` for `i` in `0..grid`.
    pub grid: usize,
    /// The per-row-group clipping search ([`clip_search`]) after the scales; `None` skips it.
    pub clip: Option<ClipConfig>,
}

impl Default for AwqConfig {
    /// 20 exponents and the default clipping grid.
    fn default() -> Self {
        Self {
            grid: 20,
            clip: Some(ClipConfig::default()),
        }
    }
}

impl Method {
    /// Whether the method needs captured inputs, and with the Hessian.
    pub fn needs(&self) -> Option<bool> {
        match self {
            Self::Rtn => None,
            Self::Gptq(_) | Self::Awq(_) => Some(true),
            Self::SmoothQuant { .. } => Some(false),
        }
    }
}

/// Linear layers that read the same activation, and where AWQ / SmoothQuant put the
/// division of that activation by their scales.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleGroup {
    /// Where the scales go.
    pub source: ScaleSource,
    /// Layer paths.
    pub linears: Vec<String>,
}

/// One quantized linear layer.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedLinear {
    /// Layer path.
    pub path: String,
    /// The quantized weight `[out, in]`.
    pub weight: QTensor,
    /// The bias (kept in f32).
    pub bias: Option<Vec<f32>>,
    /// AWQ's winning exponent, when AWQ ran on the layer's group and scaling won.
    pub alpha: Option<f32>,
    /// AWQ's clipping search on this layer: the output error on the calibration data
    /// after and before clipping (`[clipped, unclipped]`, scaled weights).
    pub clip_error: Option<[f64; 2]>,
    /// The per-feature input factor (`1 / s`) of an explicit AWQ / SmoothQuant scale.
    pub input_scale: Option<Vec<f32>>,
}

impl QuantizedLinear {
    /// Bytes of the weight (codes, scales, zero points) and bias.
    pub fn size_bytes(&self) -> usize {
        self.weight.size_bytes()
            + 4 * self.bias.as_ref().map_or(0, Vec::len)
            + 4 * self.input_scale.as_ref().map_or(0, Vec::len)
    }

    /// The inference layer: [`quantized_layer`], behind [`InputScaled`] when the layer has
    /// an explicit input scale.
    ///
    /// # Errors
    ///
    /// As [`quantized_layer`].
    pub fn layer(&self) -> Result<Box<dyn Layer<f32>>, QuantError> {
        let inner = quantized_layer(self.weight.clone(), self.bias.clone())?;
        Ok(match &self.input_scale {
            Some(f) => Box::new(InputScaled::new(f.clone(), inner)),
            None => inner,
        })
    }
}

/// The inference layer for a quantized weight: [`DynamicQLinear`] (int8 weights, per-token
/// dynamic int8 activations, the `vpdpbusd` GEMM) for int8 symmetric per-channel or
/// per-tensor weights (W8A8), [`Int4Linear`] for 4-bit per-group weights, [`IntNLinear`]
/// for every other width.
///
/// # Errors
///
/// The constructors' errors (a bias of the wrong length, a float cast, a weight that is not
/// 2-D).
pub fn quantized_layer(
    weight: QTensor,
    bias: Option<Vec<f32>>,
) -> Result<Box<dyn Layer<f32>>, QuantError> {
    match weight.scheme() {
        QuantScheme::Int(IntScheme {
            bits: 8,
            affine: false,
            granularity: Granularity::PerChannel { axis: 0 } | Granularity::PerTensor,
            ..
        }) => Ok(Box::new(dynamic_int8(&weight, bias)?)),
        QuantScheme::Int(IntScheme {
            bits: 4,
            granularity: Granularity::PerGroup { group_size },
            ..
        }) if group_size % 2 == 0 => Ok(Box::new(Int4Linear::from_qtensor(weight, bias)?)),
        _ => Ok(Box::new(IntNLinear::from_qtensor(weight, bias)?)),
    }
}

/// The [`DynamicQLinear`] of an int8 symmetric weight `[out, in]` with one scale per output
/// channel or one for the tensor (its codes and scales taken as they are).
fn dynamic_int8(weight: &QTensor, bias: Option<Vec<f32>>) -> Result<DynamicQLinear, QuantError> {
    let &[n, k] = weight.shape() else {
        return Err(CoreError::shape("int8 dynamic weight", &[0, 0], weight.shape()).into());
    };
    let codes: Vec<i8> = weight.data().iter().map(|&c| c as i8).collect();
    let scales = match weight.scales() {
        [s] => vec![*s; n],
        s => s.to_vec(),
    };
    DynamicQLinear::from_parts(&codes, n, k, scales, bias)
}

/// The name of the kernel [`quantized_layer`] picks for `weight` (stored as each layer's
/// kernel marker in compressed model directories).
pub fn kernel_name(weight: &QTensor) -> &'static str {
    match weight.scheme() {
        QuantScheme::Int(IntScheme {
            bits: 8,
            affine: false,
            granularity: Granularity::PerChannel { axis: 0 } | Granularity::PerTensor,
            ..
        }) => "int8-dynamic",
        QuantScheme::Int(IntScheme {
            bits: 4,
            granularity: Granularity::PerGroup { group_size },
            ..
        }) if group_size % 2 == 0 => "int4-weight-only",
        _ => "intn-weight-only",
    }
}

fn weight_of(model: &mut dyn Layer<f32>, path: &str) -> Result<Array2<f32>, QuantError> {
    Ok(with_param_mut(model, &format!("{path}.weight"), |p| {
        let w = p.effective().into_owned();
        w.into_dimensionality::<Ix2>().map_err(CoreError::from)
    })?)
}

fn group_weights(
    model: &mut dyn Layer<f32>,
    g: &ScaleGroup,
) -> Result<Vec<Array2<f32>>, QuantError> {
    g.linears.iter().map(|l| weight_of(model, l)).collect()
}

fn bias_of(model: &mut dyn Layer<f32>, path: &str) -> Result<Option<Vec<f32>>, QuantError> {
    match with_param_mut(model, &format!("{path}.bias"), |p| {
        Ok(p.effective().iter().copied().collect::<Vec<f32>>())
    }) {
        Ok(b) => Ok(Some(b)),
        Err(CoreError::MissingParam { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn stats_for<'a>(
    stats: &'a BTreeMap<String, InputStats>,
    path: &str,
) -> Result<&'a InputStats, QuantError> {
    stats.get(path).ok_or_else(|| {
        CoreError::config(
            format!("calibration of `{path}`"),
            "no captured inputs for this layer",
        )
        .into()
    })
}

/// Quantizes every linear of `groups` in `model` with `method` at `quant` (SmoothQuant
/// always uses int8 per channel). AWQ and SmoothQuant first fold their scales into the
/// model's float weights (so `model` changes, computing the same function); the returned
/// layers are not swapped in (see [`swap_in`]).
///
/// # Errors
///
/// [`QuantError::UnsupportedBits`] and [`QuantError::GroupSize`] for the settings; missing
/// statistics or parameters; the errors of the methods (a singular Hessian).
pub fn quantize_linears(
    model: &mut dyn Layer<f32>,
    groups: &[ScaleGroup],
    stats: &BTreeMap<String, InputStats>,
    method: &Method,
    quant: WeightQuant,
) -> Result<Vec<QuantizedLinear>, QuantError> {
    let mut alphas: BTreeMap<String, Option<f32>> = BTreeMap::new();
    let mut explicit: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    // Every layer's scales (folded or explicit): its quantized input is `x / s`.
    let mut scales_of: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    // Scale search and folding first, group by group (each group's input is rescaled only
    // by its own fold, so the captured statistics stay valid).
    for g in groups {
        let s = match method {
            Method::Awq(cfg) => {
                let (st, ws) = (stats_for(stats, &g.linears[0])?, group_weights(model, g)?);
                let views: Vec<_> = ws.iter().map(|w| w.view()).collect();
                let a = awq_search(&g.linears[0], st, &views, quant, cfg.grid)?;
                for l in &g.linears {
                    alphas.insert(l.clone(), a.alpha);
                }
                a.scales
            }
            Method::SmoothQuant { alpha } => {
                let (st, ws) = (stats_for(stats, &g.linears[0])?, group_weights(model, g)?);
                let views: Vec<_> = ws.iter().map(|w| w.view()).collect();
                smoothquant_scales(st, &views, *alpha)?
            }
            Method::Rtn | Method::Gptq(_) => continue,
        };
        for l in &g.linears {
            scales_of.insert(l.clone(), s.clone());
        }
        if g.source == ScaleSource::Explicit {
            for l in &g.linears {
                explicit.insert(l.clone(), s.clone());
            }
        } else {
            fold_scales(model, &g.source, &g.linears, &s)?;
        }
    }
    let mut out = Vec::new();
    for l in groups.iter().flat_map(|g| &g.linears) {
        let mut w = weight_of(model, l)?;
        let input_scale = explicit.get(l).map(|s| {
            for mut row in w.rows_mut() {
                for (v, si) in row.iter_mut().zip(s) {
                    *v *= si;
                }
            }
            s.iter().map(|si| 1.0 / si).collect()
        });
        let mut clip_error = None;
        let weight = match method {
            Method::Rtn | Method::Awq(AwqConfig { clip: None, .. }) => {
                quantize_rtn(l, &w.view(), quant)?.to_qtensor()?
            }
            Method::Awq(AwqConfig {
                clip: Some(clip), ..
            }) => {
                let xtx = scaled_xtx(l, stats_for(stats, l)?, scales_of.get(l))?;
                let c = clip_search(l, &w.view(), &xtx, quant, *clip)?;
                clip_error = Some([c.error, c.rtn_error]);
                quantize_clipped(l, &w.view(), quant, &c.ratios)?.to_qtensor()?
            }
            Method::Gptq(cfg) => {
                let st = stats_for(stats, l)?;
                let h = st.hessian().ok_or_else(|| {
                    QuantError::from(CoreError::config(
                        format!("gptq `{l}`"),
                        "needs statistics captured with the Hessian",
                    ))
                })?;
                let cfg = GptqConfig { quant, ..*cfg };
                gptq_quantize(l, &w.view(), &h, &cfg)?.to_qtensor()?
            }
            Method::SmoothQuant { .. } => {
                let flat: Vec<f32> = w.iter().copied().collect();
                QTensor::quantize_slice(
                    &flat,
                    &[w.nrows(), w.ncols()],
                    IntScheme::int8_per_channel(),
                )
                .map_err(|e| e.at_path(l))?
            }
        };
        out.push(QuantizedLinear {
            path: l.clone(),
            weight,
            bias: bias_of(model, l)?,
            alpha: alphas.get(l).copied().flatten(),
            clip_error,
            input_scale,
        });
    }
    Ok(out)
}

/// `X^T X` of the inputs a scaled layer quantizes, `x / s`: `diag(1/s) X^T X diag(1/s)`.
fn scaled_xtx(
    path: &str,
    stats: &InputStats,
    s: Option<&Vec<f32>>,
) -> Result<Array2<f64>, QuantError> {
    let xtx = stats.xtx.as_ref().ok_or_else(|| {
        QuantError::from(CoreError::config(
            format!("awq `{path}`"),
            "needs statistics captured with the Hessian",
        ))
    })?;
    Ok(match s {
        Some(s) => Array2::from_shape_fn(xtx.dim(), |(i, j)| {
            xtx[[i, j]] / (f64::from(s[i]) * f64::from(s[j]))
        }),
        None => xtx.clone(),
    })
}

/// Replaces each quantized layer's linear in `model` by its inference layer
/// ([`quantized_layer`]).
///
/// # Errors
///
/// A path with no replaceable layer; the constructors' errors.
pub fn swap_in(model: &mut dyn Layer<f32>, layers: &[QuantizedLinear]) -> Result<(), QuantError> {
    for l in layers {
        replace_layer(model, &l.path, l.layer()?)?;
    }
    Ok(())
}
