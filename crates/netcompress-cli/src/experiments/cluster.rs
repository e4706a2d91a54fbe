//! Experiments: `cluster` (k-means weight sharing with centroid fine-tuning) and
//! `deep-compression` (prune -> trained quantization -> Huffman, Han et al. 2016).

use compress_core::{Module, ParamFilter};
use compress_nn::models::mlp;
use compress_nn::train::evaluate;
use compress_nn::{Dataset, Optimizer, Sequential};
use compress_prune::{PruneConfig, prune, relative_index_encode};
use compress_quant::huffman::{HuffmanEncoded, entropy_bits, frequencies};
use compress_quant::{
    ClusterConfig, ClusterInit, ClusteredTensor, cluster_weights, export_clustered,
};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use super::baseline::{config, fit_eval, train_sgd};
use super::baseline::{mlp_widths, train_reference_mlp};
use super::controls::{REFERENCE_MLP, Recipe, SeedRun, control_of, finish, over_seeds};
use super::{Ctx, Metrics, Report};
use crate::error::{CliError, Result};

/// Trains `net` for `epochs` with `opt` (batch 32, seeded), returns test accuracy.
pub(super) fn fit(
    ctx: &Ctx,
    label: &str,
    net: &mut Sequential<f32>,
    opt: &mut dyn Optimizer<f32>,
    data: (&Dataset<f32>, &Dataset<f32>),
    epochs: usize,
) -> Result<f64> {
    fit_eval(ctx, label, net, opt, config(ctx, epochs), data)
}

/// The control: `baseline` (an MLP of `widths`) trained with SGD lr 0.01 momentum 0.9 for
/// each of `stages` epochs (a fresh optimizer per stage), like the compressed model.
pub(super) fn sgd_control(
    ctx: &Ctx,
    widths: &[usize],
    baseline: &Sequential<f32>,
    data: (&Dataset<f32>, &Dataset<f32>),
    stages: &[usize],
) -> Result<Metrics> {
    control_of(ctx, widths, baseline, |c| {
        let mut acc = 0.0;
        for &e in stages {
            acc = train_sgd(ctx, "f32 control", c, data.0, data.1, e, 0.01)?;
        }
        Ok(acc)
    })
}

/// Bytes of every bias at f32.
pub(super) fn bias_bytes(net: &Sequential<f32>) -> usize {
    net.named_params()
        .iter()
        .filter(|p| p.path.ends_with("bias"))
        .map(|p| p.len * 4)
        .sum()
}

/// Metrics of a compressed model: accuracy, `bytes`, MACs and counts of the effective weights.
pub(super) fn metrics(
    ctx: &Ctx,
    net: &Sequential<f32>,
    accuracy: f64,
    bytes: usize,
) -> Result<Metrics> {
    let mut m = Metrics::dense_f32(net, &[ctx.input_dim()], accuracy)?;
    m.bytes = bytes;
    Ok(m)
}

/// `cluster`: 16 shared values (4-bit indices) per layer, centroids fine-tuned; the control
/// gets the same fine-tuning unclustered.
pub(crate) fn run_cluster(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: REFERENCE_MLP,
        fine_tune: "8 epochs (4 with --fast) SGD lr 0.01 momentum 0.9, constant rate, batch 32",
    };
    let mut r = over_seeds("cluster", ctx, recipe, cluster_seed)?;
    let ratio = r.baseline.bytes as f64 / r.compressed.bytes as f64;
    finish(
        &mut r,
        &[("ratio_vs_f32", ratio)],
        &[("stored_bytes_ge_7x_fewer_than_f32", ratio >= 7.0)],
        0.5,
    );
    Ok(r)
}

/// One seed of `cluster`.
fn cluster_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let (mut net, base_acc) = train_reference_mlp(ctx, train, test)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let epochs = ctx.epochs(8, 4);
    let control = sgd_control(ctx, &mlp_widths(ctx), &net, (train, test), &[epochs])?;
    let cfg = ClusterConfig::new(16).init(ClusterInit::Linear);
    let layers = cluster_weights(&mut net, &ParamFilter::new(), &cfg, 0.1f32)?;
    let before_ft = evaluate(&mut net, test, 512)?;
    let acc = train_sgd(
        ctx,
        "centroid fine-tuning",
        &mut net,
        train,
        test,
        epochs,
        0.01,
    )?;
    let clustered = export_clustered(&net)?;
    let weight_bytes: usize = clustered.iter().map(|(_, c)| c.bytes()).sum();
    let bytes = weight_bytes + bias_bytes(&net);
    let extra = json!({
        "clusters": 16,
        "init": "linear",
        "accuracy_before_finetune": before_ft,
        "layers": clustered.iter().zip(&layers).map(|((p, c), r)| json!({
            "path": p, "params": c.len(), "index_bits": c.index_bits(),
            "bytes": c.bytes(), "f32_bytes": c.len() * 4, "inertia": r.inertia,
        })).collect::<Vec<_>>(),
    });
    Ok(SeedRun {
        baseline,
        control,
        compressed: metrics(ctx, &net, acc, bytes)?,
        extra,
    })
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

