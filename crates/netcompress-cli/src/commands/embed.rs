//! `netcompress embed MODEL_DIR (--text S ... | --file F) [--json]`: sentence embeddings of
//! a Hugging Face BERT model directory (pooling and normalisation as the directory's
//! sentence-transformers settings say), and with two or more texts their cosine matrix.

use std::path::{Path, PathBuf};

use clap::Args;
use compress_transformer::lines;
use compress_transformer::metrics::similarity_matrix;
use serde::Serialize;

use crate::error::{CliError, Result};

/// Arguments of `embed`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EmbedArgs {
    /// Model directory (config.json, model.safetensors or a sharded index, tokenizer.json).
    pub(crate) model: PathBuf,
    /// A text to embed (repeatable).
    #[arg(long = "text", value_name = "S", conflicts_with = "file")]
    pub(crate) text: Vec<String>,
    /// A file of texts, one per non-empty line.
    #[arg(long, value_name = "F")]
    pub(crate) file: Option<PathBuf>,
    /// Print one JSON object as the last line: {"model", "dim", "embeddings"} (and
    /// "cosine" with two or more texts).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Serialize)]
struct Out<'a> {
    model: &'a str,
    dim: usize,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosine: Option<Vec<Vec<f64>>>,
}

/// Texts from `--text` or `--file` (non-empty lines).
pub(crate) fn read_texts(text: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let texts: Vec<String> = match file {
        Some(f) => {
            let s = std::fs::read_to_string(f)
                .map_err(|e| compress_checkpoint::CheckpointError::io(f, e))?;
            lines(&s).into_iter().map(str::to_string).collect()
        }
        None => text.to_vec(),
    };
    if texts.is_empty() {
        return Err(CliError::Usage(match file {
            Some(f) => format!("{}: no non-empty line to embed", f.display()),
            None => "embed: give --text S (repeatable) or --file F".to_string(),
        }));
    }
    Ok(texts)
}

/// Runs `embed`.
pub(crate) fn run(a: &EmbedArgs) -> Result<()> {
    let texts = read_texts(&a.text, a.file.as_deref())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut enc = compress_checkpoint::model_dir::load_sentence_encoder(&a.model)?;
    let e = enc.embed(&refs)?;
    let cos = (e.nrows() >= 2).then(|| similarity_matrix(&e.view()));
    let model = a.model.display().to_string();
    println!(
        "{model}: {} text(s), dim {}, {:?} pooling{}",
        e.nrows(),
        e.ncols(),
        enc.pooling,
        if enc.normalize { ", L2-normalised" } else { "" }
    );
    if !a.json {
        for (i, (t, row)) in texts.iter().zip(e.rows()).enumerate() {
            let head: Vec<String> = row.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            let short: String = t.chars().take(60).collect();
            println!("[{i}] [{} ...] {short}", head.join(" "));
        }
        if let Some(c) = &cos {
            println!("cosine similarity:");
            for row in c.rows() {
                let cells: Vec<String> = row.iter().map(|v| format!("{v:7.4}")).collect();
                println!("  {}", cells.join(" "));
            }
        }
    }
    if a.json {
        let out = Out {
            model: &model,
            dim: e.ncols(),
            embeddings: e.rows().into_iter().map(|r| r.to_vec()).collect(),
            cosine: cos.map(|c| c.rows().into_iter().map(|r| r.to_vec()).collect()),
        };
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(())
}
