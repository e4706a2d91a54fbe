//! Experiments: `cluster` (k-means weight sharing with centroid fine-tuning),
//! `deep-compression` (prune -> trained quantization -> Huffman, Han et al. 2016),
//! `binaryconnect` (deterministic and stochastic binary weights) and `ternary` (TWN).

use compress_core::{Module, Param, ParamFilter, ParamPath, Parametrization};
use compress_nn::loss::argmax_rows;
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Adam, Dataset, Linear, Optimizer, Sequential, Sgd};
use compress_prune::{PruneConfig, prune, relative_index_encode};
use compress_quant::binary::{BinaryConnect, BinaryMatrix, BinaryScale, binary_linear};
use compress_quant::huffman::{HuffmanEncoded, entropy_bits, frequencies};
use compress_quant::ternary::{TernaryTensor, TernaryWeights};
use compress_quant::{
    ClusterConfig, ClusterInit, ClusteredTensor, cluster_weights, export_clustered,
};
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::baseline::{config, fit_eval};
use super::baseline::{mlp_widths, train_reference_mlp};
use super::{Ctx, Metrics, Report};
use crate::error::{CliError, Result};

/// Trains `net` for `epochs` with `opt` (batch 32, seeded), returns test accuracy.
fn fit(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    opt: &mut dyn Optimizer<f32>,
    data: (&Dataset<f32>, &Dataset<f32>),
    epochs: usize,
) -> Result<f64> {
    fit_eval(ctx, label, net, opt, config(ctx, epochs), data)
}

/// Bytes of every bias at f32.
fn bias_bytes(net: &Sequential<f32>) -> usize {
    net.named_params()
        .iter()
        .filter(|p| p.path.ends_with("bias"))
        .map(|p| p.len * 4)
        .sum()
}

/// Metrics of a compressed model: accuracy, `bytes`, MACs and counts of the effective weights.
fn metrics(ctx: &Ctx, net: &Sequential<f32>, accuracy: f64, bytes: usize) -> Result<Metrics> {
    let mut m = Metrics::dense_f32(net, &[ctx.input_dim()], accuracy)?;
    m.bytes = bytes;
    Ok(m)
}

