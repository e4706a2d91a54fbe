//! `netcompress sweep prune|quant|distill|early-exit [--plot FILE.svg] [--json]`: accuracy
//! against sparsity, bits, temperature T or average MACs, as a table, a JSON object and an SVG.
//!
//! - `prune`: the reference MLP (64-128-64-10 on digits, 784-300-100-10 on MNIST) trained once;
//!   for each sparsity, global magnitude pruning of its weights (compress-prune), one-shot and,
//!   with `--finetune E`, after E epochs of masked fine-tuning.
//! - `quant`: the same MLP with its weights quantized to b bits and back (compress-quant
//!   `QTensor`), symmetric per output channel and per tensor.
//! - `distill`: the registered `distill-sweep` experiment (compress-distill's `Distiller`):
//!   the distilled student's mean accuracy over T, and the student trained alone.
//! - `early-exit`: the registered `early-exit` experiment (compress-dynamic's
//!   `tradeoff_curve`): accuracy against average MACs per sample as the exit threshold moves.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use compress_core::{Module, Param, ParamPath};
use compress_nn::Sequential;
use compress_nn::train::evaluate;
use compress_prune::{PruneConfig, Scope, prune};
use compress_quant::{IntScheme, QTensor};
use ndarray::ArrayD;
use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, Result};
use crate::experiments::baseline::{train_reference_mlp, train_sgd};
use crate::experiments::{Ctx, DataSource, find};
use crate::plot::{Plot, Series, write_svg};

/// What to sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SweepKind {
    /// Accuracy vs global magnitude sparsity.
    Prune,
    /// Accuracy vs weight bits.
    Quant,
    /// Distilled student accuracy vs temperature T.
    Distill,
    /// Accuracy vs average MACs per sample of an early-exit network.
    EarlyExit,
}

/// Arguments of `sweep`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SweepArgs {
    /// The sweep.
    #[arg(value_enum)]
    pub(crate) kind: SweepKind,
    /// Draw the curves into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<PathBuf>,
    /// Print the points as one JSON object on the last line.
    #[arg(long)]
    pub(crate) json: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Directory of MNIST IDX files (default: the embedded digits).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Fast settings (fewer epochs and points).
    #[arg(long)]
    pub(crate) fast: bool,
    /// Epochs of masked fine-tuning after pruning (`prune` only; 0 = one-shot only).
    #[arg(long, default_value_t = 0)]
    pub(crate) finetune: usize,
}

/// One point of a sweep.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    /// Series name.
    pub(crate) series: String,
    /// X value (sparsity, bits, T, MACs).
    pub(crate) x: f64,
    /// Test accuracy in [0, 1].
    pub(crate) accuracy: f64,
}

/// A whole sweep.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SweepReport {
    /// `prune`, `quant`, `distill` or `early-exit`.
    pub(crate) sweep: &'static str,
    /// `digits` or `mnist`.
    pub(crate) data: String,
    /// Seed.
    pub(crate) seed: u64,
    /// What x is.
    pub(crate) x: &'static str,
    /// Accuracy of the uncompressed reference.
    pub(crate) baseline_accuracy: f64,
    /// Points of every series.
    pub(crate) points: Vec<Point>,
    /// The SVG written, if any.
    pub(crate) plot: Option<String>,
}

/// The stored value of every parameter.
fn snapshot(net: &Sequential<f32>) -> Vec<ArrayD<f32>> {
    let mut out = Vec::new();
    net.visit(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &Param<f32>| {
            out.push(p.value().clone());
        },
    );
    out
}

/// Restores a snapshot, dropping masks and other parametrizations.
fn restore(net: &mut Sequential<f32>, snap: &[ArrayD<f32>]) -> Result<()> {
    let mut it = snap.iter();
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            if let Some(v) = it.next() {
                p.reset(v.clone());
            }
            Ok(())
        },
    )?;
    Ok(())
}

