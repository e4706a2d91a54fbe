//! Efficient-architecture experiments: `depthwise` (standard vs depthwise separable CNN,
//! MobileNet v1's cost ratio), `mobilenet` (width multiplier 1.0 / 0.5 and a Ghost variant)
//! and `lowrank` (truncated-SVD factorization of the reference MLP, fine-tuned).

use compress_arch::blocks::{DepthwiseSeparableConv, MobileNetConfig, Pointwise, SeparableConfig};
use compress_arch::cost;
use compress_arch::lowrank::{
    LowRankConfig, RankRule, factorize_sequential, largest_linears, singular_values,
};
use compress_core::{CoreError, Layer};
use compress_nn::models::mlp;
use compress_nn::{
    BatchNorm2d, Conv2d, Conv2dConfig, GlobalAvgPool, Linear, ReLU, Sequential, Sgd,
};
use ndarray::Ix2;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::baseline::{cosine_config, fit_eval, mlp_widths};
use super::controls::{Recipe, SeedRun, control_of, finish, over_seeds};
use super::{Ctx, Metrics, Report};
use crate::error::Result;

/// Weight decay of the CNN runs.
const CNN_WD: f64 = 1e-4;

/// Stem channels and the `(in, out, stride)` of the convolutions that are compared.
const STEM: usize = 16;
const LAYERS: [(usize, usize, usize); 3] = [(16, 32, 1), (32, 32, 2), (32, 32, 1)];

/// The small CNN of `depthwise`: stem 3x3 conv (1 -> 16) + BN + ReLU, three 3x3 layers
/// (standard conv + BN + ReLU, or depthwise separable blocks), global average pool, linear.
fn small_cnn(separable: bool, seed: u64) -> Result<Sequential<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new();
    net.push(Conv2d::new(
        Conv2dConfig::new(1, STEM, 3).padding(1).bias(false),
        &mut rng,
    )?);
    net.push(BatchNorm2d::new(STEM));
    net.push(ReLU::new());
    for (m, n, s) in LAYERS {
        if separable {
            let cfg = SeparableConfig::new(m, n, 3).stride(s);
            net.push(DepthwiseSeparableConv::new(cfg, &mut rng)?);
        } else {
            let cfg = Conv2dConfig::new(m, n, 3).stride(s).padding(1).bias(false);
            net.push(Conv2d::new(cfg, &mut rng)?);
            net.push(BatchNorm2d::new(n));
            net.push(ReLU::new());
        }
    }
    net.push(GlobalAvgPool::new());
    net.push(Linear::new(LAYERS[2].1, 10, true, &mut rng));
    Ok(net)
}

/// Parameters and MACs of the compared convolutions, as the model's own `cost` counts them
/// (the stem, batch norms and classifier excluded).
fn conv_costs(net: &Sequential<f32>, input: &[usize]) -> Result<(usize, u64)> {
    let (mut params, mut macs) = (0usize, 0u64);
    let mut shape = input.to_vec();
    for (i, l) in net.layers().iter().enumerate() {
        let c = l.cost(&shape)?;
        if i > 0 {
            if (**l).as_any().is::<Conv2d<f32>>() {
                params += c.params;
                macs += c.macs;
            } else if let Some(b) = (**l).as_any().downcast_ref::<DepthwiseSeparableConv<f32>>() {
                for (name, lc) in b.body().named_costs(&shape)? {
                    if name == "depthwise" || name == "pointwise" {
                        params += lc.params;
                        macs += lc.macs;
                    }
                }
            }
        }
        shape = c.output_shape;
    }
    Ok((params, macs))
}

