//! Pruning experiments: `prune-magnitude` (Han et al. 2015), `prune-structured` (physical
//! neuron removal), `lottery-ticket` (Frankle & Carbin 2019) and `prune-nm` (2:4).

use compress_core::{CoreError, Layer, ModelStats, Module, ParamFilter};
use compress_nn::models::mlp;
use compress_nn::train::{CrossEntropy, TrainHooks, evaluate};
use compress_nn::{Dataset, Linear, Sequential, Sgd, TrainConfig, Trainer};
use compress_prune::{
    IndexWidth, LotteryConfig, PruneConfig, PruneError, Rewind, ShrinkConfig, Sparse24Linear,
    SparseLinear, UnitCriterion, mask_report, nm_prune, prune_iteratively, prune_structured,
    relative_index_encode, sparsify_24, sparsify_linears,
};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::baseline::FineTune;
use super::baseline::{mlp_widths, train_reference_mlp};
use super::controls::{REFERENCE_MLP, Recipe, SeedRun, control_of, finish, over_seeds};
use super::{Ctx, DataSource, Metrics, Report, accuracy_of};
use crate::error::{CliError, Result};

/// Fine-tuning of every pruning experiment and its control: SGD + momentum 0.9 (rate 0.02)
/// and a cosine-annealed rate, on a shuffle of its own.
const FINE_TUNE: FineTune = FineTune {
    lr: 0.02,
    seed_offset: 17,
};

/// The control of a pruning experiment: `baseline` fine-tuned `rounds` times for `epochs`
/// exactly like the pruned model, unpruned.
fn prune_control(
    ctx: &Ctx,
    baseline: &Sequential<f32>,
    (train, test): (&Dataset<f32>, &Dataset<f32>),
    rounds: usize,
    epochs: usize,
) -> Result<Metrics> {
    control_of(ctx, &mlp_widths(ctx), baseline, |c| {
        let mut acc = 0.0;
        for r in 0..rounds {
            let label = format!("f32 control {}", r + 1);
            acc = FINE_TUNE.run(ctx, &label, c, (train, test), epochs)?;
        }
        Ok(acc)
    })
}

/// Per-parameter sparsity of the masks, for `extra`.
fn layer_sparsity(net: &Sequential<f32>) -> Value {
    let r = mask_report(net, &ParamFilter::new());
    Value::Array(
        r.params
            .iter()
            .map(|p| json!({"param": p.path, "sparsity": p.pruned as f64 / p.len.max(1) as f64}))
            .collect(),
    )
}

/// Bakes the masks, replaces every Linear by a CSR `SparseLinear`, and measures it.
fn to_csr(
    net: &mut Sequential<f32>,
    input_dim: usize,
    test: &Dataset<f32>,
) -> Result<(Metrics, Value)> {
    net.bake();
    // Deep Compression's relative-index stream (5-bit gaps for FC layers), for reference.
    let mut rel_bytes = 0usize;
    for i in 0..net.len() {
        if let Some(l) = net.get::<Linear<f32>>(i) {
            let w = l.weight.value();
            let flat: Vec<f32> = w.iter().copied().collect();
            rel_bytes += relative_index_encode(&flat, 5)?.bytes(32);
            rel_bytes += l.bias.as_ref().map_or(0, |b| 4 * b.len());
        }
    }
    sparsify_linears(net, 0.0, IndexWidth::Auto)?;
    let mut csr_bytes = 0usize;
    for i in 0..net.len() {
        if let Some(s) = net.get::<SparseLinear<f32>>(i) {
            csr_bytes += s.storage_bytes();
        }
    }
    let acc = accuracy_of(net, test)?;
    let stats = ModelStats::of(net);
    let cost = net.cost(&[input_dim])?;
    let m = Metrics {
        accuracy: acc,
        params: stats.params,
        nonzero: stats.nonzero,
        bytes: csr_bytes,
        macs: cost.macs,
    };
    Ok((
        m,
        json!({"csr_bytes": csr_bytes, "relative_index_5bit_bytes": rel_bytes}),
    ))
}

/// Fine-tuning of `prune-magnitude` (per round) and its control.
const MAGNITUDE_FT: &str = "3 rounds of 8 epochs (4 with --fast) SGD lr 0.02 momentum 0.9, cosine to 0 in each round, batch 32";

