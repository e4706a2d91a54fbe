//! Experiments: `binaryconnect` (deterministic and stochastic binary weights, XNOR scaling)
//! and `ternary` (Ternary Weight Networks), each measured on the packed model it reports the
//! size of.

use compress_core::{Module, Param, ParamPath, Parametrization};
use compress_nn::loss::argmax_rows;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Adam, Dataset, Linear, Sequential};
use compress_quant::binary::{BinaryConnect, BinaryMatrix, BinaryScale, binary_linear};
use compress_quant::ternary::{TernaryTensor, TernaryWeights};
use ndarray::{Array2, Ix2};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::json;

use super::baseline::{mlp_widths, train_reference_mlp, train_sgd};
use super::cluster::{bias_bytes, fit, metrics, sgd_control};
use super::controls::{REFERENCE_MLP, Recipe, SeedRun, finish, over_seeds};
use super::{Ctx, Metrics, Report};
use crate::error::Result;

/// Applies `f` to the [`BinaryConnect`] of every weight.
fn for_each_bc(
    net: &mut Sequential<f32>,
    f: &mut dyn FnMut(&mut BinaryConnect<f32>),
) -> Result<()> {
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            if let Some(bc) = p.find_parametrization_mut::<BinaryConnect<f32>>() {
                f(bc);
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Accuracy of a binarized MLP run through the packed 1-bit kernel, and its weight bytes.
fn packed_eval(net: &Sequential<f32>, test: &Dataset<f32>) -> Result<(f64, usize)> {
    let mut x: Array2<f32> = test
        .x
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(compress_core::CoreError::from)?
        .to_owned();
    let linears: Vec<&Linear<f32>> = net
        .layers()
        .iter()
        .filter_map(|l| (**l).as_any().downcast_ref::<Linear<f32>>())
        .collect();
    let mut bytes = 0;
    for (i, lin) in linears.iter().enumerate() {
        let bc = lin.weight.find_parametrization::<BinaryConnect<f32>>();
        let scale = bc.map_or(BinaryScale::PerChannel, BinaryConnect::scale);
        let w = lin
            .weight
            .value()
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(compress_core::CoreError::from)?;
        let bm = BinaryMatrix::from_weights(w, scale)?;
        // A constant scale is stored once per layer; per-channel scales once per row.
        bytes += bm.words().len() * 8
            + if matches!(scale, BinaryScale::PerChannel) {
                bm.rows() * 4
            } else {
                4
            };
        let bias = lin
            .bias
            .as_ref()
            .map(|b| b.value().iter().copied().collect::<Vec<f32>>());
        x = binary_linear(x.view(), &bm, bias.as_deref())?;
        if i + 1 < linears.len() {
            x.mapv_inplace(|v| v.max(0.0));
        }
    }
    let pred = argmax_rows(&x.view());
    let correct = pred
        .iter()
        .zip(&test.labels)
        .filter(|(a, b)| a == b)
        .count();
    Ok((correct as f64 / test.len().max(1) as f64, bytes))
}

/// Binary-weight MLP training epochs: 60 (25 with `--fast`), from scratch, Adam.
fn binary_epochs(ctx: &Ctx) -> usize {
    ctx.epochs(60, 25)
}

/// A trained binary-weight MLP: its eval accuracy, packed-kernel accuracy, weight bytes and
/// the metrics of the binary model (counts and MACs of the model evaluated).
struct Binary {
    accuracy: f64,
    packed_accuracy: f64,
    weight_bytes: usize,
    metrics: Metrics,
}

/// Trains a binary-weight MLP from scratch with Adam at `lr`.
fn train_binary(
    ctx: &Ctx,
    data: (&Dataset<f32>, &Dataset<f32>),
    stochastic: bool,
    xnor: bool,
    lr: f32,
) -> Result<Binary> {
    let mut net = mlp::<f32, _>(&mlp_widths(ctx), &mut StdRng::seed_from_u64(ctx.seed));
    let mut k = 0u64;
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            if p.kind() != compress_core::ParamKind::Weight {
                return Ok(());
            }
            k += 1;
            let fan_in = p.shape()[1] as f32;
            let bc = if xnor {
                BinaryConnect::deterministic(BinaryScale::PerChannel)
            } else {
                // Shadow weights spread over [-1, 1] (so the hard-sigmoid probabilities span
                // [0, 1]); the ±1 values scaled by 1/sqrt(fan_in) like the initialisation.
                p.value_mut().mapv_inplace(|w| w * fan_in.sqrt());
                let s = BinaryScale::Constant(1.0 / f64::from(fan_in).sqrt());
                if stochastic {
                    BinaryConnect::stochastic(s, ctx.seed + k)
                } else {
                    BinaryConnect::deterministic(s)
                }
            };
            p.push_parametrization(Box::new(bc))
        },
    )?;
    let mut opt = Adam::new(lr);
    let label = if stochastic {
        "stochastic BinaryConnect"
    } else {
        "BinaryConnect"
    };
    fit(ctx, label, &mut net, &mut opt, data, binary_epochs(ctx))?;
    for_each_bc(&mut net, &mut |bc| bc.set_deterministic(true))?;
    let accuracy = evaluate(&mut net, data.1, 512)?;
    let (packed_accuracy, weight_bytes) = packed_eval(&net, data.1)?;
    let bytes = weight_bytes + bias_bytes(&net);
    let metrics = metrics(ctx, &net, packed_accuracy, bytes)?;
    Ok(Binary {
        accuracy,
        packed_accuracy,
        weight_bytes,
        metrics,
    })
}

