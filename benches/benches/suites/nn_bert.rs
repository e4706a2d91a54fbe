//! compress-transformer on compress-nn: the MiniLM-L6 encoder (6 layers, hidden 384, 12
//! heads, intermediate 1536, vocabulary 30522; random weights, seed 0) on `b` sequences of
//! 128 random token ids (seed 0), eval mode, last hidden states:
//! `nn/bert_encode/b1s128` and `nn/bert_encode/b32s128` on one thread (the figures compared
//! with ONNX Runtime and PyTorch in benches/peers), `nn/bert_encode_2threads/...` on a pool
//! of two. Throughput is in tokens.
//!
//! `nn/bert_linears/b{1,32}s128` runs only the encoder's 36 projections (six `Linear`
//! forwards per layer on `[b * 128, in]` inputs, the same layers) so the share of the
//! encoder's time spent in GEMMs is the ratio of the two benches.

use std::hint::black_box;

use compress_core::{Layer, Mode};
use compress_transformer::{BertConfig, BertModel};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ndarray::{Array2, ArrayD, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Sequence length of every bench input.
const SEQ: usize = 128;

fn bert_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let cfg = BertConfig::minilm_l6();
    let mut model = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool of two threads");
    for batch in [1usize, 32] {
        let mut rng = StdRng::seed_from_u64(0);
        let ids =
            Array2::from_shape_simple_fn((batch, SEQ), || rng.random_range(0..cfg.vocab_size));
        let id = format!("b{batch}s{SEQ}");
        group.throughput(Throughput::Elements((batch * SEQ) as u64));
        group.bench_function(BenchmarkId::new("bert_encode", &id), |b| {
            b.iter(|| {
                model
                    .forward(black_box(&ids), None, Mode::Eval)
                    .expect("valid ids")
            });
        });
        group.bench_function(BenchmarkId::new("bert_encode_2threads", &id), |b| {
            b.iter(|| {
                two.install(|| {
                    model
                        .forward(black_box(&ids), None, Mode::Eval)
                        .expect("valid ids")
                })
            });
        });
    }
    group.finish();
}

fn bert_linears(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let cfg = BertConfig::minilm_l6();
    let mut model = BertModel::<f32>::random(&cfg, 0).expect("MiniLM's shapes fit");
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    for batch in [1usize, 32] {
        let tokens = batch * SEQ;
        let mut rng = StdRng::seed_from_u64(1);
        let xh = ArrayD::from_shape_simple_fn(IxDyn(&[tokens, h]), || rng.random::<f32>() - 0.5);
        let xi = ArrayD::from_shape_simple_fn(IxDyn(&[tokens, i]), || rng.random::<f32>() - 0.5);
        group.throughput(Throughput::Elements(tokens as u64));
        let id = format!("b{batch}s{SEQ}");
        group.bench_function(BenchmarkId::new("bert_linears", &id), |b| {
            b.iter(|| {
                for l in &mut model.encoder.layers {
                    let a = &mut l.attention;
                    for p in [&mut a.query, &mut a.key, &mut a.value, &mut a.output] {
                        black_box(p.forward(&xh, Mode::Eval).expect("hidden wide"));
                    }
                    black_box(
                        l.intermediate
                            .forward(&xh, Mode::Eval)
                            .expect("hidden wide"),
                    );
                    black_box(
                        l.output
                            .forward(&xi, Mode::Eval)
                            .expect("intermediate wide"),
                    );
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bert_encode, bert_linears);
