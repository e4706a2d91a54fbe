//! `quant-int8-inference`: the MLP and the CNN running on the integer kernels (`QLinear`,
//! `QConv2d`), their predictions against the fake-quant simulation and f32, and their
//! latency against f32 timed in interleaved pairs.

use std::time::Instant;

use compress_core::{Layer, Mode};
use compress_nn::train::predict;
use compress_nn::{Conv2d, Linear, Sequential};
use compress_quant::{ActQuant, ActRange, FakeQuantAct, IntScheme, QConv2d, QLinear, QTensor};
use ndarray::{ArrayD, Axis};
use serde_json::{Value, json};

use super::baseline::train_reference_mlp;
use super::quant::{Arch, copy_of, train_cnn};
use super::{Ctx, Metrics, Report};
use crate::error::Result;

/// The CNN on the integer kernels where they are faster on this machine: every [`Linear`]
/// becomes a [`QLinear`]; each [`Conv2d`] becomes a [`QConv2d`] only if that, timed on the
/// layer's own input for `calib` (256 training images, never test data) in 7 interleaved
/// pairs, beats the f32 convolution (median ratio above 1). A convolution with few
/// multiply-adds per output (MNIST's first: 1 channel x 3 x 3 = 9 into 16 channels) is
/// dominated by the integer path's per-output work (im2col of the codes, the dequantizing
/// epilogue) and stays f32. Returns the model and, per convolution, the timings and choice.
fn int8_cnn(
    ctx: &Ctx,
    cnn: &Sequential<f32>,
    calib: &ArrayD<f32>,
) -> Result<(Sequential<f32>, Vec<Value>)> {
    let mut q = copy_of(ctx, Arch::Cnn, cnn)?;
    let mut float = copy_of(ctx, Arch::Cnn, cnn)?;
    let mut h = calib.clone();
    let mut choices = Vec::new();
    for i in 0..q.len() {
        if let Some(conv) = q.get::<Conv2d<f32>>(i) {
            let int8 = QConv2d::from_conv(conv)?;
            let mut f = Sequential::new().with(conv.clone());
            let mut g = Sequential::new().with(int8.clone());
            let t = time_pairs(7, &mut f, &mut g, |m| {
                Ok(m.forward(&h, Mode::Eval).map(drop)?)
            })?;
            let cfg = conv.config();
            choices.push(json!({
                "layer": i,
                "gemm_depth": cfg.in_per_group() * cfg.kernel.0 * cfg.kernel.1,
                "out_channels": cfg.out_channels,
                "timing_ms": t.json(),
                "int8": t.speedup > 1.0,
            }));
            if t.speedup > 1.0 {
                q.layers_mut()[i] = Box::new(int8);
            }
        } else if let Some(l) = q.get::<Linear<f32>>(i) {
            let ql = QLinear::from_linear(l, ActQuant::DynamicPerRow)?;
            q.layers_mut()[i] = Box::new(ql);
        }
        // The next layer's input: the float model's activations.
        h = float.layers_mut()[i].forward(&h, Mode::Eval)?;
    }
    Ok((q, choices))
}

/// Latency of a float model and its integer twin, timed in interleaved pairs.
#[derive(Debug, Clone, Copy)]
struct PairTiming {
    /// Median wall time of the float model, ms per timed run.
    f32_ms: f64,
    /// Median wall time of the integer model, ms per timed run.
    int8_ms: f64,
    /// Median over the pairs of `f32 time / int8 time`.
    speedup: f64,
}

