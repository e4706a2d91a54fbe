//! Dynamic computation experiments: `early-exit` (BranchyNet-style exits with calibrated
//! thresholds), `slimmable` (one network at widths 0.25..1.0 vs individually trained twins)
//! and `dynamic-budget` (accuracy and MACs at battery levels).

use compress_core::Layer;
use compress_dynamic::{
    Budget, CalibrationTarget, DynamicOutput, EarlyExitNet, ExitDistill, ExitRule, ExitTrainConfig,
    SandwichConfig, SlimmableNet, Thresholds, calibrate, recalibrate_bn, tradeoff_curve,
    train_early_exit, train_exit_heads, train_sandwich,
};
use compress_nn::train::evaluate;
use compress_nn::{Adam, Dataset, Linear, LrSchedule, ReLU, Sequential};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::controls::Stat;
use super::{Ctx, DataSource, Metrics, Report};
use crate::error::{CliError, Result};

/// Hidden widths of the early-exit backbone's three stages.
fn backbone(ctx: &Ctx) -> [usize; 3] {
    match ctx.data {
        DataSource::Digits => [64, 128, 128],
        DataSource::Mnist(_) => [64, 256, 256],
    }
}

fn block(i: usize, o: usize, rng: &mut StdRng) -> Sequential<f32> {
    Sequential::new()
        .with(Linear::new(i, o, true, rng))
        .with(ReLU::new())
}

/// The backbone with exits after stage 0 and 1 and the classifier after stage 2; with
/// `exits = false` only the classifier (the static network).
fn exit_net(ctx: &Ctx, seed: u64, exits: bool) -> EarlyExitNet<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let [h0, h1, h2] = backbone(ctx);
    let mut net =
        EarlyExitNet::new(&[ctx.input_dim()]).with_stage(block(ctx.input_dim(), h0, &mut rng));
    if exits {
        net = net.with_exit(Linear::new(h0, 10, true, &mut rng));
    }
    net = net.with_stage(block(h0, h1, &mut rng));
    if exits {
        net = net.with_exit(Linear::new(h1, 10, true, &mut rng));
    }
    net.with_stage(block(h1, h2, &mut rng))
        .with_exit(Linear::new(h2, 10, true, &mut rng))
}

fn exit_epochs(ctx: &Ctx) -> usize {
    match ctx.data {
        DataSource::Digits => ctx.epochs(60, 40),
        DataSource::Mnist(_) => ctx.epochs(10, 2),
    }
}

/// Seeds of `early-exit`: 3 on digits; on MNIST 2 (1 with `--fast`), like the experiments
/// that average over seeds.
fn seeds(ctx: &Ctx) -> Vec<u64> {
    let n = match ctx.data {
        DataSource::Digits => 3,
        DataSource::Mnist(_) => super::controls::seed_count(ctx) as u64,
    };
    (0..n).map(|i| ctx.seed + i).collect()
}

/// The training settings of `early-exit`: Adam 3e-3 under a cosine schedule, the last exit
/// distilled into the earlier ones (T = 3, alpha = 0.5) when there are any.
fn exit_config(ctx: &Ctx, net: &EarlyExitNet<f32>, seed: u64) -> ExitTrainConfig {
    ExitTrainConfig {
        epochs: exit_epochs(ctx),
        seed,
        distill: (net.num_exits() > 1).then_some(ExitDistill {
            temperature: 3.0,
            alpha: 0.5,
        }),
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        ..ExitTrainConfig::default()
    }
}

/// Trains `net` (all exits jointly, the last distilled into the earlier ones).
fn train_exits(
    ctx: &Ctx,
    net: &mut EarlyExitNet<f32>,
    train: &Dataset<f32>,
    seed: u64,
) -> Result<()> {
    let cfg = exit_config(ctx, net, seed);
    train_early_exit(net, &mut Adam::new(3e-3), train, &cfg)?;
    Ok(())
}