/// The variants of `binaryconnect`: (name, stochastic, XNOR scaling, Adam learning rate).
/// The stochastic one needs larger steps so that shadow weights saturate towards +-1 and the
/// sign used at test time matches training.
const VARIANTS: [(&str, bool, bool, f32); 3] = [
    ("deterministic", false, false, 0.01),
    ("stochastic", true, false, 0.02),
    ("xnor_per_channel", false, true, 0.003),
];

/// `binaryconnect`: MLP with binary weights (deterministic, stochastic, XNOR-scaled), trained
/// from scratch; the control is the same MLP in f32 trained with the same recipe (Adam at the
/// deterministic variant's rate, same epochs). `compressed` is the deterministic variant as
/// run by the packed 1-bit kernel.
pub(crate) fn run_binaryconnect(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: "not a fine-tuning: binary MLPs and the f32 control trained from the same initialisation, Adam (lr per variant; control 0.01 like the deterministic one), constant rate, batch 32, 60 epochs (25 with --fast)",
    };
    let mut r = over_seeds("binaryconnect", ctx, recipe, binary_seed)?;
    let ratio = r.extra["variants"][0]["weight_ratio"]
        .as_f64()
        .unwrap_or(0.0);
    let same = r.extra["variants"].as_array().is_some_and(|v| {
        v.iter()
            .all(|x| x["accuracy"] == x["packed_kernel_accuracy"])
    });
    finish(
        &mut r,
        &[],
        &[
            ("weights_ge_30x_fewer_bytes_than_f32", ratio >= 30.0),
            ("packed_kernel_accuracy_equals_float_evaluation", same),
        ],
        3.0,
    );
    Ok(r)
}