/// `prune-magnitude`: global magnitude pruning to 90% in three rounds with fine-tuning,
/// then CSR; the control gets the same three fine-tuning rounds unpruned.
pub(crate) fn run_magnitude(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: MAGNITUDE_FT,
    };
    let mut r = over_seeds("prune-magnitude", ctx, recipe, magnitude_seed)?;
    let ratio = r.compressed.bytes as f64 / r.baseline.bytes as f64;
    let sparsity = r.extra["weight_sparsity"].as_f64().unwrap_or(0.0);
    finish(
        &mut r,
        &[("bytes_ratio", ratio)],
        &[
            ("weight_sparsity_ge_0.89", sparsity >= 0.89),
            ("csr_bytes_le_20pct_of_dense_f32", ratio <= 0.20),
        ],
        1.0,
    );
    Ok(r)
}

/// One seed of `prune-magnitude`.
fn magnitude_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (mut net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let base = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let epochs = ctx.epochs(8, 4);
    let control = prune_control(ctx, &net, (train, test), 3, epochs)?;
    let mut rounds = Vec::new();
    let cfg = PruneConfig::new(0.9);
    prune_iteratively(&mut net, &cfg, 3, |m, r| {
        let s = mask_report(m, &ParamFilter::new()).sparsity();
        let acc = FINE_TUNE
            .run(
                ctx,
                &format!("fine-tune {}", r + 1),
                m,
                (train, test),
                epochs,
            )
            .map_err(|e| PruneError::Core(CoreError::config("fine-tune", e.to_string())))?;
        rounds.push(json!({"round": r + 1, "sparsity": s, "accuracy": acc}));
        Ok(())
    })?;
    let masked_acc = accuracy_of(&mut net, test)?;
    let per_layer = layer_sparsity(&net);
    let sparsity = mask_report(&net, &ParamFilter::new()).sparsity();
    let (m, sizes) = to_csr(&mut net, ctx.input_dim(), test)?;
    let extra = json!({
        "target_sparsity": 0.9,
        "weight_sparsity": sparsity,
        "scope": "global",
        "rounds": rounds,
        "layers": per_layer,
        "masked_accuracy": masked_acc,
        "sparse_model_accuracy": m.accuracy,
        "bytes": sizes,
    });
    Ok(SeedRun {
        baseline: base,
        control,
        compressed: m,
        extra,
    })
}

/// Fine-tuning of `prune-structured` (per round) and its control.
const STRUCTURED_FT: &str = "2 rounds of 15 epochs (8 with --fast) SGD lr 0.02 momentum 0.9, cosine to 0 in each round, batch 32";

/// `prune-structured`: remove at least half of every hidden layer's neurons physically (APoZ,
/// two rounds with fine-tuning, widths rounded to multiples of 8), more in the second round
/// where a budget of 40% of the baseline's parameters needs it; the control gets the same two
/// fine-tuning rounds at full width.
pub(crate) fn run_structured(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: STRUCTURED_FT,
    };
    let mut r = over_seeds("prune-structured", ctx, recipe, structured_seed)?;
    let params_ratio = r.compressed.params as f64 / r.baseline.params as f64;
    let macs_ratio = r.compressed.macs as f64 / r.baseline.macs as f64;
    finish(
        &mut r,
        &[("params_ratio", params_ratio), ("macs_ratio", macs_ratio)],
        &[
            ("params_le_40pct_of_baseline", params_ratio <= 0.40),
            ("macs_le_40pct_of_baseline", macs_ratio <= 0.40),
        ],
        1.5,
    );
    Ok(r)
}

/// Parameter budget of `prune-structured`, as a fraction of the baseline's parameters.
const PARAMS_BUDGET: f64 = 0.40;

/// The fraction of units the last `prune-structured` round removes from every hidden layer of
/// an MLP of `widths`: 1/3 (half of the original units after the first round's quarter), or
/// the smallest larger fraction on a 1/96 grid whose shrunk widths give an MLP of at most
/// `budget` parameters. The count comes from building that MLP. Where the input layer
/// dominates (784 pixels on MNIST), halving every layer halves the parameters, and the
/// budget needs more; where hidden-to-hidden weights dominate, half is already below it.
fn last_round_fraction(widths: &[usize], budget: usize) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(0);
    let hidden = 1..widths.len() - 1;
    let mut fraction = 1.0 / 3.0;
    for step in 0..64 {
        fraction = 1.0 / 3.0 + f64::from(step) / 96.0;
        let cfg = ShrinkConfig::new(fraction).round_to(8);
        let mut shrunk = widths.to_vec();
        for w in &mut shrunk[hidden.clone()] {
            *w = cfg.kept(*w);
        }
        let params = mlp::<f32, _>(&shrunk, &mut rng).cost(&[widths[0]])?.params;
        if params <= budget {
            return Ok(fraction);
        }
    }
    Ok(fraction)
}