/// Adds the early heads to the trained static network `net` and trains only them, on its
/// frozen backbone, with the same settings: the static network is left as it is.
fn add_exits(
    ctx: &Ctx,
    net: &mut EarlyExitNet<f32>,
    train: &Dataset<f32>,
    seed: u64,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xE817);
    let [h0, h1, _] = backbone(ctx);
    net.insert_exit(0, Box::new(Linear::new(h0, 10, true, &mut rng)))?;
    net.insert_exit(1, Box::new(Linear::new(h1, 10, true, &mut rng)))?;
    let cfg = exit_config(ctx, net, seed);
    train_exit_heads(net, &mut Adam::new(3e-3), train, &cfg)?;
    Ok(())
}

/// Calibrates `net`'s thresholds on `valid` (max softmax, no accuracy drop allowed there)
/// and runs `test` with them.
fn calibrated_run(
    net: &mut EarlyExitNet<f32>,
    valid: &Dataset<f32>,
    test: &Dataset<f32>,
) -> Result<(Thresholds, Vec<f64>, DynamicOutput<f32>)> {
    let profile = net.profile(valid, ExitRule::MaxSoftmax, 512)?;
    let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
    let out = net.infer(&test.x, &cal.thresholds)?;
    Ok((cal.thresholds, profile.exit_accuracies(), out))
}