fn sweep_prune(ctx: &Ctx, finetune: usize) -> Result<(f64, Vec<Point>)> {
    let (train, test) = ctx.load_flat()?;
    let (mut net, base) = train_reference_mlp(ctx, &train, &test)?;
    let snap = snapshot(&net);
    let sparsities: &[f64] = if ctx.fast {
        &[0.0, 0.5, 0.8, 0.9, 0.95]
    } else {
        &[0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    };
    let mut points = Vec::new();
    for &s in sparsities {
        restore(&mut net, &snap)?;
        prune(&mut net, &PruneConfig::new(s).scope(Scope::Global))?;
        let acc = evaluate(&mut net, &test, 512)?;
        points.push(Point {
            series: "one-shot".into(),
            x: s,
            accuracy: acc,
        });
        if finetune > 0 {
            let accuracy = train_sgd(
                ctx,
                &format!("fine-tune {s}"),
                &mut net,
                &train,
                &test,
                finetune,
                0.01,
            )?;
            points.push(Point {
                series: format!("fine-tuned {finetune} epochs"),
                x: s,
                accuracy,
            });
        }
    }
    Ok((base, points))
}

fn sweep_quant(ctx: &Ctx) -> Result<(f64, Vec<Point>)> {
    let (train, test) = ctx.load_flat()?;
    let (mut net, base) = train_reference_mlp(ctx, &train, &test)?;
    let snap = snapshot(&net);
    let bits: &[u32] = if ctx.fast {
        &[8, 4, 3, 2]
    } else {
        &[8, 6, 5, 4, 3, 2]
    };
    let mut points = Vec::new();
    for (series, per_channel) in [("per-channel", true), ("per-tensor", false)] {
        for &b in bits {
            restore(&mut net, &snap)?;
            let scheme = if per_channel {
                IntScheme::new(b).per_channel(0)
            } else {
                IntScheme::new(b)
            };
            net.visit_mut(
                &mut ParamPath::root(),
                &mut |_: &ParamPath, p: &mut Param<f32>| {
                    if p.shape().len() >= 2 {
                        let q = QTensor::quantize(p.value(), scheme)
                            .map_err(|e| compress_core::CoreError::config("bits", e.to_string()))?;
                        p.set_value(q.dequantize::<f32>())?;
                    }
                    Ok(())
                },
            )?;
            points.push(Point {
                series: series.into(),
                x: f64::from(b),
                accuracy: evaluate(&mut net, &test, 512)?,
            });
        }
    }
    Ok((base, points))
}

/// Runs a registered experiment and returns its report as JSON.
fn run_experiment(ctx: &Ctx, name: &str) -> Result<Value> {
    let exp = find(name)?;
    let report = (exp.run)(ctx)?;
    Ok(serde_json::to_value(&report)?)
}

fn missing(name: &str, key: &str) -> CliError {
    CliError::Usage(format!("experiment `{name}` did not report `{key}`"))
}

fn sweep_distill(ctx: &Ctx) -> Result<(f64, Vec<Point>)> {
    let r = run_experiment(ctx, "distill-sweep")?;
    let extra = &r["extra"];
    let curve = extra["curve"]
        .as_array()
        .ok_or_else(|| missing("distill-sweep", "curve"))?;
    let mut points = Vec::new();
    for p in curve {
        let (Some(t), Some(m)) = (p["temperature"].as_f64(), p["mean"].as_f64()) else {
            return Err(missing("distill-sweep", "curve[].temperature/mean"));
        };
        points.push(Point {
            series: "distilled student".into(),
            x: t,
            accuracy: m,
        });
    }
    if let Some(alone) = extra["alone_mean"].as_f64() {
        let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
        points.extend(xs.into_iter().map(|x| Point {
            series: "student alone".into(),
            x,
            accuracy: alone,
        }));
    }
    let teacher = extra["teacher"]["accuracy"].as_f64().unwrap_or(f64::NAN);
    Ok((teacher, points))
}

fn sweep_early_exit(ctx: &Ctx) -> Result<(f64, Vec<Point>)> {
    let r = run_experiment(ctx, "early-exit")?;
    let curve = r["extra"]["accuracy_vs_macs_curve"]
        .as_array()
        .ok_or_else(|| missing("early-exit", "accuracy_vs_macs_curve"))?;
    let mut points = Vec::new();
    for p in curve {
        let (Some(m), Some(a)) = (p["avg_macs"].as_f64(), p["accuracy"].as_f64()) else {
            return Err(missing(
                "early-exit",
                "accuracy_vs_macs_curve[].avg_macs/accuracy",
            ));
        };
        points.push(Point {
            series: "early exits".into(),
            x: m,
            accuracy: a,
        });
    }
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    points.dedup_by(|a, b| a.x == b.x && a.accuracy == b.accuracy);
    let base = r["baseline"]["accuracy"].as_f64().unwrap_or(f64::NAN);
    Ok((base, points))
}

/// Runs `sweep`.
///
/// # Errors
///
/// Training, experiment, plotting and I/O errors.
pub(crate) fn run(a: &SweepArgs) -> Result<()> {
    let ctx = Ctx {
        data: a.data.clone().map_or(DataSource::Digits, DataSource::Mnist),
        seed: a.seed,
        fast: a.fast,
        progress: !a.json,
        models: crate::experiments::ModelOpts::default(),
    };
    let (name, x, (base, points)) = match a.kind {
        SweepKind::Prune => ("prune", "sparsity", sweep_prune(&ctx, a.finetune)?),
        SweepKind::Quant => ("quant", "bits", sweep_quant(&ctx)?),
        SweepKind::Distill => ("distill", "temperature", sweep_distill(&ctx)?),
        SweepKind::EarlyExit => ("early-exit", "avg_macs", sweep_early_exit(&ctx)?),
    };
    println!("{:<28} {:>12} {:>9}", "series", x, "accuracy");
    for p in &points {
        println!(
            "{:<28} {:>12.4} {:>8.2}%",
            p.series,
            p.x,
            100.0 * p.accuracy
        );
    }
    println!("baseline accuracy {:.2}%", 100.0 * base);
    if let Some(path) = &a.plot {
        let mut series: Vec<Series> = Vec::new();
        for p in &points {
            match series.iter_mut().find(|s| s.label == p.series) {
                Some(s) => s.points.push((p.x, p.accuracy)),
                None => series.push(Series {
                    label: p.series.clone(),
                    points: vec![(p.x, p.accuracy)],
                }),
            }
        }
        let plot = Plot {
            title: format!("{name} sweep on {}: accuracy vs {x}", ctx.data_name()),
            x_label: x.replace('_', " "),
            y_label: "test accuracy".into(),
            series,
        };
        write_svg(&plot, path)?;
        println!("wrote {}", path.display());
    }
    if a.json {
        let r = SweepReport {
            sweep: name,
            data: ctx.data_name().to_string(),
            seed: a.seed,
            x,
            baseline_accuracy: base,
            points,
            plot: a.plot.as_ref().map(|p| p.display().to_string()),
        };
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
