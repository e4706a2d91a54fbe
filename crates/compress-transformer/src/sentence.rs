//! `SentenceEncoder`: tokenizer + BERT + pooling + normalisation.

use std::path::Path;

use compress_core::Mode;
use compress_nn::{PaddingMask, Pooling, PoolingKind};
use ndarray::Array2;
use serde_json::Value;

use crate::{BertModel, BertTokenizer, Result, TransformerError};

/// A sentence-embedding model as sentence-transformers runs it: tokenize (with `[CLS]`
/// and `[SEP]`, truncated to `max_seq_length`), run the encoder, pool the last hidden
/// states (masked mean or CLS) and L2-normalise.
///
/// [`SentenceEncoder::from_dir`] reads the settings a sentence-transformers directory
/// has: `sentence_bert_config.json` (`max_seq_length`), `1_Pooling/config.json`
/// (`pooling_mode_cls_token` / `pooling_mode_mean_tokens`) and `modules.json` (a
/// `Normalize` module). Without those files: mean pooling, normalised, `max_seq_length`
/// = `min(512, max_position_embeddings)`.
#[derive(Debug)]
pub struct SentenceEncoder {
    /// The tokenizer.
    pub tokenizer: BertTokenizer,
    /// The encoder.
    pub model: BertModel<f32>,
    /// Pooling of the last hidden states.
    pub pooling: PoolingKind,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// Texts per forward pass (texts are sorted by length first, so each batch pads little).
    pub batch_size: usize,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| TransformerError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TransformerError::format(path, e))
}

impl SentenceEncoder {
    /// Loads a model directory (see the type's docs and [`BertModel::from_dir`]).
    ///
    /// # Errors
    ///
    /// The errors of [`BertModel::from_dir`] and [`BertTokenizer::from_file`]; a
    /// [`TransformerError::Format`] for a settings file that is not valid JSON.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        Self::with_model(dir, BertModel::<f32>::from_dir(dir)?)
    }

    /// A sentence encoder of `model` with the tokenizer and sentence-transformers settings
    /// of `dir` (as [`SentenceEncoder::from_dir`]), for a model loaded another way (e.g. a
    /// compressed model directory whose layers run quantized kernels).
    ///
    /// # Errors
    ///
    /// The errors of [`BertTokenizer::from_file`]; a [`TransformerError::Format`] for a
    /// settings file that is not valid JSON.
    pub fn with_model(dir: impl AsRef<Path>, model: BertModel<f32>) -> Result<Self> {
        let dir = dir.as_ref();
        let max_pos = model.config.max_position_embeddings;
        let max_len = read_json(&dir.join("sentence_bert_config.json"))?
            .and_then(|v| v.get("max_seq_length").and_then(Value::as_u64))
            .map_or(512.min(max_pos), |m| (m as usize).min(max_pos));
        let tokenizer = BertTokenizer::from_file(dir.join("tokenizer.json"), max_len)?;
        let pooling = match read_json(&dir.join("1_Pooling/config.json"))? {
            Some(v) if v.get("pooling_mode_cls_token").and_then(Value::as_bool) == Some(true) => {
                PoolingKind::Cls
            }
            _ => PoolingKind::Mean,
        };
        let normalize = match read_json(&dir.join("modules.json"))? {
            Some(v) => v.to_string().contains("Normalize"),
            None => true,
        };
        Ok(Self {
            tokenizer,
            model,
            pooling,
            normalize,
            batch_size: 32,
        })
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.model.hidden()
    }

    /// Embeds `texts`: one row per text, in order.
    ///
    /// # Errors
    ///
    /// [`TransformerError::EmptyText`] naming the first empty text, and any error of
    /// [`embed_ids`](Self::embed_ids).
    pub fn embed(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let ids = self.tokenizer.encode(texts)?;
        self.embed_ids(&ids)
    }

    /// Embeds token id sequences (each with its special tokens): sequences are sorted by
    /// length, run in batches of [`batch_size`](Self::batch_size) padded to the batch's
    /// longest, pooled, and put back in the input order.
    ///
    /// # Errors
    ///
    /// A token id beyond the vocabulary ([`TransformerError::Core`] naming it), an empty
    /// sequence, or a sequence longer than the position table.
    pub fn embed_ids(&mut self, ids: &[Vec<usize>]) -> Result<Array2<f32>> {
        if let Some(index) = ids.iter().position(Vec::is_empty) {
            return Err(TransformerError::EmptyText { index });
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out = Array2::<f32>::zeros((ids.len(), self.dim()));
        let pool = Pooling::<f32>::new(self.pooling, self.normalize);
        for chunk in order.chunks(self.batch_size.max(1)) {
            let seqs: Vec<&[usize]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let (batch, mask) = self.tokenizer.pad(&seqs);
            let pooled = self.pool(&pool, &batch, &mask)?;
            for (row, &i) in pooled.rows().into_iter().zip(chunk) {
                out.row_mut(i).assign(&row);
            }
        }
        Ok(out)
    }

    fn pool(
        &mut self,
        pool: &Pooling<f32>,
        ids: &Array2<usize>,
        mask: &PaddingMask,
    ) -> Result<Array2<f32>> {
        let h = self.model.forward(ids, Some(mask), Mode::Eval)?;
        let mut pool = pool.clone();
        pool.set_padding_mask(Some(mask.clone()));
        Ok(pool.pool(&h.view())?)
    }
}
