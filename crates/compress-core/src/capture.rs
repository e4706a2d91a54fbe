//! Statistics of the inputs of chosen layers of any model, streamed while it runs on
//! calibration data.
//!
//! [`Capture::attach`] (layers chosen by path globs) or [`Capture::attach_paths`] (layers
//! named one by one) swaps a [`CaptureLayer`] wrapper into each chosen slot of a model (any
//! [`Layer`] tree that lists its children, see [`crate::surgery`]); the caller then runs the
//! model however it likes (a sentence encoder over calibration sentences, a `Sequential` over
//! a batch); [`Capture::detach`] puts the original layers back and returns one [`InputStats`]
//! per layer. Memory is `O(in)` per layer, plus `O(in^2)` for `X^T X` when asked, whatever
//! the number of calibration tokens.
//!
//! The calibrated techniques read what they need from the same statistics: GPTQ and
//! SparseGPT the Hessian ([`InputStats::hessian`], [`InputStats::xtx`]), AWQ and SmoothQuant
//! the per-channel `|x|` ([`InputStats::abs_mean`], [`InputStats::abs_max`]), Wanda the
//! per-channel norms ([`InputStats::norms`]).
//!
//! ```
//! use compress_core::capture::{CaptureSpec, InputStats, capture_inputs};
//! use compress_core::{Layer, Mode};
//! use ndarray::{Array2, ArrayD};
//!
//! /// GPTQ's Hessians of the inputs of `fc1` and `fc2` on the batch `x`.
//! pub fn hessians<M: Layer<f32>>(
//!     model: &mut M,
//!     x: &ArrayD<f32>,
//! ) -> compress_core::Result<Vec<Option<Array2<f64>>>> {
//!     let stats = capture_inputs(model, &CaptureSpec::new(["fc1", "fc2"]), |m| {
//!         m.forward(x, Mode::Eval).map(|_| ())
//!     })?;
//!     Ok(stats.values().map(InputStats::hessian).collect())
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD, ArrayRef, Dimension, IxDyn};

use crate::surgery::{walk_layers_mut, with_layer_mut};
use crate::{
    CoreError, Cost, Float, Layer, Mode, Module, Param, ParamPath, ParamVisitor, ParamVisitorMut,
    Result, Walk, glob_match,
};

/// Sums over every input row (token) a layer saw, in `f64`: `|x|` and `x^2` per feature,
/// the largest `|x|` per feature and, when asked, `X^T X`. The last axis of an input is the
/// feature axis; every other axis counts as rows.
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    /// Feature count (the layer's `in_features`).
    pub features: usize,
    /// Rows (tokens) seen.
    pub tokens: u64,
    /// `X^T X` summed over every row seen (`[features, features]`), when requested.
    pub xtx: Option<Array2<f64>>,
    /// `sum_t |x_tj|` per feature `j`.
    pub abs_sum: Vec<f64>,
    /// `max_t |x_tj|` per feature `j`.
    pub abs_max: Vec<f32>,
    /// `sum_t x_tj^2` per feature `j`.
    pub sq_sum: Vec<f64>,
}

impl InputStats {
    /// Empty statistics of `features` features; `X^T X` is kept when `hessian`.
    pub fn new(features: usize, hessian: bool) -> Self {
        Self {
            features,
            tokens: 0,
            xtx: hessian.then(|| Array2::zeros((features, features))),
            abs_sum: vec![0.0; features],
            abs_max: vec![0.0; features],
            sq_sum: vec![0.0; features],
        }
    }