/// `depthwise`: the same small CNN with standard 3x3 convolutions vs depthwise separable ones.
pub(crate) fn run_depthwise(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_images()?;
    let side = ctx.image_side();
    let input = [1, side, side];
    let epochs = ctx.epochs(40, 30);
    let trained = |separable: bool, label: &str| -> Result<(Sequential<f32>, f64)> {
        let mut net = small_cnn(separable, ctx.seed)?;
        let acc = train_cosine(ctx, label, &mut net, &train, &test, epochs, 0.05, CNN_WD)?;
        Ok((net, acc))
    };
    let (std_net, std_acc) = trained(false, "standard CNN")?;
    let (sep_net, sep_acc) = trained(true, "separable CNN")?;
    let (std_p, std_m) = conv_costs(&std_net, &input)?;
    let (sep_p, sep_m) = conv_costs(&sep_net, &input)?;
    // Closed form: each layer N M K^2 vs M K^2 + M N; all compared layers have N = 32, K = 3,
    // so the whole stack's ratio is exactly 1/N + 1/K^2.
    let mut h = side;
    let (mut f_std_p, mut f_sep_p, mut f_std_m, mut f_sep_m) = (0usize, 0usize, 0u64, 0u64);
    for (m, n, s) in LAYERS {
        let a = cost::standard_conv(m, n, 3, s, h, h, false);
        let b = cost::depthwise_separable(&SeparableConfig::new(m, n, 3).stride(s), h, h);
        f_std_p += a.weights;
        f_sep_p += b.weights;
        f_std_m += a.weight_macs;
        f_sep_m += b.weight_macs;
        h = a.output[1];
    }
    let ratio = cost::separable_ratio(LAYERS[2].1, 3);
    let extra = json!({
        "layers": LAYERS.iter().map(|&(m, n, s)| json!({"in": m, "out": n, "stride": s})).collect::<Vec<_>>(),
        "epochs": epochs,
        "conv_params": {"standard": std_p, "separable": sep_p},
        "conv_macs": {"standard": std_m, "separable": sep_m},
        "formula": {
            "params_standard": f_std_p, "params_separable": f_sep_p,
            "macs_standard": f_std_m, "macs_separable": f_sep_m,
            "ratio": ratio,
            "expression": "(M K^2 + M N) / (N M K^2) = 1/N + 1/K^2, N = 32, K = 3",
        },
        "measured_ratio_params": sep_p as f64 / std_p as f64,
        "measured_ratio_macs": sep_m as f64 / std_m as f64,
        "formula_exact": std_p == f_std_p && sep_p == f_sep_p && std_m == f_std_m && sep_m == f_sep_m
            && sep_p * 9 * LAYERS[2].1 == std_p * (9 + LAYERS[2].1),
        "accuracy_drop_points": 100.0 * (std_acc - sep_acc),
        "targets": {
            "counted_costs_equal_closed_form": std_p == f_std_p && sep_p == f_sep_p && std_m == f_std_m && sep_m == f_sep_m,
            "separable_within_1_point_of_standard": 100.0 * (std_acc - sep_acc) <= 1.0,
        },
        "note": "conv_* count only the compared convolutions' weights (no bias); batch norms add 2C params each",
    });
    let base = Metrics::dense_f32(&std_net, &input, std_acc)?;
    let comp = Metrics::dense_f32(&sep_net, &input, sep_acc)?;
    Ok(Report::new("depthwise", ctx, base, comp, extra))
}

/// `mobilenet`: MobileNet v1 (small variant) at alpha 1.0 and 0.5, and with Ghost modules
/// as the pointwise stage.
pub(crate) fn run_mobilenet(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_images()?;
    let side = ctx.image_side();
    let epochs = ctx.epochs(30, 5);
    let variants = [
        ("alpha_1.0", MobileNetConfig::small(1, side, 10)),
        ("alpha_0.5", MobileNetConfig::small(1, side, 10).alpha(0.5)),
        (
            "ghost_alpha_1.0",
            MobileNetConfig::small(1, side, 10).pointwise(Pointwise::Ghost(2)),
        ),
    ];
    let mut rows = serde_json::Map::new();
    let mut metrics = Vec::new();
    for (name, cfg) in &variants {
        let mut rng = StdRng::seed_from_u64(ctx.seed);
        let mut net = cfg.build::<f32, _>(&mut rng)?;
        let acc = train_cosine(ctx, name, &mut net, &train, &test, epochs, 0.05, CNN_WD)?;
        let m = Metrics::dense_f32(&net, &cfg.input_shape(), acc)?;
        let f = cost::mobilenet_v1(cfg);
        rows.insert(
            (*name).to_string(),
            json!({
                "accuracy": acc, "params": m.params, "macs": m.macs,
                "formula_params": f.params(), "formula_macs": f.macs(),
                "formula_matches": f.params() == m.params && f.macs() == m.macs,
                "alpha": cfg.alpha, "pointwise": format!("{:?}", cfg.pointwise),
            }),
        );
        metrics.push(m);
    }
    // What the same network would cost with standard 3x3 convolutions instead of separable ones.
    let cfg = &variants[0].1;
    let mut standard = cost::standard_conv(1, cfg.width(cfg.stem_channels), 3, 1, side, side, true);
    let (mut c, mut h) = (cfg.width(cfg.stem_channels), side);
    for &(out, s) in &cfg.blocks {
        let b = cost::standard_conv(c, cfg.width(out), 3, s, h, h, true);
        standard.weights += b.weights;
        standard.weight_macs += b.weight_macs;
        h = b.output[1];
        c = cfg.width(out);
    }
    let (full, half, ghost) = (&metrics[0], &metrics[1], &metrics[2]);
    let extra = json!({
        "targets": {
            "counted_costs_equal_closed_form_every_variant": rows.values().all(|v| v["formula_matches"] == true),
            "alpha_0.5_macs_le_30pct_of_alpha_1.0": half.macs as f64 <= 0.3 * full.macs as f64,
            "alpha_0.5_within_1.5_points_of_alpha_1.0": 100.0 * (full.accuracy - half.accuracy) <= 1.5,
            "ghost_macs_le_65pct_of_alpha_1.0": ghost.macs as f64 <= 0.65 * full.macs as f64,
            "ghost_within_1_point_of_alpha_1.0": 100.0 * (full.accuracy - ghost.accuracy) <= 1.0,
        },
        "epochs": epochs,
        "blocks": cfg.blocks,
        "variants": Value::Object(rows),
        "standard_conv_equivalent": {"conv_weights": standard.weights, "conv_macs": standard.weight_macs},
    });
    Ok(Report::new("mobilenet", ctx, metrics[0], metrics[1], extra))
}

