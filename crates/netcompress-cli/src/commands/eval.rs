//! `netcompress eval MODEL_DIR --against OTHER_DIR [--file SENTENCES] [--int8-activations]
//! [--json]`: the fidelity of a (compressed) model to its original on real sentences (mean
//! and worst cosine, top-1 nearest-neighbour agreement, Spearman of the pairwise
//! similarities; definitions in `compress_transformer::metrics`), each model's size on disk
//! and time per sentence (`--int8-activations`: int4 layers run as W4A8). The
//! default sentences are the evaluation half of the shipped file, which calibration never
//! sees (see [`super::sentences`]).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use compress_transformer::io::dir_bytes;
use compress_transformer::{SentenceEncoder, fidelity};
use ndarray::Array2;
use serde::Serialize;

use super::sentences::{Part, read_or_shipped};
use crate::error::{CliError, Result};

/// Arguments of `eval`.
#[derive(Debug, Clone, Args)]
pub(crate) struct EvalArgs {
    /// The (compressed) model directory to evaluate.
    pub(crate) model: PathBuf,
    /// The original model directory it is compared with.
    #[arg(long, value_name = "OTHER_DIR")]
    pub(crate) against: PathBuf,
    /// Sentences, one per non-empty line (default: the evaluation half of the project's
    /// sentence file, lines 151-300, disjoint from the calibration half that `quantize` and
    /// `prune` calibrate on by default).
    #[arg(long, value_name = "SENTENCES")]
    pub(crate) file: Option<PathBuf>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// Run the compressed model's int4 layers (`int4-weight-only`) in the W4A8 mode:
    /// per-token int8 activations on the `vpdpbusd` kernel (`W4A8Linear`), same weights.
    #[arg(long)]
    pub(crate) int8_activations: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Serialize)]
struct Pair<T> {
    original: T,
    compressed: T,
}

#[derive(Serialize)]
struct Out {
    sentences: usize,
    sentence_source: String,
    mean_cosine: f64,
    min_cosine: f64,
    top1_agreement: f64,
    spearman: f64,
    /// Int4 layers run as W4A8 (`--int8-activations`).
    w4a8_layers: usize,
    bytes: Pair<u64>,
    ms_per_sentence: Pair<f64>,
}

/// Embeds `texts` once and returns the embeddings and the wall time per sentence in ms.
fn timed(enc: &mut SentenceEncoder, texts: &[&str]) -> Result<(Array2<f32>, f64)> {
    let t = Instant::now();
    let e = enc.embed(texts)?;
    Ok((e, t.elapsed().as_secs_f64() * 1e3 / texts.len() as f64))
}

/// Runs `eval`.
pub(crate) fn run(a: &EvalArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(CliError::Usage("--batch-size must be at least 1".into()));
    }
    let (owned, source) = read_or_shipped(a.file.as_deref(), Part::Evaluation)?;
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    if texts.len() < 3 {
        return Err(CliError::Usage(format!(
            "eval needs at least 3 non-empty lines, got {}",
            texts.len()
        )));
    }
    let mut original = compress_checkpoint::model_dir::load_sentence_encoder(&a.against)?;
    let mut compressed = compress_checkpoint::model_dir::load_sentence_encoder(&a.model)?;
    let w4a8_layers = if a.int8_activations {
        compress_quant::int4_to_w4a8(&mut compressed.model)?.len()
    } else {
        0
    };
    original.batch_size = a.batch_size;
    compressed.batch_size = a.batch_size;
    let (eo, to) = timed(&mut original, &texts)?;
    let (ec, tc) = timed(&mut compressed, &texts)?;
    if eo.ncols() != ec.ncols() {
        return Err(CliError::Usage(format!(
            "embedding widths differ: {} (original) vs {} (compressed)",
            eo.ncols(),
            ec.ncols()
        )));
    }
    let f = fidelity(&eo.view(), &ec.view())?;
    let out = Out {
        sentences: f.sentences,
        sentence_source: source,
        mean_cosine: f.mean_cosine,
        min_cosine: f.min_cosine,
        top1_agreement: f.top1_agreement,
        spearman: f.spearman,
        w4a8_layers,
        bytes: Pair {
            original: dir_bytes(&a.against)?,
            compressed: dir_bytes(&a.model)?,
        },
        ms_per_sentence: Pair {
            original: to,
            compressed: tc,
        },
    };
    println!(
        "{} vs {} on {} sentences ({})",
        a.model.display(),
        a.against.display(),
        out.sentences,
        out.sentence_source
    );
    if out.w4a8_layers > 0 {
        println!("  w4a8 layers      {} (int8 activations)", out.w4a8_layers);
    }
    println!("  mean cosine      {:.6}", out.mean_cosine);
    println!("  min cosine       {:.6}", out.min_cosine);
    println!("  top-1 agreement  {:.4}", out.top1_agreement);
    println!("  spearman         {:.6}", out.spearman);
    println!(
        "  bytes            {} (original) / {} (compressed)",
        out.bytes.original, out.bytes.compressed
    );
    println!(
        "  ms per sentence  {:.3} (original) / {:.3} (compressed)",
        out.ms_per_sentence.original, out.ms_per_sentence.compressed
    );
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(())
}
