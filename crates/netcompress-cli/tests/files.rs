//! The file commands end to end: quantize -> dequantize -> diff on generated checkpoints
//! (single file and sharded), size and SQNR targets, atomic writes and readable errors.

use std::path::Path;

use crate::fixtures::{model_specs, spec, write_safetensors, write_sharded};
use crate::support::{TempDir, nc_err, nc_json, p};

/// quantize -> dequantize -> diff; checks names, shapes, SQNR and returns the size ratio.
fn round_trip(dir: &TempDir, input: &Path, out: &str, back: &str, quant_args: &[&str]) -> f64 {
    let (qo, bo) = (dir.join(out), dir.join(back));
    let mut args = vec!["quantize", p(input), p(&qo), "--json"];
    args.extend_from_slice(quant_args);
    let q = nc_json(&args);
    let mean = q["totals"]["mean_sqnr_db"].as_f64().unwrap();
    assert!(mean > 10.0, "{q}");
    let d = nc_json(&["dequantize", p(&qo), p(&bo), "--json"]);
    assert!(d["totals"]["transformed"].as_u64().unwrap() > 0);
    let diff = nc_json(&["diff", p(input), p(&bo), "--json"]);
    let t = &diff["totals"];
    assert_eq!(t["only_a"], 0, "{diff}");
    assert_eq!(t["only_b"], 0, "{diff}");
    assert_eq!(t["mismatched"], 0, "{diff}");
    let min_db = if quant_args.contains(&"8") {
        35.0
    } else {
        15.0
    };
    for r in diff["tensors"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let quantized = r["shape"].as_array().unwrap().len() >= 2 && r["dtype_a"] != "I64";
        if quantized {
            let db = r["sqnr_db"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {r}"));
            assert!(db >= min_db, "{name}: SQNR {db} dB < {min_db}");
            assert_eq!(r["dtype_a"], r["dtype_b"], "{name} keeps its dtype");
        } else {
            assert_eq!(
                r["identical"].as_bool().or(r["equal"].as_bool()),
                Some(true),
                "{name} passes through: {r}"
            );
        }
    }
    // Diffing the compressed file directly gives the same SQNRs.
    let direct = nc_json(&["diff", p(input), p(&qo), "--json"]);
    let a = direct["totals"]["min_sqnr_db"].as_f64().unwrap();
    let b = t["min_sqnr_db"].as_f64().unwrap();
    assert!((a - b).abs() < 2.0, "direct {a} vs dequantized {b}");
    q["totals"]["ratio_f32"].as_f64().unwrap()
}

#[test]
fn quantize_dequantize_diff_meets_the_targets() {
    let dir = TempDir::new("roundtrip");
    let input = dir.join("model.safetensors");
    write_safetensors(&input, &model_specs(), 1);
    let r8 = round_trip(
        &dir,
        &input,
        "q8.safetensors",
        "d8.safetensors",
        &["--bits", "8"],
    );
    assert!(r8 <= 0.27, "int8 output is {:.2}% of f32", 100.0 * r8);
    let r4 = round_trip(
        &dir,
        &input,
        "q4.safetensors",
        "d4.safetensors",
        &["--bits", "4", "--group-size", "32"],
    );
    assert!(r4 <= 0.15, "int4 output is {:.2}% of f32", 100.0 * r4);
    // The outputs are plain safetensors files that the reference implementation reads.
    for f in ["q8.safetensors", "d4.safetensors"] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        safetensors::SafeTensors::deserialize(&bytes).unwrap();
    }
    // Every other option combination round-trips too.
    for (i, extra) in [
        &["--bits", "3", "--scheme", "affine"][..],
        &["--bits", "2", "--granularity", "tensor"],
        &[
            "--bits",
            "4",
            "--granularity",
            "channel",
            "--scale-dtype",
            "f16",
        ],
        &[
            "--bits",
            "8",
            "--group",
            "64",
            "--scheme",
            "affine",
            "--exclude",
            "*embed*",
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let (qo, bo) = (
            dir.join(&format!("x{i}.safetensors")),
            dir.join(&format!("y{i}.safetensors")),
        );
        let mut args = vec!["quantize", p(&input), p(&qo), "--json"];
        args.extend_from_slice(extra);
        nc_json(&args);
        nc_json(&["dequantize", p(&qo), p(&bo), "--json", "--dtype", "f32"]);
        let diff = nc_json(&["diff", p(&input), p(&bo), "--json"]);
        assert_eq!(diff["totals"]["only_a"], 0);
        assert_eq!(diff["totals"]["mismatched"], 0);
    }
    // MSE calibration clips outliers: never worse than min-max by more than noise.
    let sqnr = |extra: &[&str], out: &str| {
        let mut args = vec!["quantize", p(&input), out, "--json", "--bits", "4"];
        args.extend_from_slice(extra);
        nc_json(&args)["totals"]["mean_sqnr_db"].as_f64().unwrap()
    };
    let minmax = sqnr(&[], p(&dir.join("mm.safetensors")));
    let mse = sqnr(&["--calibrate", "mse"], p(&dir.join("mse.safetensors")));
    assert!(mse > minmax - 0.2, "mse {mse} dB vs min-max {minmax} dB");
    let leftovers: Vec<String> = dir
        .files()
        .into_iter()
        .filter(|f| f.contains(".tmp") || f.contains(".data-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn sharded_checkpoints_give_sharded_outputs() {
    let dir = TempDir::new("sharded");
    let index = write_sharded(&dir.0, "model", &model_specs(), 3, 7);
    let r8 = round_trip(
        &dir,
        &index,
        "q8.safetensors.index.json",
        "d8.safetensors.index.json",
        &["--bits", "8"],
    );
    assert!(r8 <= 0.27);
    let files = dir.files();
    for f in [
        "q8-00001-of-00003.safetensors",
        "q8-00003-of-00003.safetensors",
        "d8-00002-of-00003.safetensors",
    ] {
        assert!(files.contains(&f.to_string()), "{f} in {files:?}");
    }
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("d8.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(
        idx["weight_map"].as_object().unwrap().len(),
        model_specs().len()
    );
    assert!(idx["metadata"]["total_size"].as_u64().unwrap() > 0);
    // Sharded input needs an index output, and the reverse.
    let e = nc_err(&[
        "quantize",
        p(&index),
        p(&dir.join("x.safetensors")),
        "--bits",
        "8",
    ]);
    assert!(e.contains("index.json"), "{e}");
    let inspect = nc_json(&[
        "inspect",
        p(&dir.join("q8.safetensors.index.json")),
        "--json",
    ]);
    assert!(inspect["totals"]["tensors"].as_u64().unwrap() > model_specs().len() as u64);
    assert!(
        !inspect["compressed"].as_object().unwrap().is_empty(),
        "{inspect}"
    );
}

#[test]
fn never_overwrites_and_needs_force() {
    let dir = TempDir::new("force");
    let input = dir.join("m.safetensors");
    write_safetensors(&input, &[spec("w", "F32", &[8, 8])], 3);
    let out = dir.join("o.safetensors");
    nc_json(&["quantize", p(&input), p(&out), "--bits", "8", "--json"]);
    let e = nc_err(&["quantize", p(&input), p(&out), "--bits", "8"]);
    assert!(e.contains("--force"), "{e}");
    nc_json(&[
        "quantize",
        p(&input),
        p(&out),
        "--bits",
        "4",
        "--force",
        "--json",
    ]);
    let e = nc_err(&["quantize", p(&input), p(&input), "--bits", "8", "--force"]);
    assert!(e.contains("overwrite the input"), "{e}");
    let same = dir.0.join(".").join("m.safetensors");
    nc_err(&["dequantize", p(&input), p(&same), "--force"]);
    // A compressed file is not compressed again.
    let e = nc_err(&[
        "quantize",
        p(&out),
        p(&dir.join("z.safetensors")),
        "--bits",
        "8",
    ]);
    assert!(e.contains("dequantize"), "{e}");
    assert_eq!(dir.files(), vec!["m.safetensors", "o.safetensors"]);
}

#[test]
fn bad_inputs_and_options_fail_with_one_line_and_leave_nothing() {
    let dir = TempDir::new("errors");
    let good = dir.join("good.safetensors");
    write_safetensors(
        &good,
        &[spec("w", "F32", &[16, 8]), spec("b", "F32", &[16])],
        5,
    );
    let bytes = std::fs::read(&good).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let with_header = |h: &str| {
        let mut h = h.as_bytes().to_vec();
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut v = (h.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(&h);
        v.extend_from_slice(&bytes[8 + n..]);
        v
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() - 10].to_vec()),
        ("tiny", bytes[..5].to_vec()),
        (
            "not-safetensors",
            b"PK\x03\x04 this is a zip file, not safetensors at all".to_vec(),
        ),
        ("corrupt-header", {
            let mut v = bytes.clone();
            v[8 + 3] = b'}';
            v
        }),
        ("huge-header-len", {
            let mut v = bytes.clone();
            v[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            v
        }),
        (
            "lying-offsets",
            with_header(&header.replacen("[0,512]", "[0,500]", 1)),
        ),
        (
            "unknown-dtype",
            with_header(&header.replacen("\"F32\"", "\"Q4_K\"", 1)),
        ),
    ];
    assert!(header.contains("[0,512]"), "{header}");
    for (tag, data) in cases {
        let f = dir.join(&format!("{tag}.safetensors"));
        std::fs::write(&f, data).unwrap();
        for cmd in [
            vec![
                "quantize",
                p(&f),
                p(&dir.join("out.safetensors")),
                "--bits",
                "8",
            ],
            vec!["dequantize", p(&f), p(&dir.join("out.safetensors"))],
            vec!["inspect", p(&f)],
            vec!["diff", p(&good), p(&f)],
        ] {
            let e = nc_err(&cmd);
            assert!(e.contains(&format!("{tag}.safetensors")), "{tag}: {e}");
        }
        std::fs::remove_file(&f).unwrap();
    }
    let out = dir.join("out.safetensors");
    for bad in [
        &["--bits", "9"][..],
        &["--bits", "1"],
        &["--bits", "4", "--group-size", "0"],
        &[
            "--bits",
            "4",
            "--granularity",
            "tensor",
            "--group-size",
            "32",
        ],
        &["--bits", "8", "--axis", "5"],
        &["--bits", "8", "--include", "w[0"],
    ] {
        let mut args = vec!["quantize", p(&good), p(&out)];
        args.extend_from_slice(bad);
        nc_err(&args);
    }
    nc_err(&[
        "quantize",
        p(&dir.join("missing.safetensors")),
        p(&out),
        "--bits",
        "8",
    ]);
    nc_err(&[
        "quantize",
        p(&good),
        p(&dir.join("no/such/dir/o.safetensors")),
        "--bits",
        "8",
    ]);
    assert_eq!(dir.files(), vec!["good.safetensors"]);
}

#[test]
fn include_exclude_and_pass_through_rules() {
    let dir = TempDir::new("select");
    let input = dir.join("m.safetensors");
    write_safetensors(
        &input,
        &[
            spec("embed.weight", "BF16", &[64, 16]),
            spec("layer.weight", "F32", &[32, 16]),
            spec("layer.bias", "F32", &[32]),
            spec("ids", "I64", &[1, 8]),
        ],
        9,
    );
    let out = dir.join("o.safetensors");
    let q = nc_json(&[
        "quantize",
        p(&input),
        p(&out),
        "--bits",
        "8",
        "--exclude",
        "*embed*",
        "--json",
    ]);
    let actions: Vec<(String, String)> = q["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let action = |n: &str| actions.iter().find(|(a, _)| a == n).unwrap().1.clone();
    assert_eq!(action("embed.weight"), "pass (excluded)");
    assert_eq!(action("layer.bias"), "pass (1-D)");
    assert_eq!(action("ids"), "pass (non-float)");
    assert!(
        action("layer.weight").starts_with("int8-sym-channel"),
        "{actions:?}"
    );
    let out2 = dir.join("o2.safetensors");
    let q = nc_json(&[
        "quantize",
        p(&input),
        p(&out2),
        "--bits",
        "8",
        "--include",
        "embed.*",
        "--json",
    ]);
    assert_eq!(q["totals"]["transformed"], 1);
}

#[test]
fn prune_cluster_lowrank_round_trip_through_dequantize() {
    let dir = TempDir::new("others");
    let input = dir.join("model.safetensors");
    write_safetensors(&input, &model_specs(), 2);
    let cases: [(&str, &[&str], f64); 6] = [
        ("prune", &["--sparsity", "0.9", "--global"], 0.15),
        ("prune", &["--sparsity", "0.5", "--method", "nm"], 0.40),
        ("prune", &["--sparsity", "0.5", "--method", "rows"], 0.40),
        ("cluster", &["--bits", "4", "--huffman"], 0.15),
        ("cluster", &["--bits", "3", "--per-channel"], 0.20),
        ("lowrank", &["--rank", "8"], 0.15),
    ];
    for (i, (cmd, extra, max_ratio)) in cases.into_iter().enumerate() {
        let (out, back) = (
            dir.join(&format!("o{i}.safetensors")),
            dir.join(&format!("b{i}.safetensors")),
        );
        let mut args = vec![cmd, p(&input), p(&out), "--json"];
        args.extend_from_slice(extra);
        let s = nc_json(&args);
        let ratio = s["totals"]["ratio_f32"].as_f64().unwrap();
        assert!(ratio < max_ratio, "{cmd} {extra:?}: {ratio}");
        if cmd == "prune" {
            let sp = s["totals"]["sparsity"].as_f64().unwrap();
            let want: f64 = extra[1].parse().unwrap();
            assert!((sp - want).abs() < 0.02, "{cmd} {extra:?}: sparsity {sp}");
        }
        nc_json(&["dequantize", p(&out), p(&back), "--json"]);
        let d = nc_json(&["diff", p(&input), p(&back), "--json"]);
        assert_eq!(d["totals"]["only_a"], 0, "{d}");
        assert_eq!(d["totals"]["only_b"], 0, "{d}");
        assert_eq!(d["totals"]["mismatched"], 0, "{d}");
        // The summary's SQNR is the SQNR of what dequantize restores (up to the rounding to
        // the original 16-bit dtypes).
        let (a, b) = (
            s["totals"]["min_sqnr_db"].as_f64().unwrap(),
            d["totals"]["min_sqnr_db"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < 0.5,
            "{cmd} {extra:?}: summary {a} vs diff {b}"
        );
        if cmd == "prune" {
            let inspect = nc_json(&["inspect", p(&back), "--json"]);
            let w = inspect["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "model.layers.0.mlp.up_proj.weight")
                .unwrap()
                .clone();
            assert!(w["sparsity"].as_f64().unwrap() > 0.45, "{w}");
        }
    }
    let e = nc_err(&[
        "prune",
        p(&input),
        p(&dir.join("x.safetensors")),
        "--sparsity",
        "0.6",
        "--method",
        "nm",
    ]);
    assert!(e.contains("N:M"), "{e}");
    nc_err(&[
        "prune",
        p(&input),
        p(&dir.join("x.safetensors")),
        "--sparsity",
        "1.0",
    ]);
    nc_err(&[
        "prune",
        p(&input),
        p(&dir.join("x.safetensors")),
        "--sparsity",
        "0.5",
        "--method",
        "rows",
        "--global",
    ]);
    nc_err(&[
        "lowrank",
        p(&input),
        p(&dir.join("x.safetensors")),
        "--energy",
        "1.5",
    ]);
    nc_err(&[
        "cluster",
        p(&input),
        p(&dir.join("x.safetensors")),
        "--bits",
        "9",
    ]);
}
