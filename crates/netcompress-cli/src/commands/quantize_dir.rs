//! `netcompress quantize MODEL_DIR OUT_DIR --method rtn|gptq|awq|smoothquant --bits ..
//! [--group-size ..] [--calib SENTENCES]`: calibrated quantization of a BERT model
//! directory's encoder linears, written as a compressed model directory that `embed` and
//! `eval` run on its integer kernels.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use clap::ValueEnum;
use compress_checkpoint::model_dir::PartialDir;
use compress_quant::calibrated::{
    AwqConfig, Capture, CaptureSpec, GptqConfig, InputStats, Method, QuantizedLinear, ScaleGroup,
    ScaleSource, WeightQuant, choose_bits, layer_sensitivity, quantize_linears,
};
use compress_transformer::SentenceEncoder;
use compress_transformer::metrics::cosine_rows;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::command_line;
use super::sentences;
use crate::error::{CliError, Result};

/// The quantization method for a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodArg {
    /// Round to nearest (no calibration).
    Rtn,
    /// GPTQ (Hessian-based error compensation).
    Gptq,
    /// AWQ activation-aware scaling, then round to nearest.
    Awq,
    /// SmoothQuant scaling, int8 weights and per-token dynamic int8 activations (W8A8).
    Smoothquant,
}

/// The six projections of encoder layer `i`, grouped by the activation they read, with
/// where AWQ / SmoothQuant scales go. BERT is post-LN: each LayerNorm's output is both the
/// next projections' input and the residual stream, so scales folded into it would change
/// the model; they stay explicit there (and after GELU). Attention's output projection reads
/// `softmax(QK^T) V`, linear in `V`, so its scales fold into the value projection's rows.
pub(crate) fn bert_groups(layers: usize) -> Vec<ScaleGroup> {
    let mut out = Vec::new();
    for i in 0..layers {
        let p = format!("encoder.layer.{i}");
        out.push(ScaleGroup {
            source: ScaleSource::Explicit,
            linears: ["query", "key", "value"]
                .iter()
                .map(|n| format!("{p}.attention.self.{n}"))
                .collect(),
        });
        out.push(ScaleGroup {
            source: ScaleSource::Linear(format!("{p}.attention.self.value")),
            linears: vec![format!("{p}.attention.output.dense")],
        });
        out.push(ScaleGroup {
            source: ScaleSource::Explicit,
            linears: vec![format!("{p}.intermediate.dense")],
        });
        out.push(ScaleGroup {
            source: ScaleSource::Explicit,
            linears: vec![format!("{p}.output.dense")],
        });
    }
    out
}

