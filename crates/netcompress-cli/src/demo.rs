//! `netcompress demo`: every registered experiment on the embedded digits, one table.

use std::time::Instant;

use crate::error::{CliError, Result};
use crate::experiments::controls::failed_targets;
use crate::experiments::{Ctx, DataSource, NOT_IN_DEMO, REGISTRY, Report};

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".to_string()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// Prints reports as one table: accuracy, params, bytes and MACs, baseline vs compressed;
/// `ctrl acc` is the f32 control fine-tuned like the compressed model (`-` where the
/// experiment does not fine-tune), and `delta` is compressed minus the better of baseline
/// and control, in points.
pub(crate) fn print_table(reports: &[Report]) {
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>7} | {:>9} {:>9} | {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7}",
        "experiment",
        "base acc",
        "ctrl acc",
        "comp acc",
        "delta",
        "params",
        "nonzero",
        "base bytes",
        "comp bytes",
        "ratio",
        "base MACs",
        "comp MACs",
        "ratio"
    );
    for r in reports {
        let (b, c) = (&r.baseline, &r.compressed);
        let reference = r.control.map_or(b.accuracy, |k| k.accuracy.max(b.accuracy));
        let control = r
            .control
            .map_or("-".to_string(), |k| format!("{:.2}%", k.accuracy * 100.0));
        println!(
            "{:<22} {:>7.2}% {:>8} {:>7.2}% {:>+7.2} | {:>9} {:>9} | {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7}",
            r.experiment,
            b.accuracy * 100.0,
            control,
            c.accuracy * 100.0,
            (c.accuracy - reference) * 100.0,
            c.params,
            c.nonzero,
            b.bytes,
            c.bytes,
            ratio(b.bytes as f64, c.bytes as f64),
            b.macs,
            c.macs,
            ratio(b.macs as f64, c.macs as f64),
        );
    }
}

/// Runs `demo`; with `check`, fails when an experiment's stated targets are missing or not met.
pub(crate) fn run(seed: u64, only: Option<&str>, json: bool, check: bool) -> Result<()> {
    let ctx = Ctx {
        data: DataSource::Digits,
        seed,
        fast: true,
        progress: true,
        models: crate::experiments::ModelOpts::default(),
    };
    let mut reports = Vec::new();
    let start = Instant::now();
    for e in REGISTRY
        .iter()
        .filter(|e| !NOT_IN_DEMO.contains(&e.name))
        .filter(|e| only.is_none_or(|o| e.name.contains(o)))
    {
        let t = Instant::now();
        eprintln!("running {} ...", e.name);
        let r = (e.run)(&ctx)?;
        eprintln!("  {} done in {:.1} s", e.name, t.elapsed().as_secs_f64());
        reports.push(r);
    }
    println!();
    print_table(&reports);
    println!(
        "\n{} experiments on the embedded UCI digits (fast settings) in {:.1} s; accuracy is test accuracy, bytes are weight storage in each experiment's output format, MACs per sample.",
        reports.len(),
        start.elapsed().as_secs_f64()
    );
    if json {
        for r in &reports {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    if check {
        let mut failures = Vec::new();
        for r in &reports {
            match failed_targets(r) {
                Ok(f) if f.is_empty() => {}
                Ok(f) => failures.push(format!("{}: {}", r.experiment, f.join(", "))),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !failures.is_empty() {
            return Err(CliError::Usage(format!(
                "targets not met: {}",
                failures.join("; ")
            )));
        }
        println!(
            "every experiment's targets met ({} experiments)",
            reports.len()
        );
    }
    Ok(())
}
