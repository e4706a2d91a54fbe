//! `prune MODEL_DIR OUT_DIR`: calibrated pruning of a BERT directory, the written directory
//! loaded by `embed`/`eval` on the 2:4 kernel, bad input leaving nothing behind.

use std::path::PathBuf;

use compress_transformer::{BertConfig, BertModel};

use crate::support::{TempDir, nc_err, nc_json, p, tiny_bert};

/// A random BERT (hidden 32, intermediate 64: every linear 2:4-able) with the fixture's
/// tokenizer.
fn model_dir(dir: &TempDir) -> PathBuf {
    let out = dir.join("bert");
    let mut cfg = BertConfig::new(101, 32, 2, 4, 64);
    cfg.max_position_embeddings = 40;
    BertModel::<f32>::random(&cfg, 3)
        .unwrap()
        .save_dir(&out)
        .unwrap();
    std::fs::copy(
        tiny_bert().join("tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    out
}

#[test]
fn wanda_and_sparsegpt_write_2to4_directories_that_eval_runs() {
    let dir = TempDir::new("prune-model");
    let src = model_dir(&dir);
    let mut fidelity = Vec::new();
    for method in ["magnitude", "wanda", "sparsegpt"] {
        let out = dir.join(method);
        let v = nc_json(&[
            "prune",
            p(&src),
            p(&out),
            "--method",
            method,
            "--pattern",
            "2:4",
            "--json",
        ]);
        assert_eq!(v["layers"], 12, "{v}");
        assert_eq!(v["sparse24_layers"], 12, "{v}");
        assert!((v["sparsity"].as_f64().unwrap() - 0.5).abs() < 1e-12, "{v}");
        // The 2:4 weights are stored as sparse tensors: the directory shrinks.
        let e = nc_json(&["eval", p(&out), "--against", p(&src), "--json"]);
        assert!(
            e["bytes"]["compressed"].as_u64() < e["bytes"]["original"].as_u64(),
            "{e}"
        );
        let mean = e["mean_cosine"].as_f64().unwrap();
        assert!(mean > 0.5 && mean < 1.0, "{method}: {e}");
        fidelity.push(mean);
        let emb = nc_json(&[
            "embed",
            p(&out),
            "--text",
            "The cat sat on the mat.",
            "--json",
        ]);
        assert!(emb.to_string().contains('['), "{emb}");
    }
    assert!(fidelity.iter().all(|m| m.is_finite()));
}

#[test]
fn unstructured_pattern_and_bad_input() {
    let dir = TempDir::new("prune-model-bad");
    let src = model_dir(&dir);
    let out = dir.join("u50");
    let v = nc_json(&[
        "prune",
        p(&src),
        p(&out),
        "--method",
        "wanda",
        "--pattern",
        "unstructured",
        "--sparsity",
        "0.5",
        "--json",
    ]);
    assert_eq!(v["sparse24_layers"], 0, "{v}");
    assert!((v["sparsity"].as_f64().unwrap() - 0.5).abs() < 1e-3, "{v}");
    // An empty calibration file: a clear error, no output directory.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let bad = dir.join("bad");
    let e = nc_err(&[
        "prune",
        p(&src),
        p(&bad),
        "--method",
        "sparsegpt",
        "--calib",
        p(&empty),
    ]);
    assert!(e.contains("calib"), "{e}");
    assert!(!bad.exists());
    // The fixture's intermediate width 37 is not a multiple of 4: typed error, nothing left.
    let e = nc_err(&["prune", p(&tiny_bert()), p(&bad), "--method", "wanda"]);
    assert!(e.contains("output.dense") && e.contains('4'), "{e}");
    assert!(!bad.exists());
    let e = nc_err(&["prune", p(&src), p(&bad), "--pattern", "5:4"]);
    assert!(e.contains("--pattern"), "{e}");
    let e = nc_err(&["prune", p(&src), p(&out), "--method", "wanda"]);
    assert!(e.contains("exists"), "{e}");
}