/// Runs the encoder over `texts` with the capture attached, with a progress bar.
pub(crate) fn calibrate(
    enc: &mut SentenceEncoder,
    texts: &[String],
    spec: &CaptureSpec,
    quiet: bool,
) -> Result<BTreeMap<String, InputStats>> {
    let cap = Capture::attach(&mut enc.model, spec)?;
    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(texts.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("calibrating [{bar:30}] {pos}/{len} sentences {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let chunk = enc.batch_size.max(1) * 4;
    let mut res = Ok(());
    for part in texts.chunks(chunk) {
        let refs: Vec<&str> = part.iter().map(String::as_str).collect();
        if let Err(e) = enc.embed(&refs) {
            res = Err(e);
            break;
        }
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    let stats = cap.detach(&mut enc.model)?;
    res?;
    Ok(stats)
}

#[derive(Serialize)]
struct LayerOut {
    path: String,
    bits: u32,
    kernel: &'static str,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha: Option<f32>,
    /// AWQ's clipping: calibration output error after / before clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    clip_error_ratio: Option<f64>,
}

#[derive(Serialize)]
struct Out {
    model: String,
    output: String,
    method: String,
    bits: u32,
    group_size: Option<usize>,
    calibration_sentences: usize,
    /// Where the calibration sentences came from (empty without calibration).
    calibration_source: String,
    layers: Vec<LayerOut>,
    linear_bytes: usize,
    linear_f32_bytes: usize,
}

/// Options of a directory quantization.
#[derive(Debug, Clone)]
pub(crate) struct DirJob<'a> {
    pub(crate) input: &'a Path,
    pub(crate) output: &'a Path,
    pub(crate) method: MethodArg,
    pub(crate) bits: u32,
    pub(crate) group_size: Option<usize>,
    pub(crate) calib: Option<&'a Path>,
    pub(crate) act_order: bool,
    pub(crate) mixed_bits: &'a [u32],
    pub(crate) force: bool,
    pub(crate) json: bool,
}

/// Quantizes the encoder linears of the model directory `job.input`.
pub(crate) fn run_dir(job: &DirJob<'_>) -> Result<()> {
    if job.method == MethodArg::Smoothquant && job.bits != 8 {
        return Err(CliError::Usage(format!(
            "--method smoothquant is W8A8: it needs --bits 8, got {}",
            job.bits
        )));
    }
    let quant = WeightQuant::new(job.bits, job.group_size);
    let method = match job.method {
        MethodArg::Rtn => Method::Rtn,
        MethodArg::Gptq => Method::Gptq(GptqConfig {
            act_order: job.act_order,
            ..GptqConfig::new(quant)
        }),
        MethodArg::Awq => Method::Awq(AwqConfig::default()),
        MethodArg::Smoothquant => Method::SmoothQuant { alpha: 0.5 },
    };
    let mut enc = SentenceEncoder::from_dir(job.input)?;
    let groups = bert_groups(enc.model.config.num_hidden_layers);
    // Settings are checked on every layer before any calibration runs.
    if job.method != MethodArg::Smoothquant {
        for g in &groups {
            for l in &g.linears {
                quant.group_for(l, in_features(&enc, l)?)?;
            }
        }
    }
    let mixed = !job.mixed_bits.is_empty();
    if mixed && !matches!(job.method, MethodArg::Rtn | MethodArg::Gptq) {
        return Err(CliError::Usage(
            "--mixed-bits works with --method rtn or gptq (AWQ and SmoothQuant rescale the \
             model once per width)"
                .into(),
        ));
    }
    // The output directory is reserved before the long work: a bad location fails now, and
    // the partial directory is removed on any error, SIGINT/SIGTERM, or by the next run.
    let partial = PartialDir::begin(job.input, job.output, job.force)?;
    let (texts, calib_source) = if method.needs().is_some() || mixed {
        sentences::calibration(job.calib)?
    } else {
        (Vec::new(), String::new())
    };
    let stats = match method.needs() {
        None => BTreeMap::new(),
        Some(hessian) => {
            let spec = CaptureSpec {
                patterns: groups.iter().flat_map(|g| g.linears.clone()).collect(),
                hessian,
            };
            calibrate(&mut enc, &texts, &spec, job.json)?
        }
    };
    let n_calib = texts.len();
    let layers = if mixed {
        mixed_layers(&mut enc, &groups, &stats, &method, job, &texts)?
    } else {
        quantize_linears(&mut enc.model, &groups, &stats, &method, quant)?
    };
    partial.finish(&enc.model, &layers, &command_line())?;
    report(job, &layers, n_calib, &calib_source)
}

fn bert_of(enc: &mut SentenceEncoder) -> &mut dyn compress_core::Layer<f32> {
    &mut enc.model
}

/// Mixed precision: every layer quantized at each width of `--mixed-bits` and `--bits`,
/// each alone measured by `1 - mean cosine` of the embeddings of (up to 64) calibration
/// sentences, then widths chosen greedily under the bytes of uniform `--bits`.
fn mixed_layers(
    enc: &mut SentenceEncoder,
    groups: &[ScaleGroup],
    stats: &BTreeMap<String, InputStats>,
    method: &Method,
    job: &DirJob<'_>,
    texts: &[String],
) -> Result<Vec<QuantizedLinear>> {
    let mut widths: Vec<u32> = job.mixed_bits.to_vec();
    widths.push(job.bits);
    widths.sort_unstable();
    widths.dedup();
    let mut candidates = Vec::new();
    let mut budget = 0;
    for &b in &widths {
        let q = WeightQuant::new(b, job.group_size);
        let layers = quantize_linears(&mut enc.model, groups, stats, method, q)?;
        if b == job.bits {
            budget = layers.iter().map(QuantizedLinear::size_bytes).sum();
        }
        candidates.push(layers);
    }
    let subset: Vec<&str> = texts.iter().take(64).map(String::as_str).collect();
    let reference = enc.embed(&subset)?;
    let choices = layer_sensitivity(enc, bert_of, &candidates, |e| {
        let got = e
            .embed(&subset)
            .map_err(|err| compress_core::CoreError::config("sensitivity", err.to_string()))?;
        let cos = cosine_rows(&reference.view(), &got.view())
            .map_err(|err| compress_core::CoreError::config("sensitivity", err.to_string()))?;
        Ok(1.0 - cos.iter().sum::<f64>() / cos.len().max(1) as f64)
    })?;
    let pick = choose_bits(&choices, budget)?;
    Ok(pick
        .iter()
        .enumerate()
        .map(|(i, &j)| candidates[j][i].clone())
        .collect())
}

fn in_features(enc: &SentenceEncoder, path: &str) -> Result<usize> {
    let mut k = None;
    compress_core::Module::visit(
        &enc.model,
        &mut compress_core::ParamPath::root(),
        &mut |p: &compress_core::ParamPath, param: &compress_core::Param<f32>| {
            if p.to_string() == format!("{path}.weight") {
                k = param.shape().get(1).copied();
            }
        },
    );
    k.ok_or_else(|| CliError::Usage(format!("the model has no linear layer `{path}`")))
}

fn report(
    job: &DirJob<'_>,
    layers: &[QuantizedLinear],
    calib: usize,
    calib_source: &str,
) -> Result<()> {
    let outs: Vec<LayerOut> = layers
        .iter()
        .map(|l| LayerOut {
            path: l.path.clone(),
            bits: match l.weight.scheme() {
                compress_quant::QuantScheme::Int(s) => s.bits,
                _ => 32,
            },
            kernel: compress_quant::calibrated::kernel_name(&l.weight),
            bytes: l.size_bytes(),
            alpha: l.alpha,
            clip_error_ratio: l.clip_error.map(|[c, u]| c / u.max(f64::MIN_POSITIVE)),
        })
        .collect();
    let f32_bytes: usize = layers
        .iter()
        .map(|l| 4 * (l.weight.len() + l.bias.as_ref().map_or(0, Vec::len)))
        .sum();
    let out = Out {
        model: job.input.display().to_string(),
        output: job.output.display().to_string(),
        method: format!("{:?}", job.method).to_lowercase(),
        bits: job.bits,
        group_size: job.group_size,
        calibration_sentences: calib,
        calibration_source: calib_source.to_string(),
        linear_bytes: outs.iter().map(|l| l.bytes).sum(),
        linear_f32_bytes: f32_bytes,
        layers: outs,
    };
    println!(
        "{} -> {}: {} linear layers, method {}, int{}{}, {} calibration sentences{}",
        out.model,
        out.output,
        out.layers.len(),
        out.method,
        out.bits,
        out.group_size.map_or(String::new(), |g| format!(" g{g}")),
        out.calibration_sentences,
        if calib_source.is_empty() {
            String::new()
        } else {
            format!(" ({calib_source})")
        }
    );
    println!(
        "  linear weights {} B (f32 {} B, {:.1}%)",
        out.linear_bytes,
        out.linear_f32_bytes,
        100.0 * out.linear_bytes as f64 / out.linear_f32_bytes.max(1) as f64
    );
    if job.json {
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(())
}
