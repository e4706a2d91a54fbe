//! `QuantizedModel` files and the command-style functions read each other's output.

use std::path::PathBuf;

use compress_checkpoint::{
    QuantizeOptions, QuantizedModelFile, ShardWriter, commit, dequantize_file, f32_bytes,
    quantize_file,
};
use compress_checkpoint::{SafetensorsFile, load_quantized_model};
use compress_quant::{
    Granularity, IntScheme, PtqConfig, QuantScheme, QuantizedModel, quantize_model,
};
use rand::{SeedableRng, rngs::StdRng};

/// A scratch directory removed on drop.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ckpt-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads every F32 tensor of a plain file.
fn read_all(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut f = SafetensorsFile::open(path).unwrap();
    f.tensors
        .clone()
        .into_iter()
        .map(|t| {
            let v = f.read_f32(&t).unwrap().unwrap();
            (t.name.clone(), t.shape.clone(), v)
        })
        .collect()
}

fn models() -> Vec<QuantizedModel> {
    let mut rng = StdRng::seed_from_u64(7);
    let net = compress_nn::models::mlp::<f32, _>(&[24, 16, 8], &mut rng);
    let schemes = [
        QuantScheme::Int(IntScheme::int8_per_channel()),
        QuantScheme::Int(IntScheme::new(4).per_group(8).affine().f16_scales()),
        QuantScheme::Int(IntScheme::new(3).affine()),
        QuantScheme::F16,
        QuantScheme::Bf16,
    ];
    let cnn = compress_nn::models::small_cnn::<f32, _>(1, 8, 10, &mut rng);
    let mut out: Vec<QuantizedModel> = schemes
        .into_iter()
        .map(|s| quantize_model(&net, &PtqConfig::new(s)).unwrap().0)
        .collect();
    // Conv kernels grouped along their flattened inputs: the codes' shape differs (qshape).
    for s in [
        IntScheme::new(2).per_group(16),
        IntScheme::new(4).per_group(16).affine(),
    ] {
        let (q, _) = quantize_model(&cnn, &PtqConfig::new(QuantScheme::Int(s))).unwrap();
        assert!(
            q.quantized
                .iter()
                .any(|p| p.tensor.shape() != p.shape.as_slice())
        );
        out.push(q);
    }
    out
}

#[test]
fn saved_models_load_back_bit_exact_and_dequantize_in_the_cli_format() {
    let dir = Dir::new("model");
    for (i, q) in models().into_iter().enumerate() {
        let path = dir.join(&format!("m{i}.safetensors"));
        q.save(&path).unwrap();
        assert_eq!(QuantizedModel::load(&path).unwrap(), q, "scheme {i}");
        // The checkpoint reader (what `netcompress dequantize` runs) restores the same values.
        let out = dir.join(&format!("m{i}-dense.safetensors"));
        dequantize_file(&path, &out).unwrap();
        let dense = read_all(&out);
        for p in &q.quantized {
            let want = p.tensor.dequantize::<f32>();
            let (_, shape, got) = dense.iter().find(|(n, ..)| n == &p.path).unwrap();
            assert_eq!(shape, &p.shape);
            assert_eq!(
                got,
                &want.iter().copied().collect::<Vec<f32>>(),
                "{}",
                p.path
            );
        }
        for (name, shape, values) in &q.float {
            let (_, s, v) = dense.iter().find(|(n, ..)| n == name).unwrap();
            assert_eq!((s, v), (shape, values));
        }
        assert_eq!(dense.len(), q.quantized.len() + q.float.len());
    }
}

#[test]
fn files_quantized_by_the_command_load_as_models() {
    let dir = Dir::new("cmd");
    let input = dir.join("in.safetensors");
    let w: Vec<f32> = (0..32 * 16)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
        .collect();
    let mut wr = ShardWriter::with_reserve(&input, 0).unwrap();
    wr.add("a.weight", "F32", &[32, 16], &f32_bytes(&w))
        .unwrap();
    wr.add("a.bias", "F32", &[32], &f32_bytes(&[0.5; 32]))
        .unwrap();
    commit(vec![wr.assemble().unwrap()]).unwrap();
    let q8 = dir.join("q.safetensors");
    let opts = QuantizeOptions {
        group_size: Some(8),
        ..QuantizeOptions::new(4)
    };
    quantize_file(&input, &q8, &opts).unwrap();
    let model = load_quantized_model(&q8).unwrap();
    assert_eq!(model.quantized.len(), 1);
    let p = &model.quantized[0];
    assert_eq!(
        (p.path.as_str(), p.shape.as_slice()),
        ("a.weight", &[32usize, 16][..])
    );
    match p.tensor.scheme() {
        QuantScheme::Int(s) => {
            assert_eq!(s.bits, 4);
            assert_eq!(s.granularity, Granularity::PerGroup { group_size: 8 });
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        model.float,
        vec![("a.bias".to_string(), vec![32], vec![0.5; 32])]
    );
    // The model's dequantized weight equals what dequantize restores from the same file.
    let dense = dir.join("d.safetensors");
    dequantize_file(&q8, &dense).unwrap();
    let restored = read_all(&dense);
    let got: Vec<f32> = p.tensor.dequantize::<f32>().iter().copied().collect();
    assert_eq!(restored[0].2, got);
    // And a model saved from it is read by the command-side reader again.
    let again = dir.join("again.safetensors");
    model.save(&again).unwrap();
    assert_eq!(load_quantized_model(&again).unwrap(), model);
}
