//! The encoder contract a sequence distiller trains through, and the masked token
//! gather/scatter that hint losses use.

use compress_core::{CoreError, Float, Mode, Module};
use compress_nn::PaddingMask;
use ndarray::{Array2, Array3, Axis};

/// What a [`SequenceEncoder`] returns for a batch of token sequences.
#[derive(Debug, Clone)]
pub struct EncoderOutput<F: Float> {
    /// One pooled embedding per sequence, `[batch, width]` (not L2-normalised, so an MSE
    /// objective sees the magnitudes; the cosine and InfoNCE losses normalise themselves).
    pub pooled: Array2<F>,
    /// The requested hidden states, `[batch, seq, width]` each, in the order asked for.
    pub hidden: Vec<Array3<F>>,
    /// Which positions of `hidden` are real tokens (the batch padded to its longest).
    pub mask: PaddingMask,
}

/// A sequence model that can be distilled: token ids in, a pooled embedding (and hidden
/// states of chosen layers) out, with a backward pass for training.
///
/// Implemented by compress-transformer's BERT encoder; any other encoder (a user's own)
/// implements these four methods and trains with the same
/// [`SequenceDistiller`](crate::SequenceDistiller). The teacher is only ever called in
/// [`Mode::Eval`] and never given a gradient.
pub trait SequenceEncoder<F: Float>: Module<F> + std::fmt::Debug {
    /// Number of layers whose hidden states [`encode`](Self::encode) can return
    /// (`0..num_layers()`).
    fn num_layers(&self) -> usize;

    /// Width of the hidden states of layer `layer` (`pooled` has the width of the last).
    fn width(&self, layer: usize) -> usize;

    /// Encodes `seqs` (token ids, each with its special tokens), padded to the longest:
    /// the pooled embeddings and the outputs of the layers `layers` (indices below
    /// [`num_layers`](Self::num_layers), any order, repeats allowed).
    ///
    /// # Errors
    ///
    /// A token id outside the vocabulary, an empty sequence, a sequence longer than the
    /// model accepts, or a layer index out of range, as a [`CoreError`] naming it.
    fn encode(
        &mut self,
        seqs: &[&[usize]],
        layers: &[usize],
        mode: Mode,
    ) -> compress_core::Result<EncoderOutput<F>>;

    /// Back-propagates the gradient of the pooled embeddings and of the hidden states
    /// returned by the last [`Mode::Train`] `encode` (`None` where a layer gets no
    /// gradient; same order as its `layers`), accumulating parameter gradients.
    ///
    /// # Errors
    ///
    /// Without a preceding training-mode `encode`, or for gradients of the wrong shape.
    fn backward(
        &mut self,
        grad_pooled: &Array2<F>,
        grad_hidden: &[Option<Array3<F>>],
    ) -> compress_core::Result<()>;
}

/// The rows of the real tokens of `x [batch, seq, width]`: `[tokens, width]`, sequence
/// by sequence.
///
/// # Errors
///
/// A shape error when the mask is not `[batch, seq]`.
pub fn gather_tokens<F: Float>(
    x: &Array3<F>,
    mask: &PaddingMask,
) -> compress_core::Result<Array2<F>> {
    let (batch, seq, width) = x.dim();
    if (mask.batch(), mask.seq()) != (batch, seq) {
        return Err(CoreError::shape(
            "padding mask",
            &[batch, seq],
            &[mask.batch(), mask.seq()],
        ));
    }
    let tokens: usize = (0..batch).map(|b| mask.count(b)).sum();
    let mut out = Array2::zeros((tokens, width));
    let mut rows = out.axis_iter_mut(Axis(0));
    for b in 0..batch {
        for (t, &valid) in mask.row(b).iter().enumerate() {
            if valid && let Some(mut r) = rows.next() {
                r.assign(&x.index_axis(Axis(0), b).index_axis(Axis(0), t));
            }
        }
    }
    Ok(out)
}

/// The inverse of [`gather_tokens`]: `rows [tokens, width]` put back at the real
/// positions of a zero `[batch, seq, width]` array.
///
/// # Errors
///
/// A shape error when `rows` does not have one row per real token.
pub fn scatter_tokens<F: Float>(
    rows: &Array2<F>,
    mask: &PaddingMask,
) -> compress_core::Result<Array3<F>> {
    let (batch, seq) = (mask.batch(), mask.seq());
    let tokens: usize = (0..batch).map(|b| mask.count(b)).sum();
    if rows.nrows() != tokens {
        return Err(CoreError::shape(
            "token gradient",
            &[tokens, rows.ncols()],
            rows.shape(),
        ));
    }
    let mut out = Array3::zeros((batch, seq, rows.ncols()));
    let mut it = rows.axis_iter(Axis(0));
    for b in 0..batch {
        for (t, &valid) in mask.row(b).iter().enumerate() {
            if valid && let Some(r) = it.next() {
                out.index_axis_mut(Axis(0), b)
                    .index_axis_mut(Axis(0), t)
                    .assign(&r);
            }
        }
    }
    Ok(out)
}