    /// Adds the rows of `x` (any shape whose last axis has `features` entries); `path` names
    /// the layer in errors.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] for another feature count, [`CoreError::NonFinite`] for
    /// a NaN or infinite input (with its flat index); the statistics are then unchanged.
    pub fn observe<F: Float, D: Dimension>(
        &mut self,
        x: &ArrayRef<F, D>,
        path: &str,
    ) -> Result<()> {
        let d = self.features;
        if x.shape().last() != Some(&d) {
            return Err(CoreError::shape(format!("{path} input"), &[d], x.shape()));
        }
        let x = x.as_standard_layout();
        let xs = x
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout"));
        if let Some(index) = xs.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::NonFinite {
                path: format!("{path} input"),
                index,
                value: xs[index].as_f64(),
            });
        }
        let rows = xs.len().checked_div(d).unwrap_or(0);
        for row in xs.chunks_exact(d.max(1)) {
            for (j, v) in row.iter().enumerate() {
                let v = v.as_f64();
                let a = v.abs();
                self.abs_sum[j] += a;
                self.sq_sum[j] += v * v;
                let a32 = a as f32;
                if a32 > self.abs_max[j] {
                    self.abs_max[j] = a32;
                }
            }
        }
        if let Some(h) = &mut self.xtx {
            let x64 = Array2::from_shape_fn((rows, d), |(t, j)| xs[t * d + j].as_f64());
            ndarray::linalg::general_mat_mul(1.0, &x64.t(), &x64, 1.0, h);
        }
        self.tokens += rows as u64;
        Ok(())
    }

    /// Mean `|x_j|` per feature (zeros before any row).
    pub fn abs_mean(&self) -> Vec<f64> {
        let n = self.tokens.max(1) as f64;
        self.abs_sum.iter().map(|s| s / n).collect()
    }

    /// `||X_j||_2` per feature (Wanda's activation norms).
    pub fn norms(&self) -> Vec<f64> {
        self.sq_sum.iter().map(|s| s.sqrt()).collect()
    }

    /// GPTQ's Hessian `H = 2 X^T X / tokens` (the mean over rows, so a dampening is relative
    /// to the data's scale), if `X^T X` was accumulated.
    pub fn hessian(&self) -> Option<Array2<f64>> {
        let n = self.tokens.max(1) as f64;
        self.xtx.as_ref().map(|h| h.mapv(|v| 2.0 * v / n))
    }
}

/// A layer that adds every input it sees to its [`InputStats`] and then runs the layer it
/// wraps. Parameter paths and outputs are unchanged (the wrapper adds no path segment); it
/// lists no children while attached.
#[derive(Debug)]
pub struct CaptureLayer<F: Float> {
    inner: Option<Box<dyn Layer<F>>>,
    path: String,
    stats: InputStats,
}

impl<F: Float> CaptureLayer<F> {
    /// Wraps `inner` (the layer at `path`, named in errors), accumulating into `stats`.
    pub fn new(inner: Box<dyn Layer<F>>, path: impl Into<String>, stats: InputStats) -> Self {
        Self {
            inner: Some(inner),
            path: path.into(),
            stats,
        }
    }

    /// The statistics so far.
    pub fn stats(&self) -> &InputStats {
        &self.stats
    }

    /// The wrapped layer and the statistics; the wrapper is left empty (its layer methods
    /// then fail with [`CoreError::InvalidState`]).
    fn take(&mut self) -> Result<(Box<dyn Layer<F>>, InputStats)> {
        let inner = self.inner.take().ok_or_else(taken)?;
        let stats = std::mem::replace(&mut self.stats, InputStats::new(0, false));
        Ok((inner, stats))
    }

    fn inner(&self) -> Result<&dyn Layer<F>> {
        self.inner.as_deref().ok_or_else(taken)
    }

    fn inner_mut(&mut self) -> Result<&mut Box<dyn Layer<F>>> {
        self.inner.as_mut().ok_or_else(taken)
    }
}

fn taken() -> CoreError {
    CoreError::InvalidState {
        layer: "CaptureLayer".into(),
        reason: "its layer was already detached".into(),
    }
}

impl<F: Float> Module<F> for CaptureLayer<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        if let Some(l) = &self.inner {
            l.visit(path, v);
        }
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        self.inner_mut()?.visit_mut(path, v)
    }
}

impl<F: Float> Layer<F> for CaptureLayer<F> {
    fn name(&self) -> &'static str {
        "CaptureLayer"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        self.stats.observe(x, &self.path)?;
        self.inner_mut()?.forward(x, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        self.inner_mut()?.backward(grad)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.inner()?.cost(input_shape)
    }
}

/// Which layers to capture: dotted layer paths or globs (`encoder.layer.*.attention.self.*`),
/// and whether to accumulate `X^T X`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSpec {
    /// Layer path globs (a plain path matches itself).
    pub patterns: Vec<String>,
    /// Accumulate `X^T X` (GPTQ, SparseGPT, AWQ's error search); without it only the
    /// per-feature statistics are kept (SmoothQuant, Wanda).
    pub hessian: bool,
}

impl CaptureSpec {
    /// Captures the layers matching any of `patterns`, with `X^T X`.
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            patterns: patterns.into_iter().map(Into::into).collect(),
            hessian: true,
        }
    }

    fn selects(&self, path: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, path))
    }
}

/// The capture wrappers attached to a model, by layer path (see the module docs).
#[derive(Debug)]
#[must_use = "detach the capture to restore the model and read the statistics"]
pub struct Capture {
    paths: Vec<String>,
}