/// Baseline recipe of `deep-compression`: Han et al.'s LeNet-300-100 widths, not the
/// reference MLP's.
const DEEP_BASELINE: &str = "64-300-100-10 (784-300-100-10 on MNIST, LeNet-300-100): SGD lr 0.05 momentum 0.9, constant rate, batch 32, 30 epochs (12 with --fast); differs from the reference MLP in its widths, after Han et al.";

/// `deep-compression`: 64-300-100-10 (784-300-100-10 on MNIST), prune ~92% with retraining,
/// 5-bit trained clustering (biases: 4-bit), Huffman coding of indices and relative-index gaps.
/// The control gets the same retraining and fine-tuning epochs unpruned and unclustered.
pub(crate) fn run_deep_compression(ctx: &Ctx) -> Result<Report> {
    let recipe = Recipe {
        baseline: DEEP_BASELINE,
        fine_tune: "4 retraining stages of 6 epochs (2 with --fast) then 8 epochs (3) of centroid fine-tuning, SGD lr 0.01 momentum 0.9, constant rate, batch 32",
    };
    let mut r = over_seeds("deep-compression", ctx, recipe, deep_seed)?;
    let ratio = r.baseline.bytes as f64 / r.compressed.bytes as f64;
    finish(
        &mut r,
        &[],
        &[("stored_bytes_ge_30x_fewer_than_f32", ratio >= 30.0)],
        1.0,
    );
    Ok(r)
}

/// One seed of `deep-compression`.
fn deep_seed(ctx: &Ctx, train: &Dataset<f32>, test: &Dataset<f32>) -> Result<SeedRun> {
    let widths = vec![ctx.input_dim(), 300, 100, 10];
    let mut net = mlp::<f32, _>(&widths, &mut StdRng::seed_from_u64(ctx.seed));
    let base_acc = train_sgd(
        ctx,
        "dense",
        &mut net,
        train,
        test,
        ctx.epochs(30, 12),
        0.05,
    )?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], base_acc)?;
    let (stage_epochs, ft_epochs) = (ctx.epochs(6, 2), ctx.epochs(8, 3));
    let stages = [
        stage_epochs,
        stage_epochs,
        stage_epochs,
        stage_epochs,
        ft_epochs,
    ];
    let control = sgd_control(ctx, &widths, &net, (train, test), &stages)?;
    // Iterative magnitude pruning (global threshold) with retraining.
    let mut stages = Vec::new();
    for s in [0.5, 0.75, 0.88, 0.92] {
        prune(&mut net, &PruneConfig::new(s))?;
        let acc = train_sgd(
            ctx,
            "prune + retrain",
            &mut net,
            train,
            test,
            stage_epochs,
            0.01,
        )?;
        stages.push(json!({"sparsity": s, "accuracy": acc}));
    }
    let pruned_acc = evaluate(&mut net, test, 512)?;
    let pruned: Vec<(String, ArrayD<f32>)> = net.state_dict();
    // Trained quantization: 32 entries (5 bits), entry 0 pinned at zero.
    let cfg = ClusterConfig::new(32)
        .init(ClusterInit::Linear)
        .preserve_sparsity(true);
    cluster_weights(&mut net, &ParamFilter::new(), &cfg, 0.05f32)?;
    // Biases (not pruned) share 16 values per layer (4-bit indices).
    let bias_filter = ParamFilter::new().with_bias(true).include("*.bias");
    cluster_weights(&mut net, &bias_filter, &ClusterConfig::new(16), 0.05f32)?;
    let quant_acc = evaluate(&mut net, test, 512)?;
    let ft_acc = train_sgd(
        ctx,
        "centroid fine-tuning",
        &mut net,
        train,
        test,
        ft_epochs,
        0.01,
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
    let acc = evaluate(&mut net, test, 512)?;
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
        "layers": rows,
        "weight_bytes": {"dense_f32": dense_w, "pruned": stage_total("pruned"),
                         "clustered": stage_total("clustered"), "huffman": stage_total("huffman")},
        "weight_ratio": {"pruned": dense_w / stage_total("pruned") as f64,
                         "clustered": dense_w / stage_total("clustered") as f64,
                         "huffman": dense_w / stage_total("huffman") as f64},
        "bias_bytes": {"f32": bias_bytes(&net), "clustered_4bit": bias_b},
        "total_ratio_vs_f32": baseline.bytes as f64 / bytes as f64,
    });
    Ok(SeedRun {
        baseline,
        control,
        compressed: metrics(ctx, &net, acc, bytes)?,
        extra,
    })
}
