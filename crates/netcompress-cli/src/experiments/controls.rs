//! Fair controls, seeds and stated targets shared by the experiments.
//!
//! An experiment that fine-tunes a compressed model also fine-tunes an f32 copy of the same
//! baseline with the same epochs, optimizer and schedule (the *control*), so that extra
//! training is not credited to the technique. Its verdict compares the compressed model with
//! the better of the baseline and the control, per seed, over a number of seeds fixed here
//! (before any test accuracy was looked at), as mean and standard error.

use serde::Serialize;
use serde_json::{Map, Value, json};

use compress_nn::{Dataset, Sequential};

use super::baseline::copy_mlp;
use super::{Ctx, DataSource, Metrics, Report};
use crate::error::{CliError, Result};

/// Seeds a fine-tuning experiment averages over: 5 on digits (a test sample is 0.28 points,
/// so single runs differ by sample noise), 3 with `--fast`; 2 on MNIST (10,000 test samples,
/// each training minutes long), 1 with `--fast`.
pub(crate) fn seed_count(ctx: &Ctx) -> usize {
    match (&ctx.data, ctx.fast) {
        (DataSource::Digits, false) => 5,
        (DataSource::Digits, true) => 3,
        (DataSource::Mnist(_), false) => 2,
        (DataSource::Mnist(_), true) => 1,
    }
}

/// Mean, standard error of the mean and the per-seed values of one figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Stat {
    /// Mean over seeds.
    pub(crate) mean: f64,
    /// Sample standard deviation over `sqrt(n)`; 0 for a single seed.
    pub(crate) std_error: f64,
    /// The values, one per seed.
    pub(crate) per_seed: Vec<f64>,
}

impl Stat {
    /// Statistics of `v`.
    pub(crate) fn of(v: &[f64]) -> Self {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            std_error: (var / n).sqrt(),
            per_seed: v.to_vec(),
        }
    }
}

/// One seed of an experiment with a fine-tuned control.
#[derive(Debug, Clone)]
pub(crate) struct SeedRun {
    /// The trained f32 model.
    pub(crate) baseline: Metrics,
    /// The f32 model fine-tuned exactly like the compressed one.
    pub(crate) control: Metrics,
    /// The compressed model, measured in the format it is stored in.
    pub(crate) compressed: Metrics,
    /// Experiment-specific details of this seed.
    pub(crate) extra: Value,
}

/// How the models of an experiment were trained, for the report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recipe {
    /// The baseline's training.
    pub(crate) baseline: &'static str,
    /// The fine-tuning the compressed model and the control both get.
    pub(crate) fine_tune: &'static str,
}

/// The reference MLP's recipe (`baseline::train_reference_mlp`), shared by the experiments
/// that start from it.
pub(crate) const REFERENCE_MLP: &str =
    "reference MLP: SGD lr 0.05 momentum 0.9, constant rate, batch 32, 30 epochs (15 with --fast)";

/// Runs `run` for every seed of [`seed_count`] and aggregates: the report's accuracies are
/// means over seeds (sizes and costs are the first seed's), `extra` is the first seed's with
/// `seeds`, `accuracy` (mean, standard error, per seed of baseline, control and compressed),
/// `reference` (the better of baseline and control by mean), `vs_reference_points` (the
/// paired per-seed difference compressed - reference, in points) and `recipe` added. `run`
/// gets the seed's context and the context's flat `(train, test)` data, loaded once.
pub(crate) fn over_seeds(
    name: &str,
    ctx: &Ctx,
    recipe: Recipe,
    mut run: impl FnMut(&Ctx, &Dataset<f32>, &Dataset<f32>) -> Result<SeedRun>,
) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let seeds: Vec<u64> = (0..seed_count(ctx) as u64).map(|i| ctx.seed + i).collect();
    let mut runs = Vec::new();
    for &seed in &seeds {
        let seed_ctx = Ctx {
            seed,
            ..ctx.clone()
        };
        runs.push(run(&seed_ctx, &train, &test)?);
    }
    let first = runs
        .first()
        .cloned()
        .ok_or_else(|| CliError::Usage("no seeds".into()))?;
    let acc = |f: fn(&SeedRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let (b, c, k) = (
        acc(|r| r.baseline.accuracy),
        acc(|r| r.control.accuracy),
        acc(|r| r.compressed.accuracy),
    );
    let (bs, cs, ks) = (Stat::of(&b), Stat::of(&c), Stat::of(&k));
    let (reference, refs) = if cs.mean > bs.mean {
        ("control", &c)
    } else {
        ("baseline", &b)
    };
    let diff: Vec<f64> = k.iter().zip(refs).map(|(x, r)| 100.0 * (x - r)).collect();
    let mut extra = match first.extra {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("detail".into(), other);
            m
        }
    };
    extra.insert("seeds".into(), json!(seeds));
    extra.insert(
        "accuracy".into(),
        json!({"baseline": bs, "control": cs, "compressed": ks}),
    );
    extra.insert("reference".into(), json!(reference));
    extra.insert("vs_reference_points".into(), json!(Stat::of(&diff)));
    extra.insert(
        "recipe".into(),
        json!({"baseline": recipe.baseline, "fine_tune_and_control": recipe.fine_tune}),
    );
    extra.insert(
        "per_seed_note".into(),
        json!("accuracies are means over seeds; every other figure in extra, and the sizes and costs, are the first seed's"),
    );
    let with = |mut m: Metrics, s: &Stat| {
        m.accuracy = s.mean;
        m
    };
    let mut report = Report::new(
        name,
        ctx,
        with(first.baseline, &bs),
        with(first.compressed, &ks),
        Value::Object(extra),
    );
    report.control = Some(with(first.control, &cs));
    Ok(report)
}

