//! `BertConfig`: the subset of a Hugging Face `config.json` a BERT encoder needs.

use std::path::Path;

use compress_nn::{GeluKind, TransformerConfig};
use serde_json::{Map, Value};

use crate::{Result, TransformerError};

/// A BERT configuration (`config.json` of a Hugging Face model directory).
///
/// Only `model_type: "bert"` with absolute position embeddings is supported; anything else
/// is a [`TransformerError::Unsupported`] naming the key. The other keys of the file are
/// kept and written back by [`BertConfig::to_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `intermediate_size`.
    pub intermediate_size: usize,
    /// `hidden_act` as a GELU kind (`gelu` exact; `gelu_new`, `gelu_pytorch_tanh` tanh).
    pub hidden_act: GeluKind,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `type_vocab_size` (default 2).
    pub type_vocab_size: usize,
    /// `layer_norm_eps` (default `1e-12`).
    pub layer_norm_eps: f64,
    /// `initializer_range` (default `0.02`).
    pub initializer_range: f64,
    /// `pad_token_id` (default 0).
    pub pad_token_id: usize,
    extra: Map<String, Value>,
}

fn unsupported(key: &str, reason: impl Into<String>) -> TransformerError {
    TransformerError::Unsupported {
        key: key.into(),
        reason: reason.into(),
    }
}

fn get_usize(m: &Map<String, Value>, key: &str, default: Option<usize>) -> Result<usize> {
    match m.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| unsupported(key, "is missing")),
        Some(v) => v
            .as_u64()
            .and_then(|u| usize::try_from(u).ok())
            .ok_or_else(|| unsupported(key, format!("= {v} is not a non-negative integer"))),
    }
}

fn get_f64(m: &Map<String, Value>, key: &str, default: f64) -> Result<f64> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| unsupported(key, format!("= {v} is not a number"))),
    }
}

impl BertConfig {
    /// A configuration with MiniLM-L6's shapes but the given sizes; the other keys take
    /// BERT's defaults.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: GeluKind::Exact,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            initializer_range: 0.02,
            pad_token_id: 0,
            extra: Map::new(),
        }
    }

    /// all-MiniLM-L6-v2's shapes: vocabulary 30522, hidden 384, 6 layers, 12 heads,
    /// intermediate 1536, 512 positions.
    pub fn minilm_l6() -> Self {
        Self::new(30522, 384, 6, 12, 1536)
    }

    /// Parses a `config.json` value.
    ///
    /// # Errors
    ///
    /// [`TransformerError::Unsupported`] naming the key: `model_type` other than `bert`,
    /// `position_embedding_type` other than `absolute`, `hidden_act` other than a GELU, a
    /// missing size, or sizes that do not fit together.
    pub fn from_value(v: &Value) -> Result<Self> {
        let m = v
            .as_object()
            .ok_or_else(|| unsupported("config", "is not a JSON object"))?;
        match m.get("model_type").and_then(Value::as_str) {
            Some("bert") => {}
            other => {
                return Err(unsupported(
                    "model_type",
                    format!("= {other:?}; only \"bert\" is supported"),
                ));
            }
        }
        match m.get("position_embedding_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "absolute" => {}
            Some(other) => {
                return Err(unsupported(
                    "position_embedding_type",
                    format!("= {other}; only \"absolute\" is supported"),
                ));
            }
        }
        let hidden_act = match m
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu")
        {
            "gelu" => GeluKind::Exact,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => GeluKind::Tanh,
            other => {
                return Err(unsupported(
                    "hidden_act",
                    format!("= {other:?}; supported: gelu, gelu_new, gelu_pytorch_tanh"),
                ));
            }
        };
        if m.get("is_decoder").and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(
                "is_decoder",
                "= true; only encoders are supported",
            ));
        }
        let cfg = Self {
            vocab_size: get_usize(m, "vocab_size", None)?,
            hidden_size: get_usize(m, "hidden_size", None)?,
            num_hidden_layers: get_usize(m, "num_hidden_layers", None)?,
            num_attention_heads: get_usize(m, "num_attention_heads", None)?,
            intermediate_size: get_usize(m, "intermediate_size", None)?,
            hidden_act,
            max_position_embeddings: get_usize(m, "max_position_embeddings", Some(512))?,
            type_vocab_size: get_usize(m, "type_vocab_size", Some(2))?,
            layer_norm_eps: get_f64(m, "layer_norm_eps", 1e-12)?,
            initializer_range: get_f64(m, "initializer_range", 0.02)?,
            pad_token_id: get_usize(m, "pad_token_id", Some(0))?,
            extra: m.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses `path` (a `config.json`).
    ///
    /// # Errors
    ///
    /// [`TransformerError::Io`] for a missing file, [`TransformerError::Format`] for bad
    /// JSON, and the errors of [`from_value`](Self::from_value).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TransformerError::io(path, e))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| TransformerError::format(path, e))?;
        Self::from_value(&v)
    }

    /// Checks that the sizes fit together.
    ///
    /// # Errors
    ///
    /// [`TransformerError::Unsupported`] naming the key.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(unsupported(key, "= 0; must be at least 1"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(unsupported(
                "num_attention_heads",
                format!(
                    "= {} does not divide hidden_size = {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err(unsupported(
                "layer_norm_eps",
                format!("= {} must be finite and >= 0", self.layer_norm_eps),
            ));
        }
        if !(self.initializer_range.is_finite() && self.initializer_range >= 0.0) {
            return Err(unsupported(
                "initializer_range",
                format!("= {} must be finite and >= 0", self.initializer_range),
            ));
        }
        Ok(())
    }

    /// The encoder's shape as compress-nn's [`TransformerConfig`] (post-LN).
    pub fn encoder_config(&self) -> TransformerConfig {
        TransformerConfig {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            layer_norm_eps: self.layer_norm_eps,
            activation: self.hidden_act,
            norm_first: false,
            init_std: self.initializer_range,
        }
    }

    /// The configuration as `config.json`: the keys read from the file, with the sizes
    /// above written over them (so a model with fewer layers saves its own count).
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        let act = match self.hidden_act {
            GeluKind::Exact => "gelu",
            GeluKind::Tanh => "gelu_new",
        };
        let mut set = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        set("model_type", "bert".into());
        set("position_embedding_type", "absolute".into());
        set("vocab_size", self.vocab_size.into());
        set("hidden_size", self.hidden_size.into());
        set("num_hidden_layers", self.num_hidden_layers.into());
        set("num_attention_heads", self.num_attention_heads.into());
        set("intermediate_size", self.intermediate_size.into());
        set("hidden_act", act.into());
        set(
            "max_position_embeddings",
            self.max_position_embeddings.into(),
        );
        set("type_vocab_size", self.type_vocab_size.into());
        set("layer_norm_eps", self.layer_norm_eps.into());
        set("initializer_range", self.initializer_range.into());
        set("pad_token_id", self.pad_token_id.into());
        m.entry("architectures")
            .or_insert_with(|| Value::Array(vec!["BertModel".into()]));
        Value::Object(m)
    }
}
