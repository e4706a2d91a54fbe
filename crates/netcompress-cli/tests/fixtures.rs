//! Generated checkpoints for the file-command tests (and the 1 GiB measurement example, which
//! includes this file): real-shaped tensors of mixed dtypes, written tensor by tensor.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One tensor to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Name.
    pub name: String,
    /// `F32`, `F16`, `BF16`, `F64` or `I64`.
    pub dtype: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
}

/// A `Spec`.
pub fn spec(name: &str, dtype: &'static str, shape: &[usize]) -> Spec {
    Spec {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
    }
}

fn size_of(dtype: &str) -> usize {
    match dtype {
        "F64" | "I64" => 8,
        "F32" => 4,
        _ => 2,
    }
}

/// A small xorshift generator (deterministic, no dependencies).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (Irwin-Hall sum of 4 uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * 1.732_050_8
    }
}

/// Values of a weight-like tensor: normal with a per-row scale in [0.5, 2] * 0.02, as trained
/// layers have rows of different norms.
pub fn weight_values(shape: &[usize], rng: &mut Rng) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let inner = n / rows.max(1);
    let mut v = Vec::with_capacity(n);
    for _ in 0..rows {
        let s = 0.02 * (0.5 + 1.5 * rng.uniform());
        for _ in 0..inner {
            v.push(rng.normal() * s);
        }
    }
    v
}

fn encode(values: &[f32], dtype: &str, out: &mut Vec<u8>) {
    for &x in values {
        match dtype {
            "F32" => out.extend_from_slice(&x.to_le_bytes()),
            "F64" => out.extend_from_slice(&f64::from(x).to_le_bytes()),
            "F16" => out.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
            "BF16" => out.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
            d => panic!("not a float dtype: {d}"),
        }
    }
}

/// Writes `specs` as a safetensors file, generating each tensor just before it is written
/// (memory stays at one tensor). 1-D tensors get values near 1 (norm weights); I64 tensors
/// count up (position ids).
pub fn write_safetensors(path: &Path, specs: &[Spec], seed: u64) {
    let mut offset = 0usize;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    for s in specs {
        let len = s.shape.iter().product::<usize>() * size_of(s.dtype);
        header.insert(
            s.name.clone(),
            serde_json::json!({"dtype": s.dtype, "shape": s.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut f = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    f.write_all(&(h.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&h).unwrap();
    let mut rng = Rng::new(seed);
    let mut buf = Vec::new();
    for s in specs {
        buf.clear();
        let n: usize = s.shape.iter().product();
        if s.dtype == "I64" {
            for i in 0..n as i64 {
                buf.extend_from_slice(&i.to_le_bytes());
            }
        } else if s.shape.len() < 2 {
            let v: Vec<f32> = (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect();
            encode(&v, s.dtype, &mut buf);
        } else {
            encode(&weight_values(&s.shape, &mut rng), s.dtype, &mut buf);
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

/// A small transformer-shaped checkpoint (~0.8 M parameters): BF16 embeddings, F32 attention,
/// F16 MLP, F32 norms and biases, an F64 conv stem and I64 position ids.
pub fn model_specs() -> Vec<Spec> {
    let d = 128;
    let mut v = vec![
        spec("model.embed_tokens.weight", "BF16", &[1024, d]),
        spec("model.position_ids", "I64", &[1, 256]),
        spec("model.stem.conv.weight", "F64", &[32, 16, 3, 3]),
        spec("model.stem.conv.bias", "F32", &[32]),
    ];
    for l in 0..2 {
        push_decoder_layer(&mut v, l, d, 4 * d, true);
    }
    v.push(spec("model.norm.weight", "F32", &[d]));
    v.push(spec("lm_head.weight", "BF16", &[1024, d]));
    v
}

/// Appends the tensors of decoder layer `l` (hidden `d`, MLP width `ff`): F32 norms and
/// attention projections (with a `q_proj` bias when `q_bias`), F16 MLP.
pub fn push_decoder_layer(v: &mut Vec<Spec>, l: usize, d: usize, ff: usize, q_bias: bool) {
    let p = format!("model.layers.{l}");
    v.push(spec(&format!("{p}.input_layernorm.weight"), "F32", &[d]));
    for m in ["q", "k", "v", "o"] {
        v.push(spec(
            &format!("{p}.self_attn.{m}_proj.weight"),
            "F32",
            &[d, d],
        ));
    }
    if q_bias {
        v.push(spec(&format!("{p}.self_attn.q_proj.bias"), "F32", &[d]));
    }
    v.push(spec(
        &format!("{p}.post_attention_layernorm.weight"),
        "F32",
        &[d],
    ));
    v.push(spec(&format!("{p}.mlp.gate_proj.weight"), "F16", &[ff, d]));
    v.push(spec(&format!("{p}.mlp.up_proj.weight"), "F16", &[ff, d]));
    v.push(spec(&format!("{p}.mlp.down_proj.weight"), "F16", &[d, ff]));
}

/// Writes `specs` as `n` shards `STEM-0000i-of-0000n.safetensors` plus
/// `STEM.safetensors.index.json` in `dir`; returns the index path.
pub fn write_sharded(dir: &Path, stem: &str, specs: &[Spec], n: usize, seed: u64) -> PathBuf {
    let per = specs.len().div_ceil(n);
    let mut map = serde_json::Map::new();
    for (i, chunk) in specs.chunks(per).enumerate() {
        let file = format!("{stem}-{:05}-of-{n:05}.safetensors", i + 1);
        write_safetensors(&dir.join(&file), chunk, seed + i as u64);
        for s in chunk {
            map.insert(s.name.clone(), serde_json::json!(file));
        }
    }
    let index = dir.join(format!("{stem}.safetensors.index.json"));
    let v = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(&index, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    index
}