/// One seed of `prune-structured`.
fn structured_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (mut net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let input = [ctx.input_dim()];
    let base = Metrics::dense_f32(&net, &input, base_acc)?;
    let epochs = ctx.epochs(15, 8);
    let control = prune_control(ctx, &net, (train, test), 2, epochs)?;
    let mut rounds = Vec::new();
    let budget = (PARAMS_BUDGET * base.params as f64).floor() as usize;
    let mut widths = mlp_widths(ctx);
    // 1 - 0.75 * (1 - 1/3) = 0.5 of the units removed after two rounds, more in the second
    // round where the parameter budget needs it.
    for r in 0..2 {
        let fraction = if r == 0 {
            0.25
        } else {
            last_round_fraction(&widths, budget)?
        };
        let cfg = ShrinkConfig::new(fraction)
            .criterion(UnitCriterion::Apoz)
            .round_to(8);
        let rep = prune_structured(&mut net, &cfg, &input, Some(&train.x))?;
        for (w, l) in widths[1..].iter_mut().zip(&rep.layers) {
            *w = l.after;
        }
        let acc = FINE_TUNE.run(
            ctx,
            &format!("fine-tune {}", r + 1),
            &mut net,
            (train, test),
            epochs,
        )?;
        rounds.push(json!({
            "round": r + 1,
            "fraction": fraction,
            "widths": rep.layers.iter().map(|l| json!({"layer": l.index, "before": l.before, "after": l.after})).collect::<Vec<_>>(),
            "params": rep.params_after,
            "macs": rep.macs_after,
            "accuracy": acc,
        }));
    }
    let acc = accuracy_of(&mut net, test)?;
    let m = Metrics::dense_f32(&net, &input, acc)?;
    let extra = json!({
        "criterion": "apoz (activations of the training set)",
        "round_to": 8,
        "params_budget": budget,
        "rounds": rounds,
    });
    Ok(SeedRun {
        baseline: base,
        control,
        compressed: m,
        extra,
    })
}