/// `(train, valid, test)`: 20% of the training set held out for calibration.
fn splits(ctx: &Ctx, seed: u64) -> Result<(Dataset<f32>, Dataset<f32>, Dataset<f32>)> {
    let (train_all, test) = ctx.load_flat()?;
    let (train, valid) = train_all.split_stratified(0.2, seed)?;
    Ok((train, valid, test))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn outcome(out: &DynamicOutput<f32>, labels: &[usize]) -> Value {
    json!({
        "accuracy": out.accuracy(labels),
        "avg_macs": out.avg_macs(),
        "exit_fractions": out.exit_fractions(),
    })
}

/// Runs `early-exit`: per seed, the static network is trained alone (the baseline), then
/// early heads are added and trained on its frozen backbone (the compressed model, whose
/// last exit is the baseline itself); the same exits trained jointly with the backbone are
/// reported beside it.
pub(crate) fn run_early_exit(ctx: &Ctx) -> Result<Report> {
    let mut runs = Vec::new();
    let (mut acc_dyn, mut acc_static, mut acc_last, mut macs_dyn) =
        (vec![], vec![], vec![], vec![]);
    let (mut acc_joint, mut macs_joint) = (vec![], vec![]);
    let mut fractions = [0.0; 3];
    let mut curve = Value::Null;
    let mut entropy = Value::Null;
    let mut full_macs = 0;
    let mut baseline = None;
    let mut dyn_params = 0;
    for seed in seeds(ctx) {
        let (train, valid, test) = splits(ctx, seed)?;
        // The static network trained alone: the baseline, and the frozen backbone.
        let mut net = exit_net(ctx, seed, false);
        train_exits(ctx, &mut net, &train, seed)?;
        let a_static = evaluate(&mut net, &test, 512)?;
        full_macs = net.cost(&[ctx.input_dim()])?.macs;
        if baseline.is_none() {
            baseline = Some(Metrics::dense_f32(&net, &[ctx.input_dim()], 0.0)?);
        }
        add_exits(ctx, &mut net, &train, seed)?;
        let (thresholds, valid_acc, out) = calibrated_run(&mut net, &valid, &test)?;
        let last = net.infer(&test.x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))?;
        // The same exits trained jointly with the backbone (the earlier method).
        let mut joint = exit_net(ctx, seed, true);
        train_exits(ctx, &mut joint, &train, seed)?;
        let (j_thresholds, _, j_out) = calibrated_run(&mut joint, &valid, &test)?;
        acc_dyn.push(out.accuracy(&test.labels));
        acc_static.push(a_static);
        acc_last.push(last.accuracy(&test.labels));
        macs_dyn.push(out.avg_macs());
        acc_joint.push(j_out.accuracy(&test.labels));
        macs_joint.push(j_out.avg_macs());
        for (f, x) in fractions.iter_mut().zip(out.exit_fractions()) {
            *f += x;
        }
        if curve.is_null() {
            let test_profile = net.profile(&test, ExitRule::MaxSoftmax, 512)?;
            curve = json!(
                tradeoff_curve(&test_profile, 10, 11)?
                    .iter()
                    .map(|p| json!({
                        "tau": p.tau,
                        "accuracy": p.simulation.accuracy,
                        "avg_macs": p.simulation.avg_macs,
                        "exit_fractions": p.simulation.exit_fractions,
                    }))
                    .collect::<Vec<_>>()
            );
            let ep = net.profile(&valid, ExitRule::Entropy, 512)?;
            let ec = calibrate(&ep, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
            let eo = net.infer(&test.x, &ec.thresholds)?;
            entropy = json!({"thresholds": ec.thresholds.taus, "test": outcome(&eo, &test.labels)});
            dyn_params = compress_core::Module::num_params(&net);
        }
        runs.push(json!({
            "seed": seed,
            "thresholds": thresholds.taus,
            "valid_exit_accuracy": valid_acc,
            "static_alone_accuracy": a_static,
            "last_exit_accuracy": last.accuracy(&test.labels),
            "dynamic": outcome(&out, &test.labels),
            "joint": {"thresholds": j_thresholds.taus, "test": outcome(&j_out, &test.labels)},
        }));
    }
    let n = runs.len() as f64;
    let mut baseline = baseline.ok_or_else(|| CliError::Usage("no seeds".into()))?;
    baseline.accuracy = mean(&acc_static);
    let macs = mean(&macs_dyn);
    let compressed = Metrics {
        accuracy: mean(&acc_dyn),
        params: dyn_params,
        nonzero: dyn_params,
        bytes: 4 * dyn_params,
        macs: macs.round() as u64,
    };
    let drops = |acc: &[f64]| {
        Stat::of(
            &acc_static
                .iter()
                .zip(acc)
                .map(|(s, d)| 100.0 * (s - d))
                .collect::<Vec<_>>(),
        )
    };
    let extra = json!({
        "backbone": backbone(ctx),
        "exits_after_stages": [0, 1, 2],
        "method": "static network trained alone, then the early heads trained on its frozen backbone (the last exit distilled into them)",
        "rule": "max softmax >= tau, calibrated on a 20% validation split (no accuracy drop allowed there)",
        "seeds": runs.len(),
        "full_macs": full_macs,
        "mac_reduction": 1.0 - macs / full_macs as f64,
        "targets": {
            "average_macs_at_most_half_of_static": macs <= 0.5 * full_macs as f64,
            "accuracy_at_most_0.5_points_below_static": 100.0 * (mean(&acc_static) - mean(&acc_dyn)) <= 0.5,
            "last_exit_is_the_static_network": acc_last == acc_static,
        },
        "accuracy_drop_points_vs_static_alone": 100.0 * (mean(&acc_static) - mean(&acc_dyn)),
        "accuracy_drop_points_vs_static_alone_over_seeds": drops(&acc_dyn),
        "accuracy_drop_points_vs_last_exit": 100.0 * (mean(&acc_last) - mean(&acc_dyn)),
        "exit_fractions": fractions.iter().map(|f| f / n).collect::<Vec<_>>(),
        "joint_training": {
            "about": "the same exits trained jointly with the backbone, calibrated the same way",
            "accuracy": mean(&acc_joint),
            "avg_macs": mean(&macs_joint),
            "accuracy_drop_points_vs_static_alone_over_seeds": drops(&acc_joint),
        },
        "accuracy_vs_macs_curve": curve,
        "entropy_rule": entropy,
        "runs": runs,
    });
    Ok(Report::new("early-exit", ctx, baseline, compressed, extra))
}

const WIDTHS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];

fn slim_hidden(ctx: &Ctx) -> usize {
    match ctx.data {
        DataSource::Digits => 128,
        DataSource::Mnist(_) => 256,
    }
}

fn sandwich(ctx: &Ctx, net: &mut SlimmableNet<f32>, train: &Dataset<f32>, seed: u64) -> Result<()> {
    let cfg = SandwichConfig {
        epochs: match ctx.data {
            DataSource::Digits => ctx.epochs(60, 30),
            DataSource::Mnist(_) => ctx.epochs(10, 2),
        },
        seed,
        random_widths: 2,
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        ..SandwichConfig::default()
    };
    train_sandwich(net, &mut Adam::new(3e-3), train, &cfg)?;
    Ok(())
}

