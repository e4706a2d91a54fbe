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
mod tokenize;

pub use config::BertConfig;
pub use embeddings::BertEmbeddings;
pub use error::{Result, TransformerError};
pub use metrics::{Fidelity, fidelity};
pub use model::BertModel;
pub use sentence::SentenceEncoder;
pub use tokenize::{BertTokenizer, pad};
