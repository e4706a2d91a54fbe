//! Capturing the inputs of chosen layers of any model while it runs on calibration data.
//!
//! [`Capture::attach`] swaps a [`CaptureLayer`] wrapper into every selected slot of a model
//! (any [`Layer`] tree that lists its children, see [`compress_core::surgery`]); the caller
//! then runs the model however it likes (a sentence encoder over calibration sentences, a
//! `Sequential` over a batch); [`Capture::detach`] puts the original layers back and returns
//! one [`InputStats`] per layer. The statistics are streamed: memory is `O(in^2)` per layer
//! for the Hessian and `O(in)` for the rest, whatever the number of calibration tokens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use compress_core::surgery::walk_layers_mut;
use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result,
    Walk, glob_match,
};
use ndarray::{Array2, ArrayD, ArrayRef, ArrayView2, IxDyn};

/// What is accumulated about a layer's inputs (the last axis is the feature axis; every
/// other axis counts as tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    /// Feature count (the layer's `in_features`).
    pub features: usize,
    /// Rows (tokens) seen.
    pub tokens: u64,
    /// `X^T X` summed over every row seen, in f64 (`[features, features]`), when requested.
    pub xtx: Option<Array2<f64>>,
    /// Sum of `|x_j|` per feature.
    pub abs_sum: Vec<f64>,
    /// Largest `|x_j|` per feature.
    pub abs_max: Vec<f32>,
}

impl InputStats {
    /// Empty statistics of `features` features, with the Hessian when `hessian`.
    pub fn new(features: usize, hessian: bool) -> Self {
        Self {
            features,
            tokens: 0,
            xtx: hessian.then(|| Array2::zeros((features, features))),
            abs_sum: vec![0.0; features],
            abs_max: vec![0.0; features],
        }
    }

    /// Adds the rows of `x` (`[rows, features]`).
    ///
    /// # Errors
    ///
    /// A shape mismatch when `x` has another feature count; [`CoreError::NonFinite`] for a
    /// NaN or infinite input.
    pub fn observe(&mut self, x: &ArrayView2<'_, f32>) -> Result<()> {
        if x.ncols() != self.features {
            return Err(CoreError::shape(
                "captured input",
                &[self.features],
                &[x.ncols()],
            ));
        }
        for row in x.rows() {
            for (j, &v) in row.iter().enumerate() {
                if !v.is_finite() {
                    return Err(CoreError::NonFinite {
                        path: "captured input".into(),
                        index: j,
                        value: f64::from(v),
                    });
                }
                let a = v.abs();
                self.abs_sum[j] += f64::from(a);
                if a > self.abs_max[j] {
                    self.abs_max[j] = a;
                }
            }
        }
        if let Some(h) = &mut self.xtx {
            let x64 = x.mapv(f64::from);
            ndarray::linalg::general_mat_mul(1.0, &x64.t(), &x64, 1.0, h);
        }
        self.tokens += x.nrows() as u64;
        Ok(())
    }

    /// Mean `|x_j|` per feature (zeros before any token).
    pub fn abs_mean(&self) -> Vec<f64> {
        let n = self.tokens.max(1) as f64;
        self.abs_sum.iter().map(|s| s / n).collect()
    }

    /// GPTQ's Hessian `H = 2 X^T X / tokens` (the mean over tokens, so the dampening is
    /// relative to the data's scale), if the Hessian was accumulated.
    pub fn hessian(&self) -> Option<Array2<f64>> {
        let n = self.tokens.max(1) as f64;
        self.xtx.as_ref().map(|h| h.mapv(|v| 2.0 * v / n))
    }
}

/// Wraps a layer and adds every input it sees to shared [`InputStats`]. Parameter paths and
/// outputs are unchanged (the wrapper adds no path segment and calls the layer as it is).
#[derive(Debug)]
pub struct CaptureLayer<F: Float> {
    inner: Option<Box<dyn Layer<F>>>,
    stats: Arc<Mutex<InputStats>>,
}