/// Runs `slimmable`.
pub(crate) fn run_slimmable(ctx: &Ctx) -> Result<Report> {
    let h = slim_hidden(ctx);
    let d = ctx.input_dim();
    let n_seeds = match (&ctx.data, ctx.fast) {
        (DataSource::Digits, false) => 3,
        (DataSource::Digits, true) => 2,
        _ => 1,
    };
    let mut acc = vec![vec![]; WIDTHS.len()];
    let mut twin_acc = vec![vec![]; WIDTHS.len()];
    let mut macs = vec![0u64; WIDTHS.len()];
    let mut twin_macs = vec![0u64; WIDTHS.len()];
    let (mut recal, mut routed) = (Value::Null, Value::Null);
    let mut full_params = 0;
    for seed in (0..n_seeds).map(|i| ctx.seed + i) {
        let (train, valid, test) = splits(ctx, seed)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = SlimmableNet::<f32>::mlp(&[d, h, h, 10], &WIDTHS, true, &mut rng)?;
        sandwich(ctx, &mut net, &train, seed)?;
        full_params = compress_core::Module::num_params(&net);
        for (i, &w) in WIDTHS.iter().enumerate() {
            net.set_width(w)?;
            acc[i].push(evaluate(&mut net, &test, 512)?);
            macs[i] = net.cost(&[d])?.macs;
            // The same width trained alone.
            let hw = compress_dynamic::active_channels(w, h);
            let mut twin = SlimmableNet::<f32>::mlp(&[d, hw, hw, 10], &[1.0], true, &mut rng)?;
            sandwich(ctx, &mut twin, &train, seed)?;
            twin_acc[i].push(evaluate(&mut twin, &test, 512)?);
            twin_macs[i] = twin.cost(&[d])?.macs;
        }
        if recal.is_null() {
            // A width never trained: a fresh BN entry recalibrated on training data.
            net.add_width(0.375)?;
            recalibrate_bn(&mut net, 0.375, &train, 128, 100)?;
            recal = json!({"width": 0.375, "accuracy": evaluate(&mut net, &test, 512)?,
                           "macs": net.cost(&[d])?.macs});
            // Difficulty-based routing: width 0.25 first, the uncertain rerun at 1.0.
            let route_w = [0.25, 1.0];
            let p = net.profile_widths(&valid, &route_w, ExitRule::MaxSoftmax, 512)?;
            let cal = calibrate(&p, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
            let out = net.route(&test.x, &route_w, &cal.thresholds)?;
            routed = json!({"widths": route_w, "thresholds": cal.thresholds.taus,
                            "test": outcome(&out, &test.labels)});
        }
    }
    let per_width: Vec<Value> = WIDTHS
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            json!({
                "width": w,
                "accuracy": mean(&acc[i]),
                "macs": macs[i],
                "alone_accuracy": mean(&twin_acc[i]),
                "alone_macs": twin_macs[i],
                "gap_points": 100.0 * (mean(&twin_acc[i]) - mean(&acc[i])),
                "per_seed": acc[i], "alone_per_seed": twin_acc[i],
            })
        })
        .collect();
    let max_gap = (0..WIDTHS.len())
        .map(|i| 100.0 * (mean(&twin_acc[i]) - mean(&acc[i])))
        .fold(f64::NEG_INFINITY, f64::max);
    let last = WIDTHS.len() - 1;
    let baseline = Metrics {
        accuracy: mean(&twin_acc[last]),
        params: full_params,
        nonzero: full_params,
        bytes: 4 * full_params,
        macs: twin_macs[last],
    };
    let compressed = Metrics {
        accuracy: mean(&acc[0]),
        params: full_params,
        nonzero: full_params,
        bytes: 4 * full_params,
        macs: macs[0],
    };
    let extra = json!({
        "mlp": [d, h, h, 10],
        "switchable_bn": true,
        "training": "sandwich rule (largest, smallest, 2 random widths per step), inplace distillation",
        "seeds": n_seeds,
        "compressed_is_width": WIDTHS[0],
        "widths": per_width,
        "max_gap_points": max_gap,
        "targets": {
            "every_width_within_1.5_points_of_its_twin": max_gap <= 1.5,
            "macs_grow_with_width": macs.windows(2).all(|w| w[0] < w[1]),
        },
        "bn_recalibrated_new_width": recal,
        "width_routing": routed,
    });
    Ok(Report::new("slimmable", ctx, baseline, compressed, extra))
}

