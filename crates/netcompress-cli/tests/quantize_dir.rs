//! `quantize MODEL_DIR OUT_DIR --method ...` on the tiny BERT fixture: compressed model
//! directories that `eval` runs on their integer kernels, and bad input.

use crate::support::{TempDir, nc_err, nc_json, tiny_bert};

#[test]
fn each_method_writes_a_directory_that_eval_runs_on_its_kernels() {
    let dir = TempDir::new("qdir");
    let fx = tiny_bert();
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
    let fx = tiny_bert();
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

#[test]
fn bert_scale_placement_keeps_the_float_model() {
    use compress_core::Mode;
    use compress_core::surgery::{with_layer_mut, with_param_mut};
    use compress_quant::calibrated::{InputScaled, ScaleSource, fold_scales};
    use compress_transformer::BertModel;

    let mut m = BertModel::<f32>::from_dir(tiny_bert()).unwrap();
    let ids = ndarray::Array2::from_shape_fn((2, 7), |(b, t)| 2 + (b * 7 + t * 5) % 90);
    let before = m.forward(&ids, None, Mode::Eval).unwrap();
    let diff = |a: &ndarray::Array3<f32>| {
        a.iter()
            .zip(&before)
            .fold(0.0f32, |d, (x, y)| d.max((x - y).abs()))
    };
    let s: Vec<f32> = (0..32).map(|i| 0.5 + 0.05 * i as f32).collect();
    // Attention's output projection: folded into the value projection's rows.
    let p = "encoder.layer.0";
    fold_scales(
        &mut m,
        &ScaleSource::Linear(format!("{p}.attention.self.value")),
        &[format!("{p}.attention.output.dense")],
        &s,
    )
    .unwrap();
    // The FFN input (a post-LN LayerNorm's output, also the residual): explicit.
    let inter = format!("{p}.intermediate.dense");
    with_param_mut(&mut m, &format!("{inter}.weight"), |w| {
        for mut row in w.value_mut().rows_mut() {
            for (v, si) in row.iter_mut().zip(&s) {
                *v *= si;
            }
        }
        Ok(())
    })
    .unwrap();
    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
    with_layer_mut(&mut m, &inter, |slot| {
        slot.map(|l| Box::new(InputScaled::new(inv.clone(), l)))
    })
    .unwrap();
    let after = m.forward(&ids, None, Mode::Eval).unwrap();
    assert!(diff(&after) < 1e-5, "{}", diff(&after));
    // Folding into that LayerNorm instead would change the residual stream, hence the model.
    let mut folded = BertModel::<f32>::from_dir(tiny_bert()).unwrap();
    fold_scales(
        &mut folded,
        &ScaleSource::Norm(format!("{p}.attention.output.LayerNorm")),
        &[inter],
        &s,
    )
    .unwrap();
    let wrong = folded.forward(&ids, None, Mode::Eval).unwrap();
    assert!(diff(&wrong) > 1e-3, "{}", diff(&wrong));
}

/// Rewrites one metadata entry of a safetensors file's header (data offsets are relative to
/// the end of the header, so its length may change).
fn set_metadata(file: &std::path::Path, key: &str, value: &str) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"][key] = serde_json::Value::String(value.into());
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(file, out).unwrap();
}

#[test]
fn w8a8_directories_run_on_dynamic_qlinear_and_markers_are_checked() {
    use compress_core::surgery::find_layer;
    use compress_quant::DynamicQLinear;
    use compress_quant::calibrated::InputScaled;

    let dir = TempDir::new("qdir-w8a8");
    let fx = tiny_bert();
    let out = dir.join("w8a8");
    let v = nc_json(&[
        "quantize",
        fx.to_str().unwrap(),
        out.to_str().unwrap(),
        "--method",
        "smoothquant",
        "--bits",
        "8",
        "--json",
    ]);
    let paths: Vec<String> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths.len(), 12);
    let model = compress_checkpoint::model_dir::load_compressed_bert(&out).unwrap();
    let mut scaled = 0;
    for p in &paths {
        let l = find_layer(&model, p).unwrap();
        let inner = match l.downcast_ref::<InputScaled>() {
            Some(s) => {
                scaled += 1;
                s.inner()
            }
            None => l,
        };
        let q = inner.downcast_ref::<DynamicQLinear>();
        assert!(q.is_some(), "{p} runs on {}", inner.name());
        assert!(q.unwrap().weight_codes().iter().any(|&c| c != 0), "{p}");
    }
    // Query/key/value and both FFN layers keep explicit scales; attention.output is folded.
    assert_eq!(scaled, 10);
    // A marker that disagrees with the stored weight, or an unknown one: a format error
    // naming the marker, not a panic and not a silently different kernel.
    let weights = out.join("model.safetensors");
    let key = "netcompress.kernel.encoder.layer.0.attention.self.query";
    set_metadata(&weights, key, "int4-weight-only");
    let e = compress_checkpoint::model_dir::load_compressed_bert(&out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("int4-weight-only") && e.contains("int8-dynamic"),
        "{e}"
    );
    set_metadata(&weights, key, "int8-static");
    let e = nc_err(&[
        "eval",
        out.to_str().unwrap(),
        "--against",
        fx.to_str().unwrap(),
    ]);
    assert!(e.contains("unknown kernel `int8-static`"), "{e}");
    set_metadata(&weights, key, "int8-dynamic");
    nc_json(&[
        "eval",
        out.to_str().unwrap(),
        "--against",
        fx.to_str().unwrap(),
        "--json",
    ]);
}