/// Weight decay of the `lowrank` runs: with momentum 0.9 it shrinks the random part of the
/// initial weights (which carries much of their energy but no information) by ~5x over the
/// run, so that 90% of the energy sits in few singular values.
const LOWRANK_WEIGHT_DECAY: f64 = 5e-3;

/// SGD with momentum 0.9, weight decay `wd` and a cosine learning-rate schedule for
/// `epochs`; returns the test accuracy.
#[allow(clippy::too_many_arguments)]
fn train_cosine(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    train: &compress_nn::Dataset<f32>,
    test: &compress_nn::Dataset<f32>,
    epochs: usize,
    lr: f32,
    wd: f64,
) -> Result<f64> {
    let mut opt = Sgd::new(lr).momentum(0.9).weight_decay(wd as f32);
    let cfg = cosine_config(ctx, epochs, 0.0);
    fit_eval(ctx, label, net, &mut opt, cfg, (train, test))
}

/// `lowrank`: the reference MLP's two largest layers factorized by truncated SVD to keep 90%
/// of their energy, then fine-tuned; the control gets the same fine-tuning unfactorized.
pub(crate) fn run_lowrank(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: "the reference MLP's widths trained with this experiment's own recipe: SGD lr 0.05 momentum 0.9, weight decay 5e-3, cosine to 0, batch 32, 30 epochs (15 with --fast); the decay concentrates the weights' energy in few singular values",
        fine_tune: "15 epochs (8 with --fast) SGD lr 0.02 momentum 0.9, weight decay 5e-3, cosine to 0, batch 32",
    };
    let mut r = over_seeds("lowrank", ctx, recipe, lowrank_seed)?;
    let fraction = r.compressed.params as f64 / r.baseline.params as f64;
    // With --fast the baseline trains half as long and its weights' energy is spread over
    // more singular values (about 35% of the parameters kept instead of about 22%).
    let (limit, name) = if ctx.fast {
        (0.40, "params_le_40pct_of_baseline_fast_settings")
    } else {
        (0.30, "params_le_30pct_of_baseline")
    };
    finish(
        &mut r,
        &[("params_fraction", fraction)],
        &[(name, fraction <= limit)],
        1.0,
    );
    Ok(r)
}

/// One seed of `lowrank`.
fn lowrank_seed(
    ctx: &Ctx,
    train: &compress_nn::Dataset<f32>,
    test: &compress_nn::Dataset<f32>,
) -> Result<SeedRun> {
    let widths = mlp_widths(ctx);
    let input = [ctx.input_dim()];
    let mut rng = StdRng::seed_from_u64(ctx.seed);
    let mut net = mlp::<f32, _>(&widths, &mut rng);
    let epochs = ctx.epochs(30, 15);
    let wd = LOWRANK_WEIGHT_DECAY;
    let base_acc = train_cosine(
        ctx,
        "reference MLP",
        &mut net,
        train,
        test,
        epochs,
        0.05,
        wd,
    )?;
    let base = Metrics::dense_f32(&net, &input, base_acc)?;
    let ft_epochs = ctx.epochs(15, 8);
    let control = control_of(ctx, &widths, &net, |c| {
        train_cosine(ctx, "f32 control", c, train, test, ft_epochs, 0.02, wd)
    })?;
    let targets = largest_linears(&net, 2);
    let mut spectra = Vec::new();
    for &i in &targets {
        if let Some(l) = net.get::<Linear<f32>>(i) {
            let w = l
                .weight
                .value()
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(CoreError::from)?;
            let s = singular_values(w, &format!("{i}.weight"))?;
            spectra.push(json!({"layer": i, "top10": &s[..s.len().min(10)]}));
        }
    }
    let cfg = LowRankConfig::new(RankRule::Energy(0.9));
    let report = factorize_sequential(&mut net, &targets, &cfg)?;
    let before_ft = super::accuracy_of(&mut net, test)?;
    let acc = train_cosine(ctx, "fine-tune", &mut net, train, test, ft_epochs, 0.02, wd)?;
    let comp = Metrics::dense_f32(&net, &input, acc)?;
    let layers: Vec<Value> = report
        .iter()
        .map(|r| {
            json!({
                "layer": r.index, "shape": [r.rows, r.cols], "rank": r.rank,
                "weights_before": r.weights_before, "weights_after": r.weights_after,
                "kept_energy": r.kept_energy, "relative_error": r.relative_error, "skipped": r.skipped,
            })
        })
        .collect();
    let extra = json!({
        "rule": "energy 0.9",
        "layers": layers,
        "spectra": spectra,
        "accuracy_before_finetune": before_ft,
        "finetune_epochs": ft_epochs,
    });
    Ok(SeedRun {
        baseline: base,
        control,
        compressed: comp,
        extra,
    })
}
