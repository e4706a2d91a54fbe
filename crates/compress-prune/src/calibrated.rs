//! Calibrated pruning of the linear layers of any model: magnitude, Wanda or SparseGPT,
//! unstructured or N:M, with the calibration inputs captured while the caller's own code
//! runs the model (see [`compress_core::capture`]).

use std::collections::BTreeMap;
use std::error::Error;

use compress_core::capture::{Capture, InputStats};
use compress_core::surgery::{walk_layers, with_layer_mut};
use compress_core::{CoreError, Float, Layer, glob_match};
use compress_nn::Linear;
use ndarray::Array2;

use crate::sparsegpt::{SparseGptConfig, sparsegpt_prune};
use crate::wanda::{SparsityPattern, row_mask, wanda_prune};
use crate::{PruneError, Result};

/// The pruning criterion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibratedMethod {
    /// `|W_ij|` compared within each output row (no calibration run).
    Magnitude,
    /// Wanda: `|W_ij| * ||X_j||_2` within each output row; kept weights unchanged.
    Wanda,
    /// SparseGPT: OBS-style mask selection and weight updates from `H = X^T X`.
    SparseGpt(SparseGptConfig),
}

impl CalibratedMethod {
    /// Whether the method needs calibration inputs.
    pub fn needs_calibration(&self) -> bool {
        !matches!(self, Self::Magnitude)
    }
}

/// What to prune and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibratedPruneConfig {
    /// The criterion.
    pub method: CalibratedMethod,
    /// The sparsity pattern of every chosen layer.
    pub pattern: SparsityPattern,
    /// Globs over layer paths (`encoder.layer.*.attention.*`); empty: every [`Linear`].
    pub layers: Vec<String>,
    /// Sequential calibration: layers whose paths share their first `d` segments
    /// (`encoder.layer.0` for `d = 3`) form a stage; stages are pruned in order, each on
    /// inputs captured after the stages before it were pruned (as the SparseGPT and Wanda
    /// papers do block by block). `None`: one capture on the dense model for all layers.
    pub stage_depth: Option<usize>,
}

impl CalibratedPruneConfig {
    /// `method` at `pattern` on every linear layer, one capture.
    pub fn new(method: CalibratedMethod, pattern: SparsityPattern) -> Self {
        Self {
            method,
            pattern,
            layers: Vec::new(),
            stage_depth: None,
        }
    }
}

/// One calibration stage, as passed to the caller's run function.
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// Index of this stage.
    pub index: usize,
    /// Number of stages.
    pub count: usize,
    /// Paths of the layers captured in this stage.
    pub layers: &'a [String],
}

/// What was done to one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPruneReport {
    /// Layer path.
    pub path: String,
    /// Weight shape `[out, in]`.
    pub shape: [usize; 2],
    /// Zero weights after pruning.
    pub zeros: usize,
    /// Calibration rows (tokens) the decision used (0 for magnitude).
    pub tokens: u64,
    /// `||X (W - W')^T||^2 / ||X W^T||^2` on the calibration inputs, when `X^T X` was
    /// captured (SparseGPT).
    pub rel_output_error: Option<f64>,
}

/// The caller's calibration run: runs the model (with capture wrappers in place) on the
/// calibration data.
pub type CalibrationRun<'r, F> = dyn FnMut(&mut dyn Layer<F>, Stage<'_>) -> std::result::Result<(), Box<dyn Error + Send + Sync>>
    + 'r;

/// The chosen linear layers: path and `[out, in]`.
fn chosen_linears<F: Float>(model: &dyn Layer<F>, globs: &[String]) -> Vec<(String, [usize; 2])> {
    let mut out = Vec::new();
    walk_layers(model, &mut |path, l| {
        let p = path.to_string();
        if let Some(lin) = l.as_any().downcast_ref::<Linear<F>>()
            && (globs.is_empty() || globs.iter().any(|g| glob_match(g, &p)))
        {
            out.push((p, [lin.out_features(), lin.in_features()]));
        }
    });
    out
}

/// Runs `f` on the [`Linear`] at `path`; [`CoreError::InvalidState`] when that layer is no
/// longer one.
fn with_linear<F: Float, R>(
    model: &mut dyn Layer<F>,
    path: &str,
    f: impl FnOnce(&mut Linear<F>) -> compress_core::Result<R>,
) -> Result<R> {
    with_layer_mut(model, path, |slot| {
        let lin = slot
            .downcast_mut::<Linear<F>>()
            .ok_or_else(|| CoreError::InvalidState {
                layer: path.to_string(),
                reason: "is no longer a Linear".to_string(),
            })?;
        f(lin)
    })
    .map_err(Into::into)
}

fn effective_weight<F: Float>(model: &mut dyn Layer<F>, path: &str) -> Result<Array2<F>> {
    with_linear(model, path, |lin| Ok(lin.weight.effective2()?.into_owned()))
}

fn set_weight<F: Float>(model: &mut dyn Layer<F>, path: &str, w: Array2<F>) -> Result<()> {
    with_linear(model, path, |lin| lin.weight.set_value(w.into_dyn()))
}