/// Mean accuracy difference compressed - reference of an [`over_seeds`] report, in points.
pub(crate) fn vs_reference(report: &Report) -> f64 {
    report.extra["vs_reference_points"]["mean"]
        .as_f64()
        .unwrap_or(f64::NEG_INFINITY)
}

/// The control of one seed: a copy of `baseline` (an MLP of `widths`) trained by `fine_tune`,
/// which returns its test accuracy, measured as a dense f32 model.
pub(crate) fn control_of(
    ctx: &Ctx,
    widths: &[usize],
    baseline: &Sequential<f32>,
    mut fine_tune: impl FnMut(&mut Sequential<f32>) -> Result<f64>,
) -> Result<Metrics> {
    let mut control = copy_mlp(widths, baseline)?;
    let acc = fine_tune(&mut control)?;
    Metrics::dense_f32(&control, &[ctx.input_dim()], acc)
}

/// Records the `measured` figures in `extra` and sets the targets of an [`over_seeds`]
/// report: `flags`, plus the compressed model's mean accuracy within `points` of the better
/// of baseline and control.
pub(crate) fn finish(
    report: &mut Report,
    measured: &[(&str, f64)],
    flags: &[(&str, bool)],
    points: f64,
) {
    if let Value::Object(m) = &mut report.extra {
        for (k, v) in measured {
            m.insert((*k).to_string(), json!(v));
        }
    }
    let name = format!("accuracy_within_{points}_points_of_better_of_baseline_and_control");
    let mut all: Vec<(&str, bool)> = flags.to_vec();
    all.push((&name, vs_reference(report) >= -points));
    set_targets(report, &all);
}

/// Sets `extra.targets` of `report` to the named flags.
pub(crate) fn set_targets(report: &mut Report, targets: &[(&str, bool)]) {
    let map: Map<String, Value> = targets
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::Bool(*v)))
        .collect();
    if let Value::Object(m) = &mut report.extra {
        m.insert("targets".into(), Value::Object(map));
    }
}

/// The names of the targets of `report` that are not met, or an error naming the experiment
/// when it states none.
pub(crate) fn failed_targets(report: &Report) -> Result<Vec<String>> {
    let targets = report.extra["targets"]
        .as_object()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "experiment `{}` states no extra.targets",
                report.experiment
            ))
        })?;
    Ok(targets
        .iter()
        .filter(|(_, v)| v.as_bool() != Some(true))
        .map(|(k, _)| k.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_has_the_standard_error_of_the_mean() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        // Sample variance 5/3, over n = 4.
        assert!((s.std_error - (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.7]).std_error, 0.0);
    }

    fn ctx() -> Ctx {
        Ctx {
            data: DataSource::Digits,
            seed: 4,
            fast: true,
            progress: false,
            models: super::super::ModelOpts::default(),
        }
    }

    fn m(accuracy: f64) -> Metrics {
        Metrics {
            accuracy,
            ..Metrics::default()
        }
    }

    #[test]
    fn over_seeds_compares_with_the_better_of_baseline_and_control_per_seed() {
        let mut seen = Vec::new();
        let r = over_seeds(
            "x",
            &ctx(),
            Recipe {
                baseline: "b",
                fine_tune: "f",
            },
            |c, _, _| {
                seen.push(c.seed);
                let s = (c.seed - 4) as f64;
                Ok(SeedRun {
                    baseline: m(0.90),
                    control: m(0.92 + 0.01 * s),
                    compressed: m(0.91 + 0.02 * s),
                    extra: json!({"k": c.seed}),
                })
            },
        )
        .unwrap();
        assert_eq!(seen, vec![4, 5, 6]);
        assert_eq!(r.extra["reference"], "control");
        // Per seed compressed - control: -1, 0, +1 points.
        assert!(vs_reference(&r).abs() < 1e-9);
        assert!((r.control.unwrap().accuracy - 0.93).abs() < 1e-12);
        assert!((r.compressed.accuracy - 0.93).abs() < 1e-12);
        assert_eq!(r.extra["k"], 4);
    }

    #[test]
    fn failed_targets_names_false_flags_and_requires_some() {
        let mut r = Report::new("x", &ctx(), m(0.9), m(0.9), json!({}));
        assert!(failed_targets(&r).is_err());
        set_targets(&mut r, &[("a", true), ("b", false)]);
        assert_eq!(failed_targets(&r).unwrap(), vec!["b".to_string()]);
    }
}