/// Runs `dynamic-budget`.
pub(crate) fn run_dynamic_budget(ctx: &Ctx) -> Result<Report> {
    let seed = ctx.seed;
    let (train, valid, test) = splits(ctx, seed)?;
    let mut net = exit_net(ctx, seed, true);
    train_exits(ctx, &mut net, &train, seed)?;
    let costs = net.exit_costs()?;
    let forced: Vec<u64> = (0..net.num_exits()).map(|k| costs.forced(k)).collect();
    let profile = net.profile(&valid, ExitRule::MaxSoftmax, 512)?;
    let full = net.infer(&test.x, &Thresholds::disabled(ExitRule::MaxSoftmax, 3))?;
    let mut levels = Vec::new();
    let mut at_half = None;
    let (mut anytime_macs, mut budgets_kept) = (Vec::new(), true);
    for level in [0.25, 0.5, 0.75, 1.0] {
        let budget = Budget::Battery(level);
        let cap = budget.cap(&forced)?;
        // Per sample cap: the deepest exit that fits, no other head computed.
        let anytime = net.infer_budget(&test.x, budget)?;
        // Average-MAC budget: thresholds calibrated for the best accuracy within the cap.
        let cal = calibrate(&profile, CalibrationTarget::MacBudget { avg_macs: cap })?;
        let budgeted = net.infer(&test.x, &cal.thresholds)?;
        if level == 0.5 {
            at_half = Some((budgeted.accuracy(&test.labels), budgeted.avg_macs()));
        }
        anytime_macs.push(anytime.avg_macs());
        budgets_kept &= anytime.avg_macs() <= cap + 1e-9 && budgeted.avg_macs() <= cap + 1e-9;
        levels.push(json!({
            "battery": level,
            "mac_cap": cap,
            "deepest_exit_that_fits": anytime.exits.first().copied(),
            "per_sample_cap": outcome(&anytime, &test.labels),
            "average_budget": {"thresholds": cal.thresholds.taus, "test": outcome(&budgeted, &test.labels)},
        }));
    }
    // Per-sample budgets: each sample gets a random battery level, confident samples leave
    // earlier still.
    let mut rng = StdRng::seed_from_u64(seed ^ 0xb4);
    let per: Vec<Budget> = (0..test.len())
        .map(|_| Budget::Battery([0.25, 0.5, 0.75, 1.0][rng.random_range(0..4)]))
        .collect();
    let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.0 })?;
    let mixed = net.infer_budgets(&test.x, &per, Some(&cal.thresholds))?;
    let within = per
        .iter()
        .zip(&mixed.macs)
        .all(|(b, &m)| b.cap(&forced).is_ok_and(|c| m as f64 <= c + 1e-9));
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], full.accuracy(&test.labels))?;
    let (acc, macs) = at_half.ok_or_else(|| CliError::Usage("no levels".into()))?;
    let compressed = Metrics {
        accuracy: acc,
        macs: macs.round() as u64,
        ..baseline
    };
    let extra = json!({
        "backbone": backbone(ctx),
        "exit_costs_forced": forced,
        "battery_mapping": "cap = cheapest exit + level * (full - cheapest exit)",
        "compressed_is": "battery 0.5, average-MAC budget",
        "levels": levels,
        "per_sample_random_levels": {"test": outcome(&mixed, &test.labels), "every_sample_within_its_cap": within},
        "targets": {
            "every_sample_within_its_random_cap": within,
            "every_level_within_its_cap": budgets_kept,
            "per_sample_cap_macs_grow_with_battery": anytime_macs.windows(2).all(|w| w[0] <= w[1]),
        },
    });
    Ok(Report::new(
        "dynamic-budget",
        ctx,
        baseline,
        compressed,
        extra,
    ))
}