/// The input feature count of a layer: the second axis of its 2-D `weight` (a `Linear`'s
/// `[out, in]`).
fn in_features<F: Float>(layer: &dyn Layer<F>) -> Option<usize> {
    let mut out = None;
    layer.visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &Param<F>| {
            if out.is_none() && p.to_string() == "weight" && param.shape().len() == 2 {
                out = Some(param.shape()[1]);
            }
        },
    );
    out
}

impl Capture {
    /// Wraps every replaceable layer of `model` whose path `spec` selects and that has a 2-D
    /// `weight` (its input width); the walk does not enter a wrapped layer.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the patterns when nothing matched, or when a
    /// matching layer is stored as a concrete field (it cannot be wrapped). On error no
    /// wrapper stays.
    pub fn attach<F: Float>(model: &mut dyn Layer<F>, spec: &CaptureSpec) -> Result<Self> {
        let mut capture = Self { paths: Vec::new() };
        let res = walk_layers_mut(model, &mut |path, slot| {
            let p = path.to_string();
            if !spec.selects(&p) {
                return Ok(Walk::Descend);
            }
            let Some(k) = in_features(slot.layer()) else {
                return Ok(Walk::Descend);
            };
            if !slot.is_replaceable() {
                return Err(CoreError::config(
                    format!("capture `{p}`"),
                    "the layer is a concrete field and cannot be wrapped",
                ));
            }
            let stats = InputStats::new(k, spec.hessian);
            slot.map(|inner| Box::new(CaptureLayer::new(inner, p.clone(), stats)))?;
            capture.paths.push(p);
            Ok(Walk::Skip)
        });
        if let Err(e) = res {
            capture.detach(model)?;
            return Err(e);
        }
        if capture.paths.is_empty() {
            return Err(CoreError::config(
                "capture patterns",
                format!("no linear layer matches {:?}", spec.patterns),
            ));
        }
        Ok(capture)
    }

    /// Wraps the layer at each of `paths` (each with the given input feature count);
    /// `hessian` also accumulates `X^T X`.
    ///
    /// # Errors
    ///
    /// [`CoreError::MissingParam`] for a path with no layer, [`CoreError::InvalidState`]
    /// when a layer is in a fixed slot (it cannot be wrapped). On error no wrapper stays.
    pub fn attach_paths<F: Float>(
        model: &mut dyn Layer<F>,
        paths: &[(String, usize)],
        hessian: bool,
    ) -> Result<Self> {
        let mut capture = Self { paths: Vec::new() };
        for (path, features) in paths {
            let res = with_layer_mut(model, path, |slot| {
                let stats = InputStats::new(*features, hessian);
                slot.map(|inner| Box::new(CaptureLayer::new(inner, path.clone(), stats)))
            });
            if let Err(e) = res {
                capture.detach(model)?;
                return Err(e);
            }
            capture.paths.push(path.clone());
        }
        Ok(capture)
    }

    /// Paths of the wrapped layers, in the order they were wrapped.
    pub fn paths(&self) -> Vec<&str> {
        self.paths.iter().map(String::as_str).collect()
    }

    /// Removes the wrappers (the model is as before the attach) and returns the statistics
    /// by layer path.
    ///
    /// # Errors
    ///
    /// [`CoreError::MissingParam`] when a wrapped path has no layer any more,
    /// [`CoreError::InvalidState`] when it holds no capture wrapper (the model was changed
    /// while the capture was attached).
    pub fn detach<F: Float>(
        self,
        model: &mut dyn Layer<F>,
    ) -> Result<BTreeMap<String, InputStats>> {
        let mut out = BTreeMap::new();
        for path in self.paths {
            let stats = with_layer_mut(model, &path, |slot| {
                let cap = slot.downcast_mut::<CaptureLayer<F>>().ok_or_else(|| {
                    CoreError::InvalidState {
                        layer: path.clone(),
                        reason: "holds no capture wrapper".to_string(),
                    }
                })?;
                let (inner, stats) = cap.take()?;
                slot.replace(inner)?;
                Ok(stats)
            })?;
            out.insert(path, stats);
        }
        Ok(out)
    }
}

/// Attaches a [`Capture`] by `spec`, runs `run` on the model, and detaches it again (also
/// when `run` fails): the statistics of every selected layer's inputs by layer path.
///
/// # Errors
///
/// As [`Capture::attach`]; the first error of `run`.
pub fn capture_inputs<F: Float, M: Layer<F>>(
    model: &mut M,
    spec: &CaptureSpec,
    run: impl FnOnce(&mut M) -> Result<()>,
) -> Result<BTreeMap<String, InputStats>> {
    let cap = Capture::attach(model, spec)?;
    let res = run(model);
    let stats = cap.detach(model)?;
    res.map(|()| stats)
}
