//! Distillation students from a BERT teacher: DistilBERT-style layer selection copied
//! from the teacher's weights, and [`PooledBert`], a BERT model with pooling as a
//! [`SequenceEncoder`] that compress-distill's `SequenceDistiller` trains.

use compress_core::{
    CoreError, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut,
};
use compress_distill::{EncoderOutput, SequenceEncoder};
use compress_nn::layers::transformer::{cls_pool, mean_pool};
use compress_nn::{PaddingMask, PoolingKind};
use ndarray::{Array2, Array3, Axis, Ix3, s};
use rand::{SeedableRng, rngs::StdRng};

use crate::model::core;
use crate::{BertModel, Result};

/// Every `k`-th of `layers` layers, ending with the last: `k - 1, 2k - 1, ...`
/// (`every_kth_layer(6, 2) == [1, 3, 5]`, `every_kth_layer(6, 3) == [2, 5]`). Each kept
/// layer stands for the block of `k` teacher layers it ends.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] naming `k` when it is 0 or larger than `layers`.
pub fn every_kth_layer(layers: usize, k: usize) -> Result<Vec<usize>> {
    if k == 0 || k > layers {
        return Err(CoreError::config("k", format!("must be in 1..={layers}, got {k}")).into());
    }
    Ok((k - 1..layers).step_by(k).collect())
}

/// A student with the teacher's embeddings, pooler and the encoder layers `keep` (in that
/// order, renumbered `0..keep.len()`), weights copied by parameter name (DistilBERT's
/// initialisation). The teacher is not changed; parametrizations are not copied (the
/// student gets their effective values).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] naming `keep` when it is empty or names a layer the
/// teacher does not have.
pub fn truncated_student<F: Float>(teacher: &BertModel<F>, keep: &[usize]) -> Result<BertModel<F>> {
    let n = teacher.config.num_hidden_layers;
    if keep.is_empty() {
        return Err(CoreError::config("keep", "needs at least one layer").into());
    }
    if let Some(&i) = keep.iter().find(|&&i| i >= n) {
        return Err(CoreError::config("keep", format!("layer {i} >= {n} teacher layers")).into());
    }
    let mut cfg = teacher.config.clone();
    cfg.num_hidden_layers = keep.len();
    let mut student = BertModel::new(
        &cfg,
        teacher.pooler.is_some(),
        &mut StdRng::seed_from_u64(0),
    )?;
    let mut state = Vec::new();
    for (name, value) in teacher.state_dict() {
        match name.strip_prefix("encoder.layer.") {
            Some(rest) => {
                let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let Ok(idx) = idx.parse::<usize>() else {
                    continue;
                };
                for (j, _) in keep.iter().enumerate().filter(|&(_, &k)| k == idx) {
                    state.push((format!("encoder.layer.{j}.{tail}"), value.clone()));
                }
            }
            None => state.push((name, value)),
        }
    }
    student.load_state(&state)?;
    Ok(student)
}

/// What a training-mode [`PooledBert::encode`] keeps for backward.
#[derive(Debug, Clone)]
struct Trace {
    mask: PaddingMask,
    layers: Vec<usize>,
    shape: (usize, usize, usize),
}

/// A [`BertModel`] with sentence pooling (masked mean or CLS, not normalised) as a
/// [`SequenceEncoder`]: layer `i`'s hidden states are the output of encoder layer `i`.
///
/// With `train_embeddings = false` (the default of [`PooledBert::new`]) backward stops at
/// the encoder: the embedding tables get no gradient and stay as they are (they are most
/// of MiniLM's parameters, and a small corpus does not cover the vocabulary).
#[derive(Debug)]
pub struct PooledBert<F: Float> {
    /// The model.
    pub model: BertModel<F>,
    /// The pooling of the last hidden states.
    pub pooling: PoolingKind,
    /// Whether backward reaches the embeddings.
    pub train_embeddings: bool,
    trace: Option<Trace>,
}

impl<F: Float> PooledBert<F> {
    /// `model` with `pooling`, embeddings frozen.
    pub fn new(model: BertModel<F>, pooling: PoolingKind) -> Self {
        Self {
            model,
            pooling,
            train_embeddings: false,
            trace: None,
        }
    }
}

impl<F: Float> Module<F> for PooledBert<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        self.model.visit(path, v);
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        self.model.visit_mut(path, v)
    }
}

