//! compress-quant in the transformer: the MiniLM-L6 encoder (6 layers, hidden 384, 12 heads,
//! intermediate 1536; random weights, seed 0) with all six projections of every layer as
//! `DynamicQLinear` (W8A8: int8 per-channel weights, per-token int8 activations quantized on
//! the fly), attention matmuls, softmax, GELU and LayerNorm in f32, on `b` sequences of 128
//! random token ids (seed 0): `quant/bert_encode_int8/b1s128` and `.../b32s128`, beside the
//! f32 encoder's `nn/bert_encode/...` (same model and ids). One thread. Throughput in tokens.
//!
//! `quant/bert_encode_int4/b1s128`: the same encoder with the six projections of every layer
//! as `Int4Linear` (weight-only int4, groups of 128 inputs with zero points, as GPTQ/AWQ
//! write them; f32 activations).
//!
//! `quant/bert_encode_w4a8/b1s128` and `.../b32s128`: the same int4 g128 weights as
//! `W4A8Linear` (per-token int8 activations, the `vpdpbusd` W4A8 kernel).
//!
//! `quant/linear_int3_g128/128x384x1536`: `IntNLinear` (int3, groups of 128, the weight
//! dequantized tile by tile) at the shape of MiniLM's FFN input projection on 128 tokens,
//! beside `.../whole_weight`: the whole weight dequantized into a new buffer and one GEMM
//! per call (what `IntNLinear` did before).

use std::hint::black_box;

use compress_core::Layer;
use compress_core::Mode;
use compress_nn::Linear;
use compress_quant::{Int4Linear, W4A8Linear, quantize_dynamic};
use compress_transformer::{BertConfig, BertModel};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Sequence length of every bench input.
const SEQ: usize = 128;

fn bert_encode_int8(c: &mut Criterion) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let cfg = BertConfig::minilm_l6();
    let mut model = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    let swapped =
        quantize_dynamic(&mut model, |p| p.starts_with("encoder.")).expect("finite weights");
    assert_eq!(
        swapped.len(),
        6 * 6,
        "six projections per layer: {swapped:?}"
    );
    for batch in [1usize, 32] {
        let mut rng = StdRng::seed_from_u64(0);
        let ids =
            Array2::from_shape_simple_fn((batch, SEQ), || rng.random_range(0..cfg.vocab_size));
        group.throughput(Throughput::Elements((batch * SEQ) as u64));
        let id = format!("b{batch}s{SEQ}");
        group.bench_function(BenchmarkId::new("bert_encode_int8", &id), |b| {
            b.iter(|| {
                model
                    .forward(black_box(&ids), None, Mode::Eval)
                    .expect("valid ids")
            });
        });
    }
    group.finish();
}

/// `slot` (a `Linear`) as an int4 g128 layer with zero points: weight-only or W4A8.
fn int4(slot: &mut Box<dyn Layer<f32>>, w4a8: bool) {
    let lin = slot
        .as_any()
        .downcast_ref::<Linear<f32>>()
        .expect("the encoder's projections start as Linear");
    let q = Int4Linear::from_linear(lin, 128, true).expect("128 divides 384 and 1536");
    *slot = if w4a8 {
        Box::new(W4A8Linear::from_int4(&q).expect("int4 g128"))
    } else {
        Box::new(q)
    };
}

/// The encoder with every projection int4 g128 (`w4a8`: on the W4A8 kernel), on `batches`.
fn bench_int4(c: &mut Criterion, name: &str, w4a8: bool, batches: &[usize]) {
    let mut group = c.benchmark_group("quant");
    group.sample_size(10);
    let cfg = BertConfig::minilm_l6();
    let mut model = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    for l in &mut model.encoder.layers {
        let a = &mut l.attention;
        for p in [&mut a.query, &mut a.key, &mut a.value, &mut a.output] {
            int4(p, w4a8);
        }
        int4(&mut l.intermediate, w4a8);
        int4(&mut l.output, w4a8);
    }
    for &batch in batches {
        let mut rng = StdRng::seed_from_u64(0);
        let ids =
            Array2::from_shape_simple_fn((batch, SEQ), || rng.random_range(0..cfg.vocab_size));
        group.throughput(Throughput::Elements((batch * SEQ) as u64));
        let id = format!("b{batch}s{SEQ}");
        group.bench_function(BenchmarkId::new(name, &id), |b| {
            b.iter(|| {
                model
                    .forward(black_box(&ids), None, Mode::Eval)
                    .expect("valid ids")
            });
        });
    }
    group.finish();
}

fn bert_encode_int4(c: &mut Criterion) {
    bench_int4(c, "bert_encode_int4", false, &[1]);
}

fn bert_encode_w4a8(c: &mut Criterion) {
    bench_int4(c, "bert_encode_w4a8", true, &[1, 32]);
}

fn linear_int3(c: &mut Criterion) {
    use compress_quant::calibrated::IntNLinear;
    use compress_quant::{IntScheme, QTensor};
    let (m, k, n) = (128, 384, 1536);
    let mut group = c.benchmark_group("quant");
    group.sample_size(20);
    let lin = Linear::<f32>::new(k, n, true, &mut StdRng::seed_from_u64(0));
    let w: Vec<f32> = lin.weight.effective().iter().copied().collect();
    let s = IntScheme::new(3).per_group(128).affine();
    let q = QTensor::quantize_slice(&w, &[n, k], s).expect("128 divides 384");
    let b: Vec<f32> = lin
        .bias
        .as_ref()
        .expect("bias")
        .effective()
        .iter()
        .copied()
        .collect();
    let mut layer = IntNLinear::from_qtensor(q.clone(), Some(b.clone())).expect("2-D int3");
    let mut rng = StdRng::seed_from_u64(1);
    let x = ndarray::ArrayD::from_shape_simple_fn(vec![m, k], || rng.random_range(-1.0f32..1.0));
    group.throughput(Throughput::Elements((m * k * n) as u64));
    let id = format!("{m}x{k}x{n}");
    group.bench_function(BenchmarkId::new("linear_int3_g128", &id), |bench| {
        bench.iter(|| layer.forward(black_box(&x), Mode::Eval).expect("finite"));
    });
    let xv = x.view().into_dimensionality::<ndarray::Ix2>().expect("2-D");
    group.bench_function(
        BenchmarkId::new("linear_int3_g128/whole_weight", &id),
        |bench| {
            bench.iter(|| {
                let mut wd = vec![0.0f32; n * k];
                q.dequantize_into(&mut wd);
                let wv = ndarray::ArrayView2::from_shape((n, k), &wd).expect("n * k");
                let mut y = Array2::<f32>::zeros((m, n));
                compress_nn::gemm::matmul_into(1.0, &xv, &wv.t(), 0.0, &mut y.view_mut());
                y += &ndarray::ArrayView1::from(&b);
                y
            });
        },
    );
    group.finish();
}

criterion_group!(
    benches,
    bert_encode_int8,
    bert_encode_int4,
    bert_encode_w4a8,
    linear_int3
);
