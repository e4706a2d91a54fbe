//! `netcompress prune`: on a checkpoint file, magnitude (per tensor or global), N:M, or
//! whole-row pruning, written as sparse tensors (keep bitmask + kept values, or kept rows) so
//! the file really shrinks; on a model directory (`MODEL_DIR OUT_DIR`), magnitude, Wanda or
//! SparseGPT on every encoder linear layer, calibrated on sentences, written as a model
//! directory that `embed` and `eval` run on the 2:4 kernel.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use compress_checkpoint::encode::MethodArg;
use compress_checkpoint::{PruneEncoder, PruneOptions};
use compress_core::Layer;
use compress_prune::{
    CalibratedMethod, CalibratedPruneConfig, SparseGptConfig, SparsityPattern, prune_calibrated,
    sparsify_24,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::pipeline::run_and_print;
use super::{IoArgs, SelectArgs, fmt_bytes};
use crate::error::{CliError, Result};

/// Pruning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Method {
    /// Smallest |w| (files: per tensor, or across tensors with --global; model directories:
    /// per output row or per group).
    Magnitude,
    /// Files: N:M along the input dimension, N = M * (1 - sparsity).
    Nm,
    /// Files: whole rows with the smallest L2 norm.
    Rows,
    /// Model directories: Wanda, |w| x ||x|| on calibration sentences.
    Wanda,
    /// Model directories: SparseGPT (OBS updates from X^T X of calibration sentences).
    Sparsegpt,
}

/// Arguments of `prune`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) io: IoArgs,
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Fraction of weights (or rows) to remove, in [0, 1) (implied by --pattern N:M).
    #[arg(long)]
    pub(crate) sparsity: Option<f64>,
    /// Pruning method.
    #[arg(long, value_enum, default_value = "magnitude")]
    pub(crate) method: Method,
    /// Files: one magnitude threshold across all selected tensors (magnitude only).
    #[arg(long)]
    pub(crate) global: bool,
    /// Files: group length M for --method nm.
    #[arg(long, default_value_t = 4)]
    pub(crate) m: usize,
    /// Files: write pruned tensors dense (zeros in place) instead of sparse.
    #[arg(long)]
    pub(crate) dense: bool,
    /// Model directories: `2:4` (the 2:4 kernel runs it), another `N:M`, or `unstructured`
    /// (with --sparsity; stored dense).
    #[arg(long, default_value = "2:4")]
    pub(crate) pattern: String,
    /// Model directories: calibration sentences, one per line (default: the calibration
    /// half of the project's sentence file, lines 1-150; `eval` measures on the other half).
    #[arg(long, value_name = "SENTENCES")]
    pub(crate) calib: Option<PathBuf>,
    /// Model directories: SparseGPT's dampening of the Hessian diagonal (fraction of its mean).
    #[arg(long, default_value_t = 0.01)]
    pub(crate) percdamp: f64,
}

/// Runs `prune`.
///
/// # Errors
///
/// Option, input, pruning and output errors.
pub(crate) fn run(a: &PruneArgs) -> Result<()> {
    if a.io.input.is_dir() {
        return run_model_dir(a);
    }
    let method = match a.method {
        Method::Magnitude => MethodArg::Magnitude,
        Method::Nm => MethodArg::Nm,
        Method::Rows => MethodArg::Rows,
        Method::Wanda | Method::Sparsegpt => {
            return Err(CliError::Usage(format!(
                "--method {:?} needs calibration: give a model directory (MODEL_DIR OUT_DIR), not a checkpoint file",
                a.method
            )
            .to_lowercase()));
        }
    };
    let sparsity = a
        .sparsity
        .ok_or_else(|| CliError::Usage("--sparsity is required for checkpoint files".into()))?;
    let options = PruneOptions {
        sparsity,
        method,
        global: a.global,
        m: a.m,
        dense: a.dense,
    };
    let mut enc = PruneEncoder::new(&options)?;
    run_and_print("prune", &a.io, &a.select, &mut enc)
}

/// Parses `--pattern` (with `--sparsity` for `unstructured`).
fn pattern(a: &PruneArgs) -> Result<SparsityPattern> {
    let p = a.pattern.trim().to_ascii_lowercase();
    if p == "unstructured" {
        let s = a.sparsity.ok_or_else(|| {
            CliError::Usage("--pattern unstructured needs --sparsity in [0, 1)".into())
        })?;
        return Ok(SparsityPattern::Unstructured(s));
    }
    let parsed = p
        .split_once(':')
        .and_then(|(n, m)| Some((n.parse::<usize>().ok()?, m.parse::<usize>().ok()?)))
        .filter(|&(n, m)| n >= 1 && n <= m);
    let Some((n, m)) = parsed else {
        return Err(CliError::Usage(format!(
            "--pattern must be N:M with 1 <= N <= M (e.g. 2:4) or `unstructured`, got `{}`",
            a.pattern
        )));
    };
    if let Some(s) = a.sparsity
        && (s - (m - n) as f64 / m as f64).abs() > 1e-9
    {
        return Err(CliError::Usage(format!(
            "--sparsity {s} contradicts --pattern {n}:{m} (which prunes {})",
            (m - n) as f64 / m as f64
        )));
    }
    Ok(SparsityPattern::NM { n, m })
}

