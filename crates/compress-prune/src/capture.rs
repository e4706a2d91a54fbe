//! Statistics of the inputs of chosen layers of any model on calibration data.
//!
//! [`attach_capture`] swaps a [`CaptureLayer`] wrapper into the slot of each chosen layer
//! (any model that lists its children, see [`compress_core::surgery`]); the caller runs the
//! model on calibration data however it likes; [`detach_capture`] puts the original layers
//! back and returns one [`InputStats`] per layer. Memory is `O(in)` per layer, plus
//! `O(in^2)` for `X^T X` when asked, whatever the number of calibration tokens.

use std::collections::BTreeMap;

use compress_core::surgery::with_layer_mut;
use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut,
    Result as CoreResult,
};
use ndarray::{Array2, ArrayD, ArrayRef, IxDyn};

use crate::Result;

/// Sums over every input row (token) a layer saw: per-feature sums of squares and,
/// optionally, `X^T X`, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    /// Input features (the last axis of the layer's input).
    pub features: usize,
    /// Rows seen (every axis but the last counts as rows).
    pub tokens: u64,
    /// `sum_t x_tj^2` per feature `j`.
    pub sq_sum: Vec<f64>,
    /// `X^T X` `[features, features]`, when requested.
    pub xtx: Option<Array2<f64>>,
}

impl InputStats {
    /// Empty statistics; `xtx` is kept when `hessian`.
    pub fn new(features: usize, hessian: bool) -> Self {
        Self {
            features,
            tokens: 0,
            sq_sum: vec![0.0; features],
            xtx: hessian.then(|| Array2::zeros((features, features))),
        }
    }

    /// Adds the rows of `x` (any shape whose last axis has `features` entries).
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] for another feature count, [`CoreError::NonFinite`] for
    /// NaN or infinite inputs (naming `path`).
    pub fn observe<F: Float>(&mut self, x: &ArrayRef<F, IxDyn>, path: &str) -> CoreResult<()> {
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
        let x64 = Array2::from_shape_fn((rows, d), |(t, j)| xs[t * d + j].as_f64());
        for row in x64.rows() {
            for (s, &v) in self.sq_sum.iter_mut().zip(row) {
                *s += v * v;
            }
        }
        if let Some(h) = &mut self.xtx {
            ndarray::linalg::general_mat_mul(1.0, &x64.t(), &x64, 1.0, h);
        }
        self.tokens += rows as u64;
        Ok(())
    }

    /// `||X_j||_2` per feature (Wanda's activation norms).
    pub fn norms(&self) -> Vec<f64> {
        self.sq_sum.iter().map(|s| s.sqrt()).collect()
    }
}

/// A layer that records [`InputStats`] of its inputs and then runs the layer it wraps.
/// Transparent to parameter visits (same paths as the wrapped layer); it lists no children
/// while attached.
#[derive(Debug)]
pub struct CaptureLayer<F: Float> {
    inner: Option<Box<dyn Layer<F>>>,
    path: String,
    stats: InputStats,
}

impl<F: Float> CaptureLayer<F> {
    fn inner(&self) -> &dyn Layer<F> {
        self.inner
            .as_deref()
            .unwrap_or_else(|| unreachable!("the wrapped layer is taken only on detach"))
    }
    fn inner_mut(&mut self) -> &mut dyn Layer<F> {
        self.inner
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("the wrapped layer is taken only on detach"))
    }

    /// The statistics so far.
    pub fn stats(&self) -> &InputStats {
        &self.stats
    }
}

impl<F: Float> Module<F> for CaptureLayer<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        self.inner().visit(path, v);
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> CoreResult<()> {
        self.inner_mut().visit_mut(path, v)
    }
}

impl<F: Float> Layer<F> for CaptureLayer<F> {
    fn name(&self) -> &'static str {
        "CaptureLayer"
    }
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> CoreResult<ArrayD<F>> {
        self.stats.observe(x, &self.path)?;
        self.inner_mut().forward(x, mode)
    }
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> CoreResult<ArrayD<F>> {
        self.inner_mut().backward(grad)
    }
    fn cost(&self, input_shape: &[usize]) -> CoreResult<Cost> {
        self.inner().cost(input_shape)
    }
}

/// Wraps the layer at each of `paths` (each with `features` inputs) in a
/// [`CaptureLayer`]; `hessian` also accumulates `X^T X`. On error no wrapper stays.
///
/// # Errors
///
/// [`CoreError::MissingParam`] for a path with no layer; [`CoreError::InvalidState`] when a
/// layer is in a fixed slot (it cannot be wrapped).
pub fn attach_capture<F: Float>(
    model: &mut dyn Layer<F>,
    paths: &[(String, usize)],
    hessian: bool,
) -> Result<()> {
    for (i, (path, features)) in paths.iter().enumerate() {
        let res = with_layer_mut(model, path, |slot| {
            slot.map(|inner| {
                Box::new(CaptureLayer {
                    inner: Some(inner),
                    path: path.clone(),
                    stats: InputStats::new(*features, hessian),
                })
            })
        });
        if let Err(e) = res {
            let done: Vec<String> = paths[..i].iter().map(|(p, _)| p.clone()).collect();
            detach_paths(model, &done)?;
            return Err(e.into());
        }
    }
    Ok(())
}

/// Removes the wrappers at `paths` (put there by [`attach_capture`]) and returns their
/// statistics by path.
///
/// # Errors
///
/// [`CoreError::MissingParam`] when a path has no layer, [`CoreError::InvalidState`] when
/// it holds no capture wrapper.
pub fn detach_capture<F: Float>(
    model: &mut dyn Layer<F>,
    paths: &[String],
) -> Result<BTreeMap<String, InputStats>> {
    detach_paths(model, paths)
}

fn detach_paths<F: Float>(
    model: &mut dyn Layer<F>,
    paths: &[String],
) -> Result<BTreeMap<String, InputStats>> {
    let mut out = BTreeMap::new();
    for path in paths {
        let stats = with_layer_mut(model, path, |slot| {
            let cap =
                slot.downcast_mut::<CaptureLayer<F>>()
                    .ok_or_else(|| CoreError::InvalidState {
                        layer: path.clone(),
                        reason: "holds no capture wrapper".to_string(),
                    })?;
            let inner = cap.inner.take().unwrap_or_else(|| unreachable!("attached"));
            let stats = std::mem::replace(&mut cap.stats, InputStats::new(0, false));
            slot.replace(inner)?;
            Ok(stats)
        })?;
        out.insert(path.clone(), stats);
    }
    Ok(out)
}
