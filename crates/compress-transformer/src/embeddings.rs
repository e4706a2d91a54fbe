//! BERT's input embeddings: word + position + token type, then LayerNorm.

use compress_core::{
    CoreError, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut,
};
use compress_nn::{Embedding, LayerNorm};
use ndarray::{Array2, Array3, ArrayD, Ix2, IxDyn};
use rand::Rng;

use crate::{BertConfig, Result};

/// `LN(word[ids] + position[t] + token_type[type_ids])`, parameter paths as Hugging Face's
/// `BertEmbeddings`: `word_embeddings`, `position_embeddings`, `token_type_embeddings`,
/// `LayerNorm`. Dropout is not modelled (inference and distillation run without it).
#[derive(Debug, Clone)]
pub struct BertEmbeddings<F: Float> {
    /// `word_embeddings` `[vocab_size, hidden]`.
    pub word: Embedding<F>,
    /// `position_embeddings` `[max_position_embeddings, hidden]`.
    pub position: Embedding<F>,
    /// `token_type_embeddings` `[type_vocab_size, hidden]`.
    pub token_type: Embedding<F>,
    /// `LayerNorm`.
    pub norm: LayerNorm<F>,
    batch_seq: Option<(usize, usize)>,
}

impl<F: Float> BertEmbeddings<F> {
    /// Tables drawn from `N(0, initializer_range^2)`, LayerNorm at ones and zeros.
    pub fn new<R: Rng + ?Sized>(cfg: &BertConfig, rng: &mut R) -> Self {
        let (h, std) = (cfg.hidden_size, cfg.initializer_range);
        Self {
            word: Embedding::new(cfg.vocab_size, h, std, rng),
            position: Embedding::new(cfg.max_position_embeddings, h, std, rng),
            token_type: Embedding::new(cfg.type_vocab_size, h, std, rng),
            norm: LayerNorm::new(h, cfg.layer_norm_eps),
            batch_seq: None,
        }
    }

    /// Model width.
    pub fn hidden(&self) -> usize {
        self.word.dim()
    }

    /// Embeds `ids [batch, seq]` with token types `type_ids` (zeros when `None`):
    /// `[batch, seq, hidden]`.
    ///
    /// # Errors
    ///
    /// A [`CoreError::InvalidConfig`] naming the first token id (or type id) outside its
    /// table, and a shape error when `seq` exceeds the position table or `type_ids` does
    /// not match `ids`.
    pub fn forward(
        &mut self,
        ids: &Array2<usize>,
        type_ids: Option<&Array2<usize>>,
        mode: Mode,
    ) -> Result<Array3<F>> {
        let (batch, seq) = ids.dim();
        if seq > self.position.num_embeddings() {
            return Err(CoreError::config(
                "sequence length",
                format!(
                    "{seq} tokens exceed max_position_embeddings = {}",
                    self.position.num_embeddings()
                ),
            )
            .into());
        }
        let flat: Vec<usize> = ids.iter().copied().collect();
        let types: Vec<usize> = match type_ids {
            Some(t) if t.dim() != (batch, seq) => {
                return Err(CoreError::shape("token_type_ids", &[batch, seq], t.shape()).into());
            }
            Some(t) => t.iter().copied().collect(),
            None => vec![0; batch * seq],
        };
        let positions: Vec<usize> = (0..batch).flat_map(|_| 0..seq).collect();
        let mut e = self.word.forward_ids(&flat, mode)?;
        e += &self.position.forward_ids(&positions, mode)?;
        e += &self
            .token_type
            .forward_ids(&types, mode)
            .map_err(|e| relabel(e, "token type id"))?;
        let y = self.norm.forward_owned(e.into_dyn(), mode)?;
        self.batch_seq = (mode == Mode::Train).then_some((batch, seq));
        Ok(y.into_shape_with_order((batch, seq, self.hidden()))?)
    }

    /// Back-propagates `grad [batch, seq, hidden]` into the three tables and the LayerNorm.
    ///
    /// # Errors
    ///
    /// Without a training-mode forward, or for a gradient of the wrong shape.
    pub fn backward(&mut self, grad: &Array3<F>) -> Result<()> {
        let (batch, seq) = self
            .batch_seq
            .ok_or_else(|| CoreError::no_forward("BertEmbeddings"))?;
        let h = self.hidden();
        if grad.dim() != (batch, seq, h) {
            return Err(
                CoreError::shape("BertEmbeddings grad", &[batch, seq, h], grad.shape()).into(),
            );
        }
        let g: ArrayD<F> = grad
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[batch * seq, h]))?;
        let ge = self.norm.backward(&g)?.into_dimensionality::<Ix2>()?;
        self.word.backward_ids(&ge)?;
        self.position.backward_ids(&ge)?;
        self.token_type.backward_ids(&ge)?;
        Ok(())
    }
}

/// Renames the parameter of a token-id error.
fn relabel(e: CoreError, name: &str) -> CoreError {
    match e {
        CoreError::InvalidConfig { reason, .. } => CoreError::config(name, reason),
        other => other,
    }
}

impl<F: Float> Module<F> for BertEmbeddings<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("word_embeddings", |p| self.word.visit(p, v));
        path.scoped("position_embeddings", |p| self.position.visit(p, v));
        path.scoped("token_type_embeddings", |p| self.token_type.visit(p, v));
        path.scoped("LayerNorm", |p| self.norm.visit(p, v));
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        path.scoped("word_embeddings", |p| self.word.visit_mut(p, v))?;
        path.scoped("position_embeddings", |p| self.position.visit_mut(p, v))?;
        path.scoped("token_type_embeddings", |p| self.token_type.visit_mut(p, v))?;
        path.scoped("LayerNorm", |p| self.norm.visit_mut(p, v))
    }
}
