//! The eval-mode execution plan of an early-exit network: dense layers run by a
//! packing-free kernel on weights transposed once, everything else by its own `forward`.
//!
//! `compress_nn::Linear` multiplies by `W^T` through a general GEMM that packs (transposes)
//! the whole weight on every call. On a full batch that is a small overhead, but dynamic
//! inference calls the deep stages on the few samples still running and the heads on
//! narrow outputs, where packing dominates: a 128x128 layer on 3 rows spent ~7 us, the 64x10
//! head on 359 rows ran at a third of the stages' MAC rate. The plan keeps each `f32`
//! `Linear` (directly a stage or head, or inside a `Sequential`) as `W^T` padded to 16
//! columns and multiplies with [`crate::kernels::dense`], whose per-element arithmetic does
//! not depend on the batch, so the static forward, the profile and dynamic inference (all
//! of which use the plan in [`Mode::Eval`]) give bit-identical logits for a sample however
//! it is batched. Other element types, layers and CPUs without vector FMA use the layers'
//! own `forward`.

use compress_core::{CoreError, Float, Layer, Mode};
use compress_nn::{Linear, Sequential};
use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::kernels::{self, Path, padded};

/// How one layer runs in eval mode.
#[derive(Debug)]
pub(super) enum Op {
    /// Its own `forward(.., Mode::Eval)`.
    Layer,
    /// A `Linear` through the dense kernel.
    Dense(Dense),
    /// A `Sequential`: one op per child layer.
    Seq(Vec<Op>),
}

/// A `Linear<f32>` prepared for the dense kernel.
pub(super) struct Dense {
    k: usize,
    n: usize,
    /// `W^T`, `[k, padded(n)]`, zero padding.
    wt: Vec<f32>,
    /// Bias padded to `padded(n)`.
    bias: Option<Vec<f32>>,
    path: Path,
}

/// The ops of every stage and exit head.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) stages: Vec<Op>,
    pub(super) exits: Vec<Op>,
}

impl Plan {
    /// Prepares the plan of the given stages and heads (their current effective weights).
    pub(super) fn build<F: Float>(
        stages: &[Box<dyn Layer<F>>],
        exits: &[Box<dyn Layer<F>>],
    ) -> Self {
        let path = Path::best();
        let ops =
            |ls: &[Box<dyn Layer<F>>]| ls.iter().map(|l| Op::build(l.as_ref(), path)).collect();
        Self {
            stages: ops(stages),
            exits: ops(exits),
        }
    }
}

impl Op {
    fn build<F: Float>(layer: &dyn Layer<F>, path: Option<Path>) -> Self {
        let Some(path) = path else {
            return Self::Layer;
        };
        if let Some(l) = layer.as_any().downcast_ref::<Linear<F>>() {
            return Dense::new(l, path).map_or(Self::Layer, Self::Dense);
        }
        if let Some(s) = layer.as_any().downcast_ref::<Sequential<F>>() {
            let ops: Vec<Self> = s
                .layers()
                .iter()
                .map(|l| Self::build(l.as_ref(), Some(path)))
                .collect();
            if ops.iter().any(|o| !matches!(o, Self::Layer)) {
                return Self::Seq(ops);
            }
        }
        Self::Layer
    }

    /// Runs `layer` (the one this op was built from) on `x` in eval mode.
    pub(super) fn run<F: Float>(
        &self,
        layer: &mut dyn Layer<F>,
        x: &ArrayRef<F, IxDyn>,
    ) -> compress_core::Result<ArrayD<F>> {
        match self {
            Self::Layer => layer.forward(x, Mode::Eval),
            Self::Dense(d) => d.forward(x),
            Self::Seq(ops) => {
                let stale = || CoreError::InvalidState {
                    layer: "EarlyExitNet".into(),
                    reason: "the eval plan does not match a Sequential stage".into(),
                };
                let seq = layer
                    .as_any_mut()
                    .downcast_mut::<Sequential<F>>()
                    .ok_or_else(stale)?;
                let layers = seq.layers_mut();
                if layers.len() != ops.len() {
                    return Err(stale());
                }
                let mut h: Option<ArrayD<F>> = None;
                for (op, l) in ops.iter().zip(layers.iter_mut()) {
                    h = Some(op.run(l.as_mut(), h.as_deref().unwrap_or(x))?);
                }
                Ok(h.unwrap_or_else(|| x.to_owned()))
            }
        }
    }
}

impl std::fmt::Debug for Dense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dense")
            .field("in", &self.k)
            .field("out", &self.n)
            .field("bias", &self.bias.is_some())
            .field("path", &self.path)
            .finish()
    }
}

impl Dense {
    /// `None` unless `F` is `f32` and the weight is `[n, k]` with a `[n]` bias.
    fn new<F: Float>(l: &Linear<F>, path: Path) -> Option<Self> {
        if !kernels::is_f32::<F>() {
            return None;
        }
        let w = l.weight.effective();
        let &[n, k] = w.shape() else {
            return None;
        };
        if k == 0 {
            return None;
        }
        let np = padded(n);
        let mut wt = vec![0.0f32; k * np];
        for ((j, p), &v) in w.indexed_iter().map(|(ix, v)| ((ix[0], ix[1]), v)) {
            wt[p * np + j] = v.as_f64() as f32;
        }
        let bias = match &l.bias {
            None => None,
            Some(b) => {
                let b = b.effective();
                if b.shape() != [n] {
                    return None;
                }
                let mut v: Vec<f32> = b.iter().map(|&x| x.as_f64() as f32).collect();
                v.resize(np, 0.0);
                Some(v)
            }
        };
        Some(Self {
            k,
            n,
            wt,
            bias,
            path,
        })
    }

    fn forward<F: Float>(&self, x: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        if x.ndim() != 2 || x.shape()[1] != self.k {
            let m = x.shape().first().copied().unwrap_or(0);
            return Err(CoreError::shape("Linear input", &[m, self.k], x.shape()));
        }
        let m = x.shape()[0];
        let std = x.as_standard_layout();
        let mut y = vec![F::zero(); m * self.n];
        if m > 0 {
            let (Some(xs), Some(ys)) = (
                std.as_slice().and_then(kernels::as_f32),
                kernels::as_f32_mut(&mut y),
            ) else {
                return Err(CoreError::InvalidState {
                    layer: "EarlyExitNet".into(),
                    reason: "the dense kernel needs contiguous f32 inputs".into(),
                });
            };
            kernels::dense(
                self.path,
                xs,
                self.k,
                &self.wt,
                self.n,
                self.bias.as_deref(),
                ys,
            );
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&[m, self.n]), y)?)
    }
}
