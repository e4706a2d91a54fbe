//! `embed` and `eval` on the tiny BERT fixture of compress-transformer.

use std::path::PathBuf;

use crate::support::{TempDir, nc_err, nc_json, tiny_bert};

/// A copy of the fixture directory with every float of `model.safetensors` scaled by
/// `1 + noise * sin(i)` (a deterministic perturbation).
fn perturbed_copy(dir: &TempDir, noise: f32) -> PathBuf {
    let out = dir.join("perturbed");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_bert().join(f), out.join(f)).unwrap();
    }
    let bytes = std::fs::read(tiny_bert().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut k = 0f32;
    for (name, view) in st.tensors() {
        let data: Vec<u8> = view
            .data()
            .chunks_exact(4)
            .flat_map(|c| {
                k += 1.0;
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (v * (1.0 + noise * k.sin())).to_le_bytes()
            })
            .collect();
        tensors.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.clone(), v.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).unwrap();
    out
}

#[test]
fn embed_prints_unit_embeddings_and_cosine_matrix() {
    let fx = tiny_bert();
    let v = nc_json(&[
        "embed",
        fx.to_str().unwrap(),
        "--text",
        "The cat sat on the mat.",
        "--text",
        "A dog runs.",
        "--text",
        "The cat sat on the mat.",
        "--json",
    ]);
    assert_eq!(v["dim"], 32);
    assert_eq!(v["model"], fx.to_str().unwrap());
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    for row in e {
        let n: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap().powi(2))
            .sum();
        assert!((n - 1.0).abs() < 1e-5, "norm^2 {n}");
    }
    assert_eq!(e[0], e[2], "same text, same embedding");
    let c = &v["cosine"];
    assert!((c[0][2].as_f64().unwrap() - 1.0).abs() < 1e-6);
    assert!(c[0][1].as_f64().unwrap() < 0.9999);
    let one = nc_json(&[
        "embed",
        fx.to_str().unwrap(),
        "--text",
        "Birds sing.",
        "--json",
    ]);
    assert!(one.get("cosine").is_none());
}

#[test]
fn embed_reads_a_file_and_rejects_bad_input() {
    let dir = TempDir::new("embed-file");
    let f = dir.join("texts.txt");
    std::fs::write(&f, "The sun.\n\n  The moon.  \n").unwrap();
    let fx = tiny_bert();
    let fxs = fx.to_str().unwrap();
    let v = nc_json(&["embed", fxs, "--file", f.to_str().unwrap(), "--json"]);
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    let e = nc_err(&["embed", fxs, "--text", "  "]);
    assert!(e.contains("text 0 is empty"), "{e}");
    let e = nc_err(&["embed", fxs]);
    assert!(e.contains("--text"), "{e}");
    let e = nc_err(&[
        "embed",
        dir.join("nothing").to_str().unwrap(),
        "--text",
        "a",
    ]);
    assert!(e.contains("config.json"), "{e}");
    // A config of another architecture names the key.
    let other = dir.join("gpt2");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = nc_err(&["embed", other.to_str().unwrap(), "--text", "a"]);
    assert!(e.contains("model_type") && e.contains("gpt2"), "{e}");
    // A truncated checkpoint.
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    for n in ["config.json", "tokenizer.json"] {
        std::fs::copy(fx.join(n), cut.join(n)).unwrap();
    }
    let bytes = std::fs::read(fx.join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = nc_err(&["embed", cut.to_str().unwrap(), "--text", "a"]);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn eval_of_a_model_against_itself_is_perfect() {
    let fx = tiny_bert();
    let fxs = fx.to_str().unwrap();
    let v = nc_json(&["eval", fxs, "--against", fxs, "--json"]);
    // The default sentences: the evaluation half of the shipped file.
    assert_eq!(v["sentences"], 150);
    assert!(
        v["sentence_source"]
            .as_str()
            .unwrap()
            .contains("evaluation"),
        "{v}"
    );
    for k in ["mean_cosine", "min_cosine", "top1_agreement", "spearman"] {
        assert!((v[k].as_f64().unwrap() - 1.0).abs() < 1e-9, "{k}: {v}");
    }
    assert_eq!(v["bytes"]["original"], v["bytes"]["compressed"]);
    assert!(v["bytes"]["original"].as_u64().unwrap() > 80_000);
    assert!(v["ms_per_sentence"]["original"].as_f64().unwrap() > 0.0);
}

#[test]
fn eval_measures_a_perturbed_model() {
    let dir = TempDir::new("eval-perturbed");
    let texts = dir.join("s.txt");
    std::fs::write(
        &texts,
        "The cat sat on the mat.\nA big dog runs fast!\nBirds sing at night.\nThe old man reads a book.\nRed and blue.\n",
    )
    .unwrap();
    let p = perturbed_copy(&dir, 0.05);
    let fx = tiny_bert();
    let v = nc_json(&[
        "eval",
        p.to_str().unwrap(),
        "--against",
        fx.to_str().unwrap(),
        "--file",
        texts.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["sentences"], 5);
    let (mean, min) = (
        v["mean_cosine"].as_f64().unwrap(),
        v["min_cosine"].as_f64().unwrap(),
    );
    assert!(min <= mean && mean < 0.99999 && min > 0.5, "{v}");
    let e = nc_err(&[
        "eval",
        fx.to_str().unwrap(),
        "--against",
        fx.to_str().unwrap(),
        "--file",
        dir.join("none").to_str().unwrap(),
    ]);
    assert!(e.contains("none"), "{e}");
}