/// One seed of `binaryconnect`.
fn binary_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let mut control = mlp::<f32, _>(&mlp_widths(ctx), &mut StdRng::seed_from_u64(ctx.seed));
    let mut opt = Adam::new(VARIANTS[0].3);
    let control_acc = fit(
        ctx,
        "f32 control",
        &mut control,
        &mut opt,
        (train, test),
        binary_epochs(ctx),
    )?;
    let control = Metrics::dense_f32(&control, &[ctx.input_dim()], control_acc)?;
    let weights: usize = net
        .named_params()
        .iter()
        .filter(|p| p.path.ends_with("weight"))
        .map(|p| p.len)
        .sum();
    let mut variants = Vec::new();
    let mut compressed = None;
    for (name, stochastic, xnor, lr) in VARIANTS {
        let b = train_binary(ctx, (train, test), stochastic, xnor, lr)?;
        variants.push(
            json!({"variant": name, "adam_lr": lr, "accuracy": b.accuracy,
            "packed_kernel_accuracy": b.packed_accuracy, "weight_bytes": b.weight_bytes,
            "f32_weight_bytes": weights * 4,
            "weight_ratio": (weights * 4) as f64 / b.weight_bytes as f64}),
        );
        if compressed.is_none() {
            compressed = Some(b.metrics);
        }
    }
    let extra = json!({"variants": variants, "sign_bits_bytes": weights.div_ceil(8),
        "compressed_is": "deterministic, packed 1-bit kernel"});
    Ok(SeedRun {
        baseline,
        control,
        compressed: compressed.unwrap_or(baseline),
        extra,
    })
}

/// `ternary`: TWN fine-tuning of the reference MLP, 2-bit packed weights; the model evaluated
/// is rebuilt from the packed tensors. The control gets the same fine-tuning in f32.
pub(crate) fn run_ternary(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: "20 epochs (8 with --fast) SGD lr 0.01 momentum 0.9, constant rate, batch 32",
    };
    let mut r = over_seeds("ternary", ctx, recipe, ternary_seed)?;
    let ratio = r.baseline.bytes as f64 / r.compressed.bytes as f64;
    finish(
        &mut r,
        &[("ratio_vs_f32", ratio)],
        &[("stored_bytes_ge_13x_fewer_than_f32", ratio >= 13.0)],
        1.0,
    );
    Ok(r)
}

/// One seed of `ternary`.
fn ternary_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (mut net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let epochs = ctx.epochs(20, 8);
    let widths = mlp_widths(ctx);
    let control = sgd_control(ctx, &widths, &net, (train, test), &[epochs])?;
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            if p.kind() == compress_core::ParamKind::Weight {
                p.push_parametrization(Box::new(TernaryWeights::new()))?;
            }
            Ok(())
        },
    )?;
    let before = evaluate(&mut net, test, 512)?;
    let float_acc = train_sgd(ctx, "TWN fine-tuning", &mut net, train, test, epochs, 0.01)?;
    // The packed model: every weight ternarized to 2-bit codes and one alpha, decoded back
    // into a plain MLP (f32 biases) that is what gets evaluated.
    let mut layers = Vec::new();
    let mut wbytes = 0;
    let mut state = net.stored_dict();
    for (path, w) in &mut state {
        if !path.ends_with("weight") {
            continue;
        }
        let t = TernaryTensor::ternarize(w)?;
        // The packed tensor must reproduce the effective weights used in training.
        let eff = TernaryWeights::new().forward(w);
        let decoded = t.decode()?;
        let same = decoded
            .iter()
            .zip(eff.iter())
            .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
        wbytes += t.bytes();
        layers.push(
            json!({"path": path, "params": w.len(), "bytes": t.bytes(), "alpha": t.alpha(),
            "zero_fraction": t.sparsity(), "packed_matches_effective": same}),
        );
        *w = decoded;
    }
    let mut packed = mlp::<f32, _>(&widths, &mut StdRng::seed_from_u64(0));
    packed.load_state(&state)?;
    let acc = evaluate(&mut packed, test, 512)?;
    let bytes = wbytes + bias_bytes(&net);
    let extra = json!({"threshold": "0.7 * mean|w|", "accuracy_before_finetune": before,
        "float_parametrization_accuracy": float_acc,
        "evaluated": "the MLP decoded from the packed 2-bit tensors",
        "layers": layers});
    Ok(SeedRun {
        baseline,
        control,
        compressed: metrics(ctx, &packed, acc, bytes)?,
        extra,
    })
}
