//! Bad input: every case is a typed error naming what is wrong, never a panic; sharded
//! checkpoints load like single files.

use std::path::{Path, PathBuf};

use crate::common::fixture_dir;
use compress_core::{CoreError, Mode, Module};
use compress_transformer::{BertConfig, BertModel, SentenceEncoder, TransformerError};
use ndarray::array;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ct-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(fixture_dir().join(f), p.join(f)).unwrap();
        }
        Self(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the fixture's tensors, edited by `edit`, to `path`.
fn write_tensors(path: &Path, edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut t);
    let views: Vec<(String, TensorView<'_>)> = t
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn load(dir: &Path) -> TransformerError {
    BertModel::<f32>::from_dir(dir).unwrap_err()
}

#[test]
fn missing_files_are_io_errors_naming_the_file() {
    let t = Tmp::new("missing");
    let e = load(&t.0);
    assert!(matches!(e, TransformerError::Io { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
    std::fs::remove_file(t.0.join("config.json")).unwrap();
    assert!(load(&t.0).to_string().contains("config.json"));
}

#[test]
fn truncated_safetensors_is_a_format_error() {
    let t = Tmp::new("truncated");
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    for cut in [4, 100, bytes.len() - 1] {
        std::fs::write(t.0.join("model.safetensors"), &bytes[..cut]).unwrap();
        let e = load(&t.0);
        assert!(
            matches!(e, TransformerError::Format { .. }),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn unsupported_configs_name_the_key() {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("config.json")).unwrap())
            .unwrap();
    let cases = [
        ("model_type", serde_json::json!("gpt2")),
        ("position_embedding_type", serde_json::json!("relative_key")),
        ("hidden_act", serde_json::json!("relu")),
        ("num_attention_heads", serde_json::json!(5)),
        ("hidden_size", serde_json::json!(-3)),
    ];
    for (key, value) in cases {
        let mut v = base.clone();
        v[key] = value;
        let e = BertConfig::from_value(&v).unwrap_err();
        assert!(
            matches!(e, TransformerError::Unsupported { .. }),
            "{key}: {e}"
        );
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove("vocab_size");
    assert!(
        BertConfig::from_value(&v)
            .unwrap_err()
            .to_string()
            .contains("vocab_size")
    );
}

#[test]
fn unknown_missing_and_misshapen_tensors_name_the_key() {
    let t = Tmp::new("keys");
    let f = t.0.join("model.safetensors");
    write_tensors(&f, |v| {
        v.push(("encoder.layer.9.extra.weight".into(), vec![1], vec![0; 4]))
    });
    let e = load(&t.0);
    assert!(
        matches!(&e, TransformerError::UnknownKey { key, .. } if key == "encoder.layer.9.extra.weight"),
        "{e}"
    );
    write_tensors(&f, |v| {
        v.retain(|(n, _, _)| n != "encoder.layer.1.output.dense.bias")
    });
    let e = load(&t.0);
    assert!(
        matches!(&e, TransformerError::MissingKey { key, .. } if key == "encoder.layer.1.output.dense.bias"),
        "{e}"
    );
    write_tensors(&f, |v| {
        let x = v
            .iter_mut()
            .find(|(n, _, _)| n == "embeddings.LayerNorm.weight")
            .unwrap();
        x.1 = vec![16, 2];
    });
    let e = load(&t.0);
    assert!(
        matches!(&e, TransformerError::Tensor { key, .. } if key == "embeddings.LayerNorm.weight"),
        "{e}"
    );
    // The position id buffer of older checkpoints is accepted and ignored.
    write_tensors(&f, |v| {
        v.push(("embeddings.position_ids".into(), vec![1, 2], vec![0; 8]))
    });
    BertModel::<f32>::from_dir(&t.0).unwrap();
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let t = Tmp::new("sharded");
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    let mut map = serde_json::Map::new();
    for (k, file) in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    .iter()
    .enumerate()
    {
        let part: Vec<&String> = names
            .iter()
            .filter(|n| n.contains("layer.1") == (k == 1))
            .collect();
        write_tensors(&t.0.join(file), |v| v.retain(|(n, _, _)| part.contains(&n)));
        for n in part {
            map.insert(n.clone(), serde_json::json!(file));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(t.0.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let a = BertModel::<f32>::from_dir(&t.0).unwrap();
    let b = BertModel::<f32>::from_dir(fixture_dir()).unwrap();
    assert_eq!(a.state_dict(), b.state_dict());
}

#[test]
fn token_ids_and_texts_are_checked() {
    let mut m = BertModel::<f32>::from_dir(fixture_dir()).unwrap();
    let e = m
        .forward(&array![[2, 101, 3]], None, Mode::Eval)
        .unwrap_err();
    let s = e.to_string();
    assert!(
        matches!(e, TransformerError::Core(CoreError::InvalidConfig { .. })),
        "{s}"
    );
    assert!(s.contains("token id") && s.contains("101"), "{s}");
    let long = ndarray::Array2::<usize>::from_elem((1, 41), 5);
    assert!(
        m.forward(&long, None, Mode::Eval)
            .unwrap_err()
            .to_string()
            .contains("40")
    );
    let mut enc = SentenceEncoder::from_dir(fixture_dir()).unwrap();
    let e = enc.embed(&["fine", ""]).unwrap_err();
    assert!(matches!(e, TransformerError::EmptyText { index: 1 }), "{e}");
    assert!(
        enc.embed_ids(&[vec![2, 500, 3]])
            .unwrap_err()
            .to_string()
            .contains("500")
    );
    // Texts longer than the position table are truncated, not rejected.
    let long_text = "the cat ".repeat(100);
    assert_eq!(enc.embed(&[long_text.as_str()]).unwrap().dim(), (1, 32));
}

#[test]
fn layer_interface_uses_negative_ids_as_padding() {
    use compress_core::Layer;
    let mut m = BertModel::<f64>::from_dir(fixture_dir()).unwrap();
    let ids = array![[2, 7, 8, 3], [2, 9, 3, 0]];
    let mask = compress_nn::PaddingMask::from_lengths(&[4, 3], 4).unwrap();
    let want = m.forward(&ids, Some(&mask), Mode::Eval).unwrap();
    let x = array![[2.0, 7.0, 8.0, 3.0], [2.0, 9.0, 3.0, -1.0]].into_dyn();
    let got = Layer::forward(&mut m, &x, Mode::Eval).unwrap();
    assert_eq!(got, want.into_dyn());
}

#[test]
fn keep_layers_rejects_out_of_range_and_unordered_indices() {
    let cfg = compress_transformer::BertConfig::new(50, 8, 3, 2, 12);
    let mut m = compress_transformer::BertModel::<f32>::random(&cfg, 1).unwrap();
    for bad in [&[0, 3][..], &[1, 1], &[2, 0]] {
        let e = m.keep_layers(bad).unwrap_err();
        assert!(e.to_string().contains("layers"), "{bad:?}: {e}");
    }
    assert_eq!(m.encoder.layers.len(), 3);
    m.keep_layers(&[0, 2]).unwrap();
    assert_eq!(m.encoder.layers.len(), 2);
    assert_eq!(m.config.num_hidden_layers, 2);
}