/// The summary of a model-directory run.
#[derive(Serialize)]
struct Summary {
    method: String,
    pattern: String,
    layers: usize,
    sparse24_layers: usize,
    calibration_sentences: usize,
    sparsity: f64,
    mean_rel_output_error: Option<f64>,
    bytes: u64,
    output: String,
}

fn bar(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} sentences eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn run_model_dir(a: &PruneArgs) -> Result<()> {
    let (input, output) = (&a.io.input, &a.io.output);
    if output.exists() && !a.io.force {
        return Err(CliError::Usage(format!(
            "{} exists (use --force to replace it)",
            output.display()
        )));
    }
    if output.exists()
        && (output.canonicalize().ok() == input.canonicalize().ok() || !output.is_dir())
    {
        return Err(CliError::Usage(format!(
            "{} is the input or not a directory: refusing to replace it",
            output.display()
        )));
    }
    let pattern = pattern(a)?;
    let method = match a.method {
        Method::Magnitude => CalibratedMethod::Magnitude,
        Method::Wanda => CalibratedMethod::Wanda,
        Method::Sparsegpt => CalibratedMethod::SparseGpt(SparseGptConfig {
            percdamp: a.percdamp,
            ..SparseGptConfig::default()
        }),
        Method::Nm | Method::Rows => {
            return Err(CliError::Usage(
                "model directories take --method magnitude, wanda or sparsegpt (with --pattern)"
                    .into(),
            ));
        }
    };
    let (owned, _) =
        super::sentences::read_or_shipped(a.calib.as_deref(), super::sentences::Part::Calibration)?;
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    if method.needs_calibration() && texts.is_empty() {
        return Err(CliError::Usage(
            "--calib has no non-empty line: nothing to calibrate on".into(),
        ));
    }
    let mut enc = compress_checkpoint::model_dir::load_sentence_encoder(input)?;
    let ids = enc.tokenizer.encode(&texts)?;
    let mut cfg = CalibratedPruneConfig::new(method, pattern);
    cfg.layers = vec!["encoder.*".into()];
    cfg.stage_depth = Some(3);
    let json = a.io.json;
    let reports = prune_calibrated(&mut enc.model, &cfg, &mut |m, stage| {
        let bert = m
            .as_any_mut()
            .downcast_mut::<compress_transformer::BertModel<f32>>()
            .ok_or("the model is not a BertModel")?;
        let pb = bar(ids.len() as u64, json);
        pb.set_message(format!(
            "calibrating stage {}/{}",
            stage.index + 1,
            stage.count
        ));
        // One sentence per pass: no padding tokens in the statistics.
        for seq in &ids {
            let batch = ndarray::Array2::from_shape_vec((1, seq.len()), seq.clone())?;
            bert.forward(&batch, None, compress_core::Mode::Eval)?;
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(())
    })?;
    let mut sparse24 = Vec::new();
    if pattern == SparsityPattern::TWO_FOUR {
        let model: &mut dyn Layer<f32> = &mut enc.model;
        sparse24 = sparsify_24(model, &|p| reports.iter().any(|r| r.path == p))?;
    }
    let bytes = super::sparse_dir::save_model_dir(&enc.model, input, output)?;
    let (zeros, total) = reports.iter().fold((0, 0), |(z, t), r| {
        (z + r.zeros, t + r.shape[0] * r.shape[1])
    });
    let errs: Vec<f64> = reports.iter().filter_map(|r| r.rel_output_error).collect();
    let summary = Summary {
        method: format!("{:?}", a.method).to_lowercase(),
        pattern: a.pattern.clone(),
        layers: reports.len(),
        sparse24_layers: sparse24.len(),
        calibration_sentences: if method.needs_calibration() {
            texts.len()
        } else {
            0
        },
        sparsity: zeros as f64 / total.max(1) as f64,
        mean_rel_output_error: (!errs.is_empty())
            .then(|| errs.iter().sum::<f64>() / errs.len() as f64),
        bytes,
        output: output.display().to_string(),
    };
    println!(
        "pruned {} linear layers ({}, {}) to {:.2}% zeros; {} run on the 2:4 kernel; wrote {} ({})",
        summary.layers,
        summary.method,
        summary.pattern,
        100.0 * summary.sparsity,
        summary.sparse24_layers,
        summary.output,
        fmt_bytes(bytes)
    );
    if let Some(e) = summary.mean_rel_output_error {
        println!("  mean relative output error per layer (calibration data): {e:.4}");
    }
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}