/// `tr(D H D^T) / tr(W H W^T)` with `D = W - W'`.
fn rel_error<F: Float>(old: &Array2<F>, new: &Array2<F>, h: &Array2<f64>) -> f64 {
    let d = Array2::from_shape_fn(old.dim(), |(i, j)| {
        old[[i, j]].as_f64() - new[[i, j]].as_f64()
    });
    let w = old.mapv(|v| v.as_f64());
    let quad = |a: &Array2<f64>| (a.dot(h) * a).sum();
    let base = quad(&w);
    if base > 0.0 { quad(&d) / base } else { 0.0 }
}

/// Prunes the chosen [`Linear`] layers of `model` (any model that lists its children) with
/// `cfg`. For Wanda and SparseGPT, `run` is called once per stage with capture wrappers in
/// place and must run the model on the calibration data (it is not called for magnitude).
/// Weights are written as stored values (existing parametrizations stay). On error every
/// layer already pruned gets its weight back and no wrapper stays in the model.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] when no layer matches; the pattern and method errors of
/// [`wanda_prune`] / [`sparsegpt_prune`] naming the layer; [`PruneError::Calibration`]
/// with `run`'s error; [`PruneError::NoCalibration`] when a layer saw no input.
pub fn prune_calibrated<F: Float>(
    model: &mut dyn Layer<F>,
    cfg: &CalibratedPruneConfig,
    run: &mut CalibrationRun<'_, F>,
) -> Result<Vec<LayerPruneReport>> {
    let layers = chosen_linears(&*model, &cfg.layers);
    if layers.is_empty() {
        return Err(CoreError::config(
            "layers",
            format!("no Linear layer matches {:?}", cfg.layers),
        )
        .into());
    }
    for (path, [o, i]) in &layers {
        cfg.pattern.check(&format!("{path}.weight"), *o, *i)?;
    }
    let mut stages: Vec<(String, Vec<(String, usize)>)> = Vec::new();
    for (path, [_, i]) in &layers {
        let key = match cfg.stage_depth {
            Some(d) => path.split('.').take(d).collect::<Vec<_>>().join("."),
            None => String::new(),
        };
        match stages.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push((path.clone(), *i)),
            None => stages.push((key, vec![(path.clone(), *i)])),
        }
    }
    let mut originals: Vec<(String, Array2<F>)> = Vec::new();
    let mut reports = Vec::new();
    let count = stages.len();
    for (index, (_, stage)) in stages.iter().enumerate() {
        let res = prune_stage(model, cfg, run, stage, index, count, &mut originals);
        match res {
            Ok(mut r) => reports.append(&mut r),
            Err(e) => {
                for (path, w) in originals.into_iter().rev() {
                    set_weight(model, &path, w)?;
                }
                return Err(e);
            }
        }
    }
    Ok(reports)
}

fn prune_stage<F: Float>(
    model: &mut dyn Layer<F>,
    cfg: &CalibratedPruneConfig,
    run: &mut CalibrationRun<'_, F>,
    stage: &[(String, usize)],
    index: usize,
    count: usize,
    originals: &mut Vec<(String, Array2<F>)>,
) -> Result<Vec<LayerPruneReport>> {
    let paths: Vec<String> = stage.iter().map(|(p, _)| p.clone()).collect();
    let mut stats: BTreeMap<String, InputStats> = BTreeMap::new();
    if cfg.method.needs_calibration() {
        let hessian = matches!(cfg.method, CalibratedMethod::SparseGpt(_));
        let capture = Capture::attach_paths(model, stage, hessian)?;
        let ran = run(
            model,
            Stage {
                index,
                count,
                layers: &paths,
            },
        );
        stats = capture.detach(model)?;
        ran.map_err(|source| PruneError::Calibration { source })?;
    }
    let mut reports = Vec::new();
    for path in &paths {
        let old = effective_weight(model, path)?;
        let mut w = old.clone();
        let wpath = format!("{path}.weight");
        let st = stats.get(path);
        if cfg.method.needs_calibration() && st.is_none_or(|s| s.tokens == 0) {
            return Err(PruneError::NoCalibration { path: path.clone() });
        }
        match (&cfg.method, st) {
            (CalibratedMethod::Wanda, Some(s)) => {
                wanda_prune(&mut w, &s.norms(), cfg.pattern, &wpath)?;
            }
            (CalibratedMethod::SparseGpt(sc), Some(s)) => {
                let h = s
                    .xtx
                    .as_ref()
                    .ok_or_else(|| PruneError::NoCalibration { path: path.clone() })?;
                sparsegpt_prune(&mut w, h, cfg.pattern, sc, &wpath)?;
            }
            _ => {
                let scores = w.mapv(|v| v.as_f64().abs());
                let keep = row_mask(&scores, cfg.pattern, &wpath)?;
                ndarray::Zip::from(&mut w).and(&keep).for_each(|v, &k| {
                    if !k {
                        *v = F::zero();
                    }
                });
            }
        }
        let rel = st
            .and_then(|s| s.xtx.as_ref())
            .map(|h| rel_error(&old, &w, h));
        reports.push(LayerPruneReport {
            path: path.clone(),
            shape: [w.nrows(), w.ncols()],
            zeros: w.iter().filter(|v| **v == F::zero()).count(),
            tokens: st.map_or(0, |s| s.tokens),
            rel_output_error: rel,
        });
        set_weight(model, path, w)?;
        originals.push((path.clone(), old));
    }
    Ok(reports)
}
