//! BERT-style transformer encoders: Hugging Face model directories, tokenization,
//! sentence embeddings and fidelity metrics.
//!
//! - [`BertConfig`]: `config.json` (`model_type: bert`, absolute positions).
//! - [`BertModel`]: embeddings + compress-nn's [`TransformerEncoder`](compress_nn::TransformerEncoder)
//!   under Hugging Face's parameter names; [`BertModel::from_dir`] loads `config.json` and
//!   `model.safetensors` (or a sharded index), [`BertModel::save_dir`] writes them back.
//! - [`BertTokenizer`]: the `tokenizers` crate on `tokenizer.json`.
//! - [`SentenceEncoder`]: tokenizer + model + pooling + normalisation, as
//!   sentence-transformers; [`SentenceEncoder::embed`] batches texts by length.
//! - [`metrics`]: cosine, nearest-neighbour agreement and Spearman of two embedding sets.
//! - [`truncated_student`], [`every_kth_layer`], [`PooledBert`]: distillation students
//!   (DistilBERT-style layer selection; a pooled BERT as compress-distill's `SequenceEncoder`).
//! - [`SENTENCES`]: the project's sentence file for evaluation and calibration.
//!
//! **MSRV:** 1.89
#![doc(test(attr(deny(warnings))))]

mod config;
mod embeddings;
mod error;
pub mod io;
pub mod metrics;
mod model;
mod sentence;
mod student;
mod tokenize;

pub use config::BertConfig;
pub use embeddings::BertEmbeddings;
pub use error::{Result, TransformerError};
pub use metrics::{Fidelity, fidelity};
pub use model::BertModel;
pub use sentence::SentenceEncoder;
pub use student::{PooledBert, every_kth_layer, truncated_student};
pub use tokenize::{BertTokenizer, pad};

/// The project's sentence file (`data/sentences.txt`): 300 English sentences from the CIA
/// World Factbook (public domain), one per line; see `data/README.md`.
pub const SENTENCES: &str = include_str!("../data/sentences.txt");

/// The non-empty lines of `text`, trimmed (how `--file` and [`SENTENCES`] are read).
pub fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}