impl<F: Float> CaptureLayer<F> {
    /// Wraps `inner`, accumulating into `stats`.
    pub fn new(inner: Box<dyn Layer<F>>, stats: Arc<Mutex<InputStats>>) -> Self {
        Self {
            inner: Some(inner),
            stats,
        }
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
        let features = x.shape().last().copied().unwrap_or(0);
        let rows = x.len().checked_div(features).unwrap_or(0);
        let flat: Vec<f32> = x.iter().map(|v| v.as_f64() as f32).collect();
        let view = ArrayView2::from_shape((rows, features), &flat).map_err(CoreError::from)?;
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(&view)?;
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
/// and whether to accumulate the Hessian.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureSpec {
    /// Layer path globs (a plain path matches itself).
    pub patterns: Vec<String>,
    /// Accumulate `X^T X` (GPTQ, AWQ's error search); without it only the per-feature
    /// statistics are kept (SmoothQuant, Wanda).
    pub hessian: bool,
}

impl CaptureSpec {
    /// Captures the layers matching any of `patterns`, with the Hessian.
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
pub struct Capture {
    stats: Vec<(String, Arc<Mutex<InputStats>>)>,
}

/// The input feature count of a layer, from its cost on the parameters' own shapes: the
/// second axis of its `weight` (a `Linear`'s `[out, in]`).
fn in_features<F: Float>(layer: &dyn Layer<F>) -> Option<usize> {
    let mut out = None;
    layer.visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &compress_core::Param<F>| {
            if out.is_none() && p.to_string() == "weight" && param.shape().len() == 2 {
                out = Some(param.shape()[1]);
            }
        },
    );
    out
}

impl Capture {
    /// Wraps every replaceable layer of `model` whose path `spec` selects and that has a 2-D
    /// `weight` (its input width).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the patterns when nothing matched, or when a
    /// matching layer is stored as a concrete field (it cannot be wrapped).
    pub fn attach<F: Float>(model: &mut dyn Layer<F>, spec: &CaptureSpec) -> Result<Self> {
        let mut stats = Vec::new();
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
            let s = Arc::new(Mutex::new(InputStats::new(k, spec.hessian)));
            let shared = Arc::clone(&s);
            slot.map(|inner| Box::new(CaptureLayer::new(inner, shared)))?;
            stats.push((p, s));
            Ok(Walk::Skip)
        });
        let capture = Self { stats };
        if let Err(e) = res {
            capture.detach(model)?;
            return Err(e);
        }
        if capture.stats.is_empty() {
            return Err(CoreError::config(
                "capture patterns",
                format!("no linear layer matches {:?}", spec.patterns),
            ));
        }
        Ok(capture)
    }

    /// Paths of the wrapped layers, in walk order.
    pub fn paths(&self) -> Vec<&str> {
        self.stats.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// Removes the wrappers (the model is as before [`Capture::attach`]) and returns the
    /// statistics by layer path.
    ///
    /// # Errors
    ///
    /// A walk error of the model (none for the layers of this workspace).
    pub fn detach<F: Float>(
        self,
        model: &mut dyn Layer<F>,
    ) -> Result<BTreeMap<String, InputStats>> {
        walk_layers_mut(model, &mut |_, slot| {
            let Some(cap) = slot.downcast_mut::<CaptureLayer<F>>() else {
                return Ok(Walk::Descend);
            };
            let inner = cap.inner.take().ok_or_else(taken)?;
            slot.replace(inner)?;
            Ok(Walk::Skip)
        })?;
        Ok(self
            .stats
            .into_iter()
            .map(|(p, s)| {
                let s = Arc::try_unwrap(s).map_or_else(
                    |arc| arc.lock().unwrap_or_else(PoisonError::into_inner).clone(),
                    |m| m.into_inner().unwrap_or_else(PoisonError::into_inner),
                );
                (p, s)
            })
            .collect())
    }
}

/// Attaches a [`Capture`], runs `run` on the model, and detaches it again (also when `run`
/// fails): the statistics of every selected layer's inputs by layer path.
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
