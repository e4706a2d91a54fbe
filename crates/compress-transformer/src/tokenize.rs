//! Tokenization with Hugging Face's `tokenizers` on a `tokenizer.json`.

use std::path::Path;

use compress_nn::PaddingMask;
use ndarray::Array2;
use tokenizers::{Tokenizer, TruncationParams};

use crate::{Result, TransformerError};

/// A `tokenizer.json` tokenizer (WordPiece for BERT models) that adds the model's special
/// tokens (`[CLS] ... [SEP]`), truncates to `max_len` tokens (specials included) and
/// leaves padding to [`BertTokenizer::pad`], which pads each batch to its own longest
/// sequence. The file's own padding setting (MiniLM's pads every text to 128) is turned
/// off.
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    max_len: usize,
    pad_id: usize,
}

impl BertTokenizer {
    /// Reads `path` (a `tokenizer.json`) and truncates to `max_len` tokens.
    ///
    /// # Errors
    ///
    /// [`TransformerError::Io`] for a missing file, [`TransformerError::Format`] for a file
    /// the `tokenizers` crate cannot read, and [`TransformerError::Tokenizer`] for
    /// `max_len < 2`.
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(TransformerError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        if max_len < 2 {
            return Err(TransformerError::Tokenizer(format!(
                "max_len = {max_len}: need room for [CLS] and [SEP]"
            )));
        }
        let mut inner =
            Tokenizer::from_file(path).map_err(|e| TransformerError::format(path, e))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id as usize)
            .or_else(|| inner.token_to_id("[PAD]").map(|i| i as usize))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| TransformerError::Tokenizer(e.to_string()))?;
        Ok(Self {
            inner,
            max_len,
            pad_id,
        })
    }

    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> usize {
        self.pad_id
    }

    /// Vocabulary size (with added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of each text, with special tokens, truncated.
    ///
    /// # Errors
    ///
    /// [`TransformerError::EmptyText`] for a text that is empty or only whitespace, and
    /// [`TransformerError::Tokenizer`] if the tokenizer fails.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<usize>>> {
        texts
            .iter()
            .enumerate()
            .map(|(index, t)| {
                if t.trim().is_empty() {
                    return Err(TransformerError::EmptyText { index });
                }
                let enc = self
                    .inner
                    .encode(*t, true)
                    .map_err(|e| TransformerError::Tokenizer(format!("text {index}: {e}")))?;
                Ok(enc.get_ids().iter().map(|&i| i as usize).collect())
            })
            .collect()
    }

    /// Pads `seqs` to the longest with [`pad_id`](Self::pad_id): `ids [batch, longest]`
    /// and the mask of real tokens.
    pub fn pad(&self, seqs: &[&[usize]]) -> (Array2<usize>, PaddingMask) {
        pad(seqs, self.pad_id)
    }
}

/// Pads `seqs` to the longest with `pad_id`: `ids [batch, longest]` and the mask of real
/// tokens.
pub fn pad(seqs: &[&[usize]], pad_id: usize) -> (Array2<usize>, PaddingMask) {
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Array2::from_elem((seqs.len(), longest), pad_id);
    for (mut row, s) in ids.rows_mut().into_iter().zip(seqs) {
        for (d, &v) in row.iter_mut().zip(s.iter()) {
            *d = v;
        }
    }
    let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    // Lengths never exceed `longest`.
    let mask = PaddingMask::from_lengths(&lengths, longest)
        .unwrap_or_else(|_| PaddingMask::new(&Array2::from_elem((seqs.len(), longest), true)));
    (ids, mask)
}