impl PairTiming {
    fn json(&self) -> serde_json::Value {
        json!({"f32_ms": self.f32_ms, "int8_ms": self.int8_ms, "speedup": self.speedup})
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `run(f32)` and `run(int8)` in `reps` back-to-back pairs (f32 first in even pairs,
/// int8 first in odd ones) after one untimed run of each, so a change of load on a shared
/// machine hits both alike; each timed run repeats `run` enough times to last about 2 ms
/// (measured on the untimed f32 run). Times are per call of `run`, in ms.
fn time_pairs(
    reps: usize,
    f32_net: &mut Sequential<f32>,
    int8_net: &mut Sequential<f32>,
    mut run: impl FnMut(&mut Sequential<f32>) -> Result<()>,
) -> Result<PairTiming> {
    let mut once = |net: &mut Sequential<f32>, inner: usize| -> Result<f64> {
        let start = Instant::now();
        for _ in 0..inner {
            run(net)?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e3 / inner as f64)
    };
    let warm = once(f32_net, 1)?;
    once(int8_net, 1)?;
    let inner = ((2.0 / warm.max(1e-6)).ceil() as usize).clamp(1, 1000);
    let (mut tf, mut ti, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps.max(1) {
        let (f, q) = if i % 2 == 0 {
            let f = once(f32_net, inner)?;
            (f, once(int8_net, inner)?)
        } else {
            let q = once(int8_net, inner)?;
            (once(f32_net, inner)?, q)
        };
        tf.push(f);
        ti.push(q);
        ratios.push(f / q);
    }
    Ok(PairTiming {
        f32_ms: median(tf),
        int8_ms: median(ti),
        speedup: median(ratios),
    })
}

/// Interleaved latency of `net` and its integer twin `q` in eval mode: the whole test set in
/// batches of 256, and the first (up to) 100 samples one at a time (per sample).
fn latency_pairs(
    net: &mut Sequential<f32>,
    q: &mut Sequential<f32>,
    x: &ArrayD<f32>,
    reps: usize,
) -> Result<(PairTiming, PairTiming)> {
    let batched = time_pairs(reps, net, q, |m| Ok(predict(m, x, 256).map(drop)?))?;
    let n1 = x.shape()[0].min(100);
    let singles = x.slice_axis(ndarray::Axis(0), (0..n1).into()).to_owned();
    let mut single = time_pairs(reps, net, q, |m| Ok(predict(m, &singles, 1).map(drop)?))?;
    single.f32_ms /= n1 as f64;
    single.int8_ms /= n1 as f64;
    Ok((batched, single))
}

/// Whether the integer model is faster at both batch sizes: the median of the interleaved
/// pairs' `f32 / int8` time ratios above 1 at batch 256 and at batch 1.
fn faster((batched, single): (PairTiming, PairTiming)) -> bool {
    batched.speedup > 1.0 && single.speedup > 1.0
}

/// The stated targets: predictions as the simulation's, and, on a CPU whose int8 kernel has
/// VNNI (`vpdpbusd`), int8 faster than f32 for the CNN at both batch sizes and for the MLP at
/// batch 1. The MLP at batch 256 is level (its layers are too small for the integer GEMM to
/// pay for the per-row quantization), so its ratio is reported but not a target; without VNNI
/// the exact AVX2 emulation costs several instructions per product and no speed target holds.
fn speed_targets(
    same: f64,
    mlp: (PairTiming, PairTiming),
    cnn: (PairTiming, PairTiming),
) -> serde_json::Value {
    let mut t = json!({ "same_predictions_ge_99.5pct": same >= 0.995 });
    if compress_quant::kernels::gemm_i8_kernel().contains("vnni") {
        t["int8_faster_than_f32_mlp_batch1"] = json!(mlp.1.speedup > 1.0);
        t["int8_faster_than_f32_cnn"] = json!(faster(cnn));
    }
    t
}

/// The `latency_ms` object of one model.
fn latency_json((batched, single): (PairTiming, PairTiming)) -> serde_json::Value {
    json!({
        "f32_test_set_batch256": batched.f32_ms, "int8_test_set_batch256": batched.int8_ms,
        "f32_per_sample_batch1": single.f32_ms, "int8_per_sample_batch1": single.int8_ms,
        "speedup_batch256": batched.speedup, "speedup_batch1": single.speedup,
        "pairs": {"batch256": batched.json(), "batch1": single.json()},
    })
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// `quant-int8-inference`.
pub(crate) fn run_int8_inference(ctx: &Ctx) -> Result<Report> {
    let (train, test) = ctx.load_flat()?;
    let (mut net, acc) = train_reference_mlp(ctx, &train, &test)?;
    // Integer model: each Linear becomes a QLinear (int8 per-channel weights, dynamic
    // per-row int8 activations); simulation: the same quantization in float.
    let mut int8 = copy_of(ctx, Arch::Mlp, &net)?;
    let mut sim = Sequential::<f32>::new();
    let mut int8_bytes = 0usize;
    for i in 0..int8.len() {
        let lin = int8.get::<Linear<f32>>(i).cloned();
        if let Some(lin) = lin {
            let q = QLinear::from_linear(&lin, ActQuant::DynamicPerRow)?;
            int8_bytes += q.size_bytes();
            let w = QTensor::quantize(&lin.weight.value().view(), IntScheme::int8_per_channel())?;
            let b = lin.bias.as_ref().map(|b| b.value().clone());
            sim.push(FakeQuantAct::new(
                IntScheme::new(8).per_channel(0),
                ActRange::Dynamic,
            )?);
            sim.push(Linear::from_arrays(w.dequantize(), b));
            int8.layers_mut()[i] = Box::new(q);
        } else {
            sim.push(compress_nn::ReLU::new());
        }
    }
    let p_f32 = predict(&mut net, &test.x, 256)?;
    let p_int8 = predict(&mut int8, &test.x, 256)?;
    let p_sim = predict(&mut sim, &test.x, 256)?;
    let acc8 = agreement(&p_int8, &test.labels);
    let same = agreement(&p_int8, &p_sim);
    let reps = if ctx.fast { 21 } else { 41 };
    let mlp_speed = latency_pairs(&mut net, &mut int8, &test.x, reps)?;
    // The CNN through QConv2d / QLinear (BatchNorm stays in float).
    let (itrain, itest) = ctx.load_images()?;
    let (mut cnn, cnn_acc) = train_cnn(ctx, &itrain, &itest)?;
    let calib = itrain
        .x
        .slice_axis(Axis(0), (0..itrain.len().min(256)).into());
    let (mut qcnn, conv_choices) = int8_cnn(ctx, &cnn, &calib.to_owned())?;
    let pc = predict(&mut cnn, &itest.x, 256)?;
    let pq = predict(&mut qcnn, &itest.x, 256)?;
    let cnn_speed = latency_pairs(&mut cnn, &mut qcnn, &itest.x, reps)?;
    let baseline = Metrics::dense_f32(&net, &[ctx.input_dim()], acc)?;
    let mut compressed = baseline;
    compressed.accuracy = acc8;
    compressed.bytes = int8_bytes;
    let extra = json!({
        "mlp": {
            "f32_accuracy": acc,
            "int8_accuracy": acc8,
            "agreement_int8_vs_fake_quant_simulation": same,
            "agreement_int8_vs_f32": agreement(&p_int8, &p_f32),
            "latency_ms": latency_json(mlp_speed),
            "test_samples": test.len(),
        },
        "cnn": {
            "f32_accuracy": cnn_acc,
            "int8_accuracy": agreement(&pq, &itest.labels),
            "agreement_int8_vs_f32": agreement(&pq, &pc),
            "latency_ms": latency_json(cnn_speed),
            "convolutions": conv_choices,
            "note": "QLinear for every linear layer; QConv2d (per-image dynamic int8 activations, channels-last im2col) for each convolution where it was measured faster than the f32 one (see convolutions); BatchNorm, ReLU and pooling in f32",
        },
        "kernel": compress_quant::kernels::gemm_i8_kernel(),
        "timing": format!("f32 and int8 timed in {reps} interleaved back-to-back pairs (order alternating, each timed run about 2 ms of repeated calls); latencies are medians, speedups the median of the pairs' f32 / int8 ratios"),
        "targets": speed_targets(same, mlp_speed, cnn_speed),
    });
    Ok(Report::new(
        "quant-int8-inference",
        ctx,
        baseline,
        compressed,
        extra,
    ))
}
