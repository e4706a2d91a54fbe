//! `quantize MODEL_DIR OUT_DIR --method ...` on the tiny BERT fixture: compressed model
//! directories that `eval` runs on their integer kernels, and bad input.

use std::path::PathBuf;

use crate::files::{TempDir, nc_err, nc_json};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../compress-transformer/tests/fixtures/tiny-bert")
}

#[test]
fn each_method_writes_a_directory_that_eval_runs_on_its_kernels() {
    let dir = TempDir::new("qdir");
    let fx = fixture();
    let fxs = fx.to_str().unwrap();
    let calib = dir.join("calib.txt");
    std::fs::write(
        &calib,
        "The cat sat.\nA dog runs far away.\nRain falls on the hills.\n",
    )
    .unwrap();
    for (method, bits) in [
        ("rtn", "4"),
        ("gptq", "4"),
        ("gptq", "3"),
        ("awq", "4"),
        ("smoothquant", "8"),
    ] {
        let out = dir.join(&format!("{method}-{bits}"));
        let v = nc_json(&[
            "quantize",
            fxs,
            out.to_str().unwrap(),
            "--method",
            method,
            "--bits",
            bits,
            "--calib",
            calib.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(v["layers"].as_array().unwrap().len(), 12, "{v}");
        let kernels = compress_checkpoint::model_dir::kernels(&out).unwrap();
        assert_eq!(kernels.len(), 12);
        // The fixture's FFN output projection reads 37 features: an odd group, which the
        // generic kernel takes at 4 bits; every other 4-bit layer runs Int4Linear.
        for (path, k) in &kernels {
            let ffn_out = path.ends_with(".output.dense") && !path.contains("attention");
            let want = match bits {
                "8" => "int8-dynamic",
                "4" if !ffn_out => "int4-weight-only",
                _ => "intn-weight-only",
            };
            assert_eq!(k, want, "{path}");
        }
        let model = compress_checkpoint::model_dir::load_compressed_bert(&out).unwrap();
        let q = compress_core::surgery::find_layer(&model, "encoder.layer.1.attention.self.query")
            .unwrap();
        assert_ne!(q.name(), "Linear");
        let e = nc_json(&["eval", out.to_str().unwrap(), "--against", fxs, "--json"]);
        let mean = e["mean_cosine"].as_f64().unwrap();
        assert!(mean > 0.9 && mean < 1.0, "{method} int{bits}: {e}");
        assert!(e["bytes"]["compressed"].as_u64() < e["bytes"]["original"].as_u64());
    }
}

#[test]
fn bad_input_is_a_typed_error_and_leaves_no_output() {
    let dir = TempDir::new("qdir-bad");
    let fx = fixture();
    let fxs = fx.to_str().unwrap();
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let e = nc_err(&[
        "quantize",
        fxs,
        o,
        "--method",
        "gptq",
        "--bits",
        "4",
        "--calib",
        empty.to_str().unwrap(),
    ]);
    assert!(e.contains("no non-empty line"), "{e}");
    let e = nc_err(&["quantize", fxs, o, "--method", "gptq", "--bits", "9"]);
    assert!(e.contains("bit width 9"), "{e}");
    let e = nc_err(&[
        "quantize",
        fxs,
        o,
        "--method",
        "awq",
        "--bits",
        "4",
        "--group-size",
        "5",
    ]);
    assert!(
        e.contains("group size 5") && e.contains("encoder.layer.0"),
        "{e}"
    );
    let e = nc_err(&["quantize", fxs, o, "--method", "smoothquant", "--bits", "4"]);
    assert!(e.contains("--bits 8"), "{e}");
    assert!(!out.exists());
    assert!(
        dir.files().iter().all(|f| !f.contains("partial")),
        "{:?}",
        dir.files()
    );
    // An existing output is refused without --force.
    std::fs::create_dir_all(&out).unwrap();
    let e = nc_err(&["quantize", fxs, o, "--bits", "4"]);
    assert!(e.contains("exists"), "{e}");
}