/// `lottery-ticket`: 8 rounds of 20% global IMP with rewinding to initialisation, ticket vs
/// random re-initialisation, averaged over seeds.
pub(crate) fn run_lottery(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let widths = mlp_widths(ctx);
    let seeds: Vec<u64> = (0..3).map(|s| ctx.seed + s).collect();
    // 17 trainings per seed (dense + 8 tickets + 8 controls): fewer epochs on MNIST.
    let epochs = match ctx.data {
        DataSource::Digits => ctx.epochs(20, 12),
        DataSource::Mnist(_) => ctx.epochs(5, 2),
    };
    let rounds = 8;
    let trainer = Trainer::new(TrainConfig {
        epochs,
        batch_size: 32,
        seed: ctx.seed,
        ..TrainConfig::default()
    });
    let mut per_seed = Vec::new();
    let mut ticket0 = None;
    for &seed in &seeds {
        let cfg = LotteryConfig {
            rounds,
            fraction: 0.2,
            rewind: Rewind::Init,
            seed,
            ..LotteryConfig::default()
        };
        let (ticket, report) = compress_prune::lottery_ticket(
            &cfg,
            |s| mlp::<f32, _>(&widths, &mut StdRng::seed_from_u64(s)),
            |m, hooks: &mut dyn TrainHooks<f32>| {
                let mut opt = Sgd::new(0.05f32).momentum(0.9);
                trainer.fit_with(m, &mut opt, &train, None, &mut CrossEntropy, hooks)?;
                Ok(())
            },
            |m| Ok(evaluate(m, &test, 512)?),
        )?;
        if ticket0.is_none() {
            ticket0 = Some(ticket);
        }
        per_seed.push(report);
    }
    let n = per_seed.len() as f64;
    let dense_mean = per_seed.iter().map(|r| r.dense_accuracy).sum::<f64>() / n;
    let mut rows = Vec::new();
    for k in 0..rounds {
        let t: Vec<f64> = per_seed
            .iter()
            .map(|r| r.rounds[k].ticket_accuracy)
            .collect();
        let c: Vec<f64> = per_seed
            .iter()
            .map(|r| r.rounds[k].control_accuracy.unwrap_or(0.0))
            .collect();
        rows.push(json!({
            "round": k + 1,
            "sparsity": per_seed[0].rounds[k].sparsity,
            "ticket_accuracy": t.iter().sum::<f64>() / n,
            "control_accuracy": c.iter().sum::<f64>() / n,
            "ticket_per_seed": t,
            "control_per_seed": c,
        }));
    }
    let mut ticket = ticket0.ok_or_else(|| CliError::Usage("no seeds".into()))?;
    let base = {
        let dense = mlp::<f32, _>(&widths, &mut StdRng::seed_from_u64(ctx.seed));
        Metrics::dense_f32(&dense, &[ctx.input_dim()], dense_mean)?
    };
    let (mut m, sizes) = to_csr(&mut ticket, ctx.input_dim(), &test)?;
    let last = &rows[rounds - 1];
    m.accuracy = last["ticket_accuracy"].as_f64().unwrap_or(m.accuracy);
    let ahead = rows
        .iter()
        .all(|r| r["ticket_accuracy"].as_f64() > r["control_accuracy"].as_f64());
    let last_ticket = rows[rounds - 1]["ticket_accuracy"].as_f64().unwrap_or(0.0);
    let extra = json!({
        "targets": {
            "ticket_ahead_of_random_reinit_in_every_round": ahead,
            "last_round_ticket_within_1_point_of_dense": 100.0 * (dense_mean - last_ticket) <= 1.0,
        },
        "seeds": seeds,
        "epochs": epochs,
        "fraction_per_round": 0.2,
        "rewind": "init",
        "scope": "global",
        "dense_accuracy_mean": dense_mean,
        "dense_per_seed": per_seed.iter().map(|r| r.dense_accuracy).collect::<Vec<_>>(),
        "rounds": rows,
        "bytes": sizes,
        "note": "compressed.accuracy is the mean ticket accuracy of the last round; bytes and params are the first seed's ticket in CSR",
    });
    Ok(Report::new("lottery-ticket", ctx, base, m, extra))
}

