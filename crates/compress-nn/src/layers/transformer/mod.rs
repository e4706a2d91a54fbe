//! Transformer layers: [`Embedding`], [`LayerNorm`], [`Gelu`], [`MultiHeadAttention`],
//! [`TransformerEncoderLayer`], [`TransformerEncoder`] and [`Pooling`].
//!
//! # How padding masks flow
//!
//! [`Layer::forward`](compress_core::Layer::forward) takes one array, so the hidden states
//! `[batch, seq, hidden]` are the layer input and the padding mask rides beside them as
//! layer state: [`TransformerEncoder::set_padding_mask`] (or the same method on one
//! [`TransformerEncoderLayer`], [`MultiHeadAttention`] or [`Pooling`]) stores a
//! [`PaddingMask`] `[batch, seq]` that every following `forward` uses, until it is
//! replaced or cleared. A forward whose input does not match the mask's `[batch, seq]` is
//! a shape error, so a stale mask cannot be applied silently. Model types that start from
//! token ids (the BERT model of `compress-transformer`) set the mask from their
//! `forward(ids, mask)` arguments, so their users never touch it.
//!
//! Every projection is an ordinary [`Linear`](crate::Linear) over all `batch * seq` tokens
//! at once, reached through [`Module`](compress_core::Module) under Hugging Face's BERT
//! parameter names, so pruning, quantization, clustering and low-rank factorisation apply
//! to them as to any other `Linear`.

mod attention;
mod embedding;
mod encoder;
mod gelu;
mod layer_norm;
mod pooling;
mod vmath;

use std::sync::Arc;

pub use attention::MultiHeadAttention;
pub use embedding::Embedding;
pub use encoder::{TransformerConfig, TransformerEncoder, TransformerEncoderLayer};
pub use gelu::{Gelu, GeluKind, erf};
pub use layer_norm::LayerNorm;
pub use pooling::{Pooling, PoolingKind, cls_pool, l2_normalize, mean_pool};

use compress_core::{CoreError, Float, Result};
use ndarray::{Array2, ArrayD, ArrayRef, IxDyn};

/// Which tokens of a batch of padded sequences are real: `[batch, seq]`, `true` for a
/// token and `false` for padding (Hugging Face's `attention_mask` as booleans). Cheap to
/// clone (shared storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddingMask {
    batch: usize,
    seq: usize,
    valid: Arc<[bool]>,
}

impl PaddingMask {
    /// A mask from a `[batch, seq]` array.
    pub fn new(valid: &Array2<bool>) -> Self {
        let (batch, seq) = valid.dim();
        Self {
            batch,
            seq,
            valid: valid.iter().copied().collect(),
        }
    }

    /// Sequence `b` has its first `lengths[b]` tokens real, the rest padding.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] when a length exceeds `seq`.
    pub fn from_lengths(lengths: &[usize], seq: usize) -> Result<Self> {
        if let Some((b, &l)) = lengths.iter().enumerate().find(|&(_, &l)| l > seq) {
            return Err(CoreError::config(
                "lengths",
                format!("sequence {b} has length {l} > padded length {seq}"),
            ));
        }
        let valid = lengths
            .iter()
            .flat_map(|&l| (0..seq).map(move |t| t < l))
            .collect();
        Ok(Self {
            batch: lengths.len(),
            seq,
            valid,
        })
    }

    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Padded length.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The flags of sequence `b`.
    ///
    /// # Panics
    ///
    /// If `b >= batch`.
    #[track_caller]
    pub fn row(&self, b: usize) -> &[bool] {
        &self.valid[b * self.seq..(b + 1) * self.seq]
    }

    /// Number of real tokens of sequence `b`.
    ///
    /// # Panics
    ///
    /// If `b >= batch`.
    #[track_caller]
    pub fn count(&self, b: usize) -> usize {
        self.row(b).iter().filter(|&&v| v).count()
    }

    /// The mask as an array.
    pub fn to_array(&self) -> Array2<bool> {
        Array2::from_shape_fn((self.batch, self.seq), |(b, t)| {
            self.valid[b * self.seq + t]
        })
    }
}

/// Checks that `mask` (if any) is `[batch, seq]`.
pub(crate) fn check_mask(mask: Option<&PaddingMask>, batch: usize, seq: usize) -> Result<()> {
    match mask {
        Some(m) if (m.batch, m.seq) != (batch, seq) => Err(CoreError::shape(
            "padding mask",
            &[batch, seq],
            &[m.batch, m.seq],
        )),
        _ => Ok(()),
    }
}

/// `[batch, seq, hidden]` -> `(batch, seq, [batch * seq, hidden])`, naming `what` in the
/// error.
pub(crate) fn to_tokens<F: Float>(
    x: &ArrayRef<F, IxDyn>,
    hidden: usize,
    what: &str,
) -> Result<(usize, usize, ArrayD<F>)> {
    let &[batch, seq, h] = x.shape() else {
        return Err(CoreError::shape(what, &[0, 0, hidden], x.shape()));
    };
    if h != hidden {
        return Err(CoreError::shape(what, &[batch, seq, hidden], x.shape()));
    }
    let x2 = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[batch * seq, hidden]))?;
    Ok((batch, seq, x2))
}