/// `cluster`: 16 shared values (4-bit indices) per layer, centroids fine-tuned.
pub(crate) fn run_cluster(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let (mut net, base_acc) = train_reference_mlp(ctx, &train, &test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let cfg = ClusterConfig::new(16).init(ClusterInit::Linear);
    let layers = cluster_weights(&mut net, &ParamFilter::new(), &cfg, 0.1f32)?;
    let before_ft = evaluate(&mut net, &test, 512)?;
    let mut opt = Sgd::new(0.01f32).momentum(0.9);
    let acc = fit(
        ctx,
        "centroid fine-tuning",
        &mut net,
        &mut opt,
        (&train, &test),
        ctx.epochs(8, 4),
    )?;
    let clustered = export_clustered(&net)?;
    let weight_bytes: usize = clustered.iter().map(|(_, c)| c.bytes()).sum();
    let bytes = weight_bytes + bias_bytes(&net);
    let extra = json!({
        "clusters": 16,
        "init": "linear",
        "accuracy_before_finetune": before_ft,
        "drop_points": (base_acc - acc) * 100.0,
        "ratio_vs_f32": baseline.bytes as f64 / bytes as f64,
        "layers": clustered.iter().zip(&layers).map(|((p, c), r)| json!({
            "path": p, "params": c.len(), "index_bits": c.index_bits(),
            "bytes": c.bytes(), "f32_bytes": c.len() * 4, "inertia": r.inertia,
        })).collect::<Vec<_>>(),
    });
    Ok(Report::new(
        "cluster",
        ctx,
        baseline,
        metrics(ctx, &net, acc, bytes)?,
        extra,
    ))
}

/// Fixed relative-index width of the pruned and clustered stages (Han et al. use 5 bits for
/// fully connected layers).
const FIXED_GAP_BITS: u32 = 5;

/// One layer's row of the Deep Compression table (Han et al. Table 1), its bytes after
/// Huffman coding, and the dense weights rebuilt from the decoded Huffman streams.
fn encode_layer(
    path: &str,
    pruned_w: &ArrayD<f32>,
    c: &ClusteredTensor<f32>,
) -> Result<(Value, usize, Vec<f32>)> {
    let n = c.len();
    // Entries come from the codes (code 0 is the pinned zero), so a centroid that crosses
    // zero in fine-tuning is still stored. Fillers get code 0.
    let as_f32: Vec<f32> = c.codes().iter().map(|&k| k as f32).collect();
    let k = c.clusters();
    let codebook = c.codebook().len() * 4;
    let fixed = relative_index_encode(&as_f32, FIXED_GAP_BITS)?;
    // Huffman stage: the gap width (2..=8 bits) that gives the fewest coded bytes.
    let mut best: Option<(usize, u32, Vec<u32>, HuffmanEncoded, HuffmanEncoded)> = None;
    for bits in 2..=8 {
        let rel = relative_index_encode(&as_f32, bits)?;
        let codes: Vec<u32> = rel.values.iter().map(|&v| v as u32).collect();
        let hc = HuffmanEncoded::encode(&codes, k)?;
        let hg = HuffmanEncoded::encode(&rel.gaps, 1 << bits)?;
        let total = hc.total_bytes() + hg.total_bytes();
        if best.as_ref().is_none_or(|b| total < b.0) {
            best = Some((total, bits, rel.gaps, hc, hg));
        }
    }
    let Some((coded, gap_bits, gaps, hc, hg)) = best else {
        return Err(CliError::Usage("no gap width tried".into()));
    };
    // Decode both streams back and rebuild the dense weights from them.
    let (dc, dg) = (hc.decode()?, hg.decode()?);
    let mut dense = vec![0.0f32; n];
    let mut pos = 0usize;
    for (&g, &code) in dg.iter().zip(&dc) {
        pos += g as usize;
        if let Some(slot) = dense.get_mut(pos) {
            *slot = c.codebook()[code as usize];
        }
        pos += 1;
    }
    let kept = pruned_w.iter().filter(|&&v| v != 0.0).count();
    let entries = hc.symbols().max(1) as f64;
    let (dense_b, pruned_b) = (n * 4, fixed.bytes(32));
    let clustered_b = fixed.bytes(c.index_bits()) + codebook;
    let huffman_b = coded + codebook;
    let code_freq = frequencies(&dc, k)?;
    let gap_freq = frequencies(&gaps, 1 << gap_bits)?;
    let row = json!({
        "layer": path,
        "weights": n,
        "kept_percent": 100.0 * kept as f64 / n.max(1) as f64,
        "weight_bits_q": c.index_bits(),
        "weight_bits_huffman": hc.bit_len() as f64 / entries,
        "weight_bits_entropy": entropy_bits(&code_freq) / entries,
        "index_bits": FIXED_GAP_BITS,
        "fillers": fixed.fillers(),
        "huffman_gap_bits": gap_bits,
        "index_bits_huffman": hg.bit_len() as f64 / entries,
        "index_bits_entropy": entropy_bits(&gap_freq) / entries,
        "bytes": {"dense_f32": dense_b, "pruned": pruned_b, "clustered": clustered_b, "huffman": huffman_b},
        "ratio": {"pruned": dense_b as f64 / pruned_b as f64, "clustered": dense_b as f64 / clustered_b as f64,
                  "huffman": dense_b as f64 / huffman_b as f64},
    });
    Ok((row, huffman_b, dense))
}

/// `deep-compression`: 64-300-100-10 (784-300-100-10 on MNIST), prune ~92% with retraining,
/// 5-bit trained clustering (biases: 4-bit), Huffman coding of indices and relative-index gaps.
pub(crate) fn run_deep_compression(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let widths = vec![ctx.input_dim(), 300, 100, 10];
    let mut net = mlp::<f32, _>(&widths, &mut StdRng::seed_from_u64(ctx.seed));
    let mut opt = Sgd::new(0.05f32).momentum(0.9);
    let base_acc = fit(
        ctx,
        "dense",
        &mut net,
        &mut opt,
        (&train, &test),
        ctx.epochs(30, 12),
    )?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    // Iterative magnitude pruning (global threshold) with retraining.
    let mut stages = Vec::new();
    for s in [0.5, 0.75, 0.88, 0.92] {
        prune(&mut net, &PruneConfig::new(s))?;
        let mut opt = Sgd::new(0.01f32).momentum(0.9);
        let acc = fit(
            ctx,
            "prune + retrain",
            &mut net,
            &mut opt,
            (&train, &test),
            ctx.epochs(6, 2),
        )?;
        stages.push(json!({"sparsity": s, "accuracy": acc}));
    }
    let pruned_acc = evaluate(&mut net, &test, 512)?;
    let pruned: Vec<(String, ArrayD<f32>)> = net.state_dict();
    // Trained quantization: 32 entries (5 bits), entry 0 pinned at zero.
    let cfg = ClusterConfig::new(32)
        .init(ClusterInit::Linear)
        .preserve_sparsity(true);
    cluster_weights(&mut net, &ParamFilter::new(), &cfg, 0.05f32)?;
    // Biases (not pruned) share 16 values per layer (4-bit indices).
    let bias_filter = ParamFilter::new().with_bias(true).include("*.bias");
    cluster_weights(&mut net, &bias_filter, &ClusterConfig::new(16), 0.05f32)?;
    let quant_acc = evaluate(&mut net, &test, 512)?;
    let mut opt = Sgd::new(0.01f32).momentum(0.9);
    let ft_acc = fit(
        ctx,
        "centroid fine-tuning",
        &mut net,
        &mut opt,
        (&train, &test),
        ctx.epochs(8, 3),
    )?;
    let clustered = export_clustered(&net)?;
    let (mut rows, mut weight_bytes, mut bias_b, mut decoded) = (Vec::new(), 0, 0, Vec::new());
    for (path, c) in &clustered {
        if path.ends_with("bias") {
            bias_b += c.bytes();
            decoded.push((path.clone(), c.decode()?));
            continue;
        }
        let pw = pruned.iter().find(|(p, _)| p == path).map(|(_, w)| w);
        let pw = pw.ok_or_else(|| CliError::Usage(format!("missing pruned weights for {path}")))?;
        let (row, b, dense) = encode_layer(path, pw, c)?;
        rows.push(row);
        weight_bytes += b;
        decoded.push((
            path.clone(),
            ArrayD::from_shape_vec(IxDyn(c.shape()), dense)
                .map_err(compress_core::CoreError::from)?,
        ));
    }
    // Evaluate the model rebuilt from the Huffman streams.
    net.bake();
    let mut state = net.stored_dict();
    for (p, v) in &mut state {
        if let Some((_, d)) = decoded.iter().find(|(q, _)| q == p) {
            *v = d.clone();
        }
    }
    net.load_state(&state)?;
    let acc = evaluate(&mut net, &test, 512)?;
    let bytes = weight_bytes + bias_b;
    let stage_total = |k: &str| {
        rows.iter()
            .map(|r| r["bytes"][k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let dense_w = stage_total("dense_f32") as f64;
    let extra = json!({
        "mlp": widths,
        "prune_stages": stages,
        "accuracy": {"dense": base_acc, "pruned": pruned_acc, "clustered": quant_acc,
                     "clustered_finetuned": ft_acc, "decoded_from_huffman": acc},
        "drop_points": (base_acc - acc) * 100.0,
        "layers": rows,
        "weight_bytes": {"dense_f32": dense_w, "pruned": stage_total("pruned"),
                         "clustered": stage_total("clustered"), "huffman": stage_total("huffman")},
        "weight_ratio": {"pruned": dense_w / stage_total("pruned") as f64,
                         "clustered": dense_w / stage_total("clustered") as f64,
                         "huffman": dense_w / stage_total("huffman") as f64},
        "bias_bytes": {"f32": bias_bytes(&net), "clustered_4bit": bias_b},
        "total_ratio_vs_f32": baseline.bytes as f64 / bytes as f64,
    });
    Ok(Report::new(
        "deep-compression",
        ctx,
        baseline,
        metrics(ctx, &net, acc, bytes)?,
        extra,
    ))
}

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

/// Trains a binary-weight MLP; returns (eval accuracy, packed-kernel accuracy, weight bytes).
fn train_binary(
    ctx: &Ctx,
    data: (&Dataset<f32>, &Dataset<f32>),
    stochastic: bool,
    xnor: bool,
    lr: f32,
) -> Result<(f64, f64, usize)> {
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
    fit(ctx, label, &mut net, &mut opt, data, ctx.epochs(60, 25))?;
    for_each_bc(&mut net, &mut |bc| bc.set_deterministic(true))?;
    let acc = evaluate(&mut net, data.1, 512)?;
    let (packed_acc, bytes) = packed_eval(&net, data.1)?;
    Ok((acc, packed_acc, bytes))
}

/// `binaryconnect`: MLP with binary weights (deterministic, stochastic, XNOR-scaled).
pub(crate) fn run_binaryconnect(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let (net, base_acc) = train_reference_mlp(ctx, &train, &test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let weights: usize = net
        .named_params()
        .iter()
        .filter(|p| p.path.ends_with("weight"))
        .map(|p| p.len)
        .sum();
    let mut variants = Vec::new();
    let mut best: Option<(f64, usize)> = None;
    // Adam learning rates per variant: the stochastic one needs larger steps so that shadow
    // weights saturate towards +-1 and the sign used at test time matches training.
    for (name, stochastic, xnor, lr) in [
        ("deterministic", false, false, 0.01),
        ("stochastic", true, false, 0.02),
        ("xnor_per_channel", false, true, 0.003),
    ] {
        let (acc, packed_acc, bytes) = train_binary(ctx, (&train, &test), stochastic, xnor, lr)?;
        variants.push(
            json!({"variant": name, "adam_lr": lr, "accuracy": acc, "packed_kernel_accuracy": packed_acc,
            "weight_bytes": bytes, "f32_weight_bytes": weights * 4,
            "weight_ratio": (weights * 4) as f64 / bytes as f64}),
        );
        if name == "deterministic" {
            best = Some((packed_acc, bytes));
        }
    }
    let (acc, wbytes) = best.unwrap_or((0.0, 0));
    let bytes = wbytes + bias_bytes(&net);
    let extra = json!({"variants": variants, "sign_bits_bytes": weights.div_ceil(8),
        "drop_points": (base_acc - acc) * 100.0});
    Ok(Report::new(
        "binaryconnect",
        ctx,
        baseline,
        metrics(ctx, &net, acc, bytes)?,
        extra,
    ))
}

/// `ternary`: TWN fine-tuning of the reference MLP, 2-bit packed weights.
pub(crate) fn run_ternary(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let (mut net, base_acc) = train_reference_mlp(ctx, &train, &test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    net.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f32>| {
            if p.kind() == compress_core::ParamKind::Weight {
                p.push_parametrization(Box::new(TernaryWeights::new()))?;
            }
            Ok(())
        },
    )?;
    let before = evaluate(&mut net, &test, 512)?;
    let mut opt = Sgd::new(0.01f32).momentum(0.9);
    let acc = fit(
        ctx,
        "TWN fine-tuning",
        &mut net,
        &mut opt,
        (&train, &test),
        ctx.epochs(20, 8),
    )?;
    let mut layers = Vec::new();
    let mut wbytes = 0;
    for (path, w) in net.stored_dict() {
        if !path.ends_with("weight") {
            continue;
        }
        let t = TernaryTensor::ternarize(&w)?;
        // The packed tensor must reproduce the effective weights used in evaluation.
        let eff = TernaryWeights::new().forward(&w);
        let same = t
            .decode()?
            .iter()
            .zip(eff.iter())
            .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
        wbytes += t.bytes();
        layers.push(
            json!({"path": path, "params": w.len(), "bytes": t.bytes(), "alpha": t.alpha(),
            "zero_fraction": t.sparsity(), "packed_matches_effective": same}),
        );
    }
    let bytes = wbytes + bias_bytes(&net);
    let extra = json!({"threshold": "0.7 * mean|w|", "accuracy_before_finetune": before,
        "drop_points": (base_acc - acc) * 100.0, "layers": layers,
        "ratio_vs_f32": baseline.bytes as f64 / bytes as f64});
    Ok(Report::new(
        "ternary",
        ctx,
        baseline,
        metrics(ctx, &net, acc, bytes)?,
        extra,
    ))
}