/// Median wall time in ms of `reps` eval-mode forwards of `x` (after one warm-up).
fn time_forward(net: &mut Sequential<f32>, x: &ndarray::ArrayD<f32>, reps: usize) -> Result<f64> {
    use compress_core::Mode;
    net.forward(x, Mode::Eval)?;
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = std::time::Instant::now();
            net.forward(x, Mode::Eval)
                .map(|_| s.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<std::result::Result<_, _>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// `prune-nm`: 2:4 sparsity on every weight, with fine-tuning; the pruned layers are then
/// converted to [`Sparse24Linear`] (packed values + 2-bit positions) and the reported
/// accuracy, bytes, MACs and speed are those of that converted model. The control gets the
/// same fine-tuning dense.
pub(crate) fn run_nm(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: "10 epochs (5 with --fast) SGD lr 0.02 momentum 0.9, cosine to 0, batch 32",
    };
    let mut r = over_seeds("prune-nm", ctx, recipe, nm_seed)?;
    let ratio = r.compressed.bytes as f64 / r.baseline.bytes as f64;
    let sparsity = r.extra["weight_sparsity"].as_f64().unwrap_or(0.0);
    finish(
        &mut r,
        &[("bytes_ratio", ratio)],
        &[
            ("weight_sparsity_is_half", (sparsity - 0.5).abs() < 1e-9),
            ("stored_bytes_le_55pct_of_dense_f32", ratio <= 0.55),
        ],
        0.5,
    );
    Ok(r)
}

/// One seed of `prune-nm`.
fn nm_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (mut net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let input = [ctx.input_dim()];
    let base = Metrics::dense_f32(&net, &input, base_acc)?;
    let epochs = ctx.epochs(10, 5);
    let control = prune_control(ctx, &net, (train, test), 1, epochs)?;
    nm_prune(&mut net, 2, 4, &ParamFilter::new())?;
    let one_shot = accuracy_of(&mut net, test)?;
    let masked_acc = FINE_TUNE.run(ctx, "fine-tune 2:4", &mut net, (train, test), epochs)?;
    net.bake();
    let weight_sparsity = mask_free_sparsity(&net);
    let mut dense = mlp::<f32, _>(&mlp_widths(ctx), &mut StdRng::seed_from_u64(0));
    dense.load_state(&net.state_dict())?;
    let converted = sparsify_24(&mut net, &|_| true)?;
    let acc = accuracy_of(&mut net, test)?;
    let stats = ModelStats::of(&net);
    let mut bytes = 0usize;
    let mut layers = Vec::new();
    compress_core::surgery::walk_layers(&net as &dyn Layer<f32>, &mut |path, l| {
        if let Some(s) = l.as_any().downcast_ref::<Sparse24Linear<f32>>() {
            bytes += s.storage_bytes();
            layers.push(json!({"path": path.to_string(), "bytes": s.storage_bytes(),
                "shape": [s.out_features(), s.in_features()]}));
        } else {
            bytes += 4 * l.num_params();
        }
    });
    let m = Metrics {
        accuracy: acc,
        params: stats.params,
        nonzero: stats.nonzero,
        bytes,
        macs: net.cost(&input)?.macs,
    };
    // Speed of the converted model against its dense twin (same weights, zeros stored), on
    // the whole test set and on 64 samples, one forward at a time.
    let reps = ctx.epochs(30, 5);
    let mut speed = Vec::new();
    for rows in [test.len().min(64), test.len()] {
        let x = test
            .x
            .slice_axis(ndarray::Axis(0), (0..rows).into())
            .to_owned();
        let d = time_forward(&mut dense, &x, reps)?;
        let s = time_forward(&mut net, &x, reps)?;
        speed.push(json!({"batch": rows, "dense_ms": d, "sparse24_ms": s, "speedup": d / s}));
    }
    let extra = json!({
        "n": 2,
        "m": 4,
        "one_shot_accuracy": one_shot,
        "masked_dense_accuracy": masked_acc,
        "weight_sparsity": weight_sparsity,
        "sparse24_layers": layers,
        "converted_layers": converted.len(),
        "speed": speed,
        "isa": compress_core::Isa::current().name(),
        "bytes_format": "measured: Sparse24Linear::storage_bytes (kept f32 values + packed 2-bit positions + bias) of the converted layers",
        "macs_note": "the converted model's cost: the multiply-adds the 2:4 kernel performs",
    });
    Ok(SeedRun {
        baseline: base,
        control,
        compressed: m,
        extra,
    })
}

/// Sparsity of the weights (not biases) of a baked model.
fn mask_free_sparsity(net: &Sequential<f32>) -> f64 {
    let (mut n, mut z) = (0usize, 0usize);
    for p in net
        .named_params()
        .iter()
        .filter(|p| p.path.ends_with("weight"))
    {
        n += p.len;
        z += p.len - p.nonzero;
    }
    z as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp_params(widths: &[usize]) -> usize {
        widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    #[test]
    fn last_round_fraction_keeps_a_third_where_half_meets_the_budget() {
        // Digits after the first round: 128 -> 96, 64 -> 48; half of the original units gives
        // 38% of the 17,226 parameters.
        let budget = (PARAMS_BUDGET * mlp_params(&[64, 128, 64, 10]) as f64) as usize;
        assert_eq!(
            last_round_fraction(&[64, 96, 48, 10], budget).unwrap(),
            1.0 / 3.0
        );
    }

    #[test]
    fn last_round_fraction_removes_more_until_the_budget_holds() {
        // MNIST after the first round: 300 -> 232, 100 -> 80; half of the original units
        // would leave 50.7% of LeNet-300-100's parameters.
        let budget = (PARAMS_BUDGET * mlp_params(&[784, 300, 100, 10]) as f64) as usize;
        let f = last_round_fraction(&[784, 232, 80, 10], budget).unwrap();
        assert!(f > 1.0 / 3.0, "fraction {f}");
        let cfg = ShrinkConfig::new(f).round_to(8);
        let shrunk = [784, cfg.kept(232), cfg.kept(80), 10];
        assert!(mlp_params(&shrunk) <= budget, "{shrunk:?}");
        // The previous grid step does not meet the budget: the smallest such fraction.
        let prev = ShrinkConfig::new(f - 1.0 / 96.0).round_to(8);
        let wider = [784, prev.kept(232), prev.kept(80), 10];
        assert!(mlp_params(&wider) > budget, "{wider:?}");
    }
}