impl<F: Float> SequenceEncoder<F> for PooledBert<F> {
    fn num_layers(&self) -> usize {
        self.model.encoder.layers.len()
    }

    fn width(&self, _layer: usize) -> usize {
        self.model.hidden()
    }

    fn encode(
        &mut self,
        seqs: &[&[usize]],
        layers: &[usize],
        mode: Mode,
    ) -> compress_core::Result<EncoderOutput<F>> {
        self.trace = None;
        let n = self.num_layers();
        if let Some(&l) = layers.iter().find(|&&l| l >= n) {
            return Err(CoreError::config(
                "layers",
                format!("layer {l} >= {n} layers"),
            ));
        }
        if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
            return Err(CoreError::config(
                "sequences",
                format!("sequence {i} is empty"),
            ));
        }
        let (ids, mask) = crate::pad(seqs, self.model.config.pad_token_id);
        let mut x = self
            .model
            .embeddings
            .forward(&ids, None, mode)
            .map_err(core)?
            .into_dyn();
        self.model.encoder.set_padding_mask(Some(mask.clone()));
        let mut hidden: Vec<Option<Array3<F>>> = vec![None; layers.len()];
        for (i, layer) in self.model.encoder.layers.iter_mut().enumerate() {
            x = layer.forward(&x, mode)?;
            for (k, _) in layers.iter().enumerate().filter(|&(_, &l)| l == i) {
                hidden[k] = Some(x.clone().into_dimensionality::<Ix3>()?);
            }
        }
        let last = x.into_dimensionality::<Ix3>()?;
        let pooled = match self.pooling {
            PoolingKind::Mean => mean_pool(&last.view(), Some(&mask))?,
            PoolingKind::Cls => cls_pool(&last.view())?,
        };
        if mode == Mode::Train {
            self.trace = Some(Trace {
                mask: mask.clone(),
                layers: layers.to_vec(),
                shape: last.dim(),
            });
        }
        let hidden = hidden.into_iter().flatten().collect();
        Ok(EncoderOutput {
            pooled,
            hidden,
            mask,
        })
    }

    fn backward(
        &mut self,
        grad_pooled: &Array2<F>,
        grad_hidden: &[Option<Array3<F>>],
    ) -> compress_core::Result<()> {
        let trace = self.trace.take().ok_or_else(|| CoreError::InvalidState {
            layer: "PooledBert".into(),
            reason: "backward called without a preceding encode in Mode::Train".into(),
        })?;
        let (batch, seq, h) = trace.shape;
        if grad_pooled.dim() != (batch, h) {
            return Err(CoreError::shape(
                "pooled gradient",
                &[batch, h],
                grad_pooled.shape(),
            ));
        }
        if grad_hidden.len() != trace.layers.len() {
            return Err(CoreError::config(
                "grad_hidden",
                format!(
                    "{} gradients for {} hidden states",
                    grad_hidden.len(),
                    trace.layers.len()
                ),
            ));
        }
        if let Some(g) = grad_hidden
            .iter()
            .flatten()
            .find(|g| g.dim() != trace.shape)
        {
            return Err(CoreError::shape(
                "hidden-state gradient",
                &[batch, seq, h],
                g.shape(),
            ));
        }
        let mut g = Array3::<F>::zeros((batch, seq, h));
        match self.pooling {
            PoolingKind::Mean => {
                for b in 0..batch {
                    let count = trace.mask.count(b);
                    if count == 0 {
                        continue;
                    }
                    let row = grad_pooled.row(b).mapv(|v| v / F::lit(count as f64));
                    for (t, &valid) in trace.mask.row(b).iter().enumerate() {
                        if valid {
                            g.slice_mut(s![b, t, ..]).assign(&row);
                        }
                    }
                }
            }
            PoolingKind::Cls => g.index_axis_mut(Axis(1), 0).assign(grad_pooled),
        }
        let mut g = g.into_dyn();
        for (i, layer) in self.model.encoder.layers.iter_mut().enumerate().rev() {
            for (k, _) in trace.layers.iter().enumerate().filter(|&(_, &l)| l == i) {
                if let Some(extra) = &grad_hidden[k] {
                    g += &extra.view().into_dyn();
                }
            }
            g = layer.backward(&g)?;
        }
        if self.train_embeddings {
            let g = g.into_dimensionality::<Ix3>()?;
            self.model.embeddings.backward(&g).map_err(core)?;
        }
        Ok(())
    }
}
