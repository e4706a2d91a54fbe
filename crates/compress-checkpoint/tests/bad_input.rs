//! Bad input found by trying what a new user would: each case is a typed error naming the file
//! and the field, and leaves no output behind.

use std::path::Path;

use compress_checkpoint::encode::{QuantizeEncoder, SchemeArg};
use compress_checkpoint::{
    CheckpointError, LowrankOptions, QuantizeOptions, ShardWriter, WriteOptions, commit,
    dequantize_file, encode_checkpoint, f32_bytes, lowrank_file, open_checkpoint, quantize_file,
};

use crate::model::Dir;

fn write(path: &Path, tensors: &[(&str, &[usize], Vec<f32>)], meta: &[(&str, &str)]) {
    let mut w = ShardWriter::with_reserve(path, 0).unwrap();
    for (name, shape, v) in tensors {
        w.add(name, "F32", shape, &f32_bytes(v)).unwrap();
    }
    for (k, v) in meta {
        w.set_metadata(*k, *v);
    }
    commit(vec![w.assemble().unwrap()]).unwrap();
}

fn index(path: &Path, map: &[(&str, &str)]) {
    let m: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(t, f)| (t.to_string(), serde_json::Value::String(f.to_string())))
        .collect();
    let v = serde_json::json!({"metadata": {}, "weight_map": m});
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn format_field(e: &CheckpointError) -> (&str, &str) {
    match e {
        CheckpointError::Format { path, field, .. } => (path.as_str(), field.as_str()),
        other => panic!("not a format error: {other}"),
    }
}

#[test]
fn inconsistent_shard_indexes_are_rejected() {
    let dir = Dir::new("shards");
    write(
        &dir.join("a.safetensors"),
        &[("x", &[2], vec![1.0, 2.0])],
        &[],
    );
    write(
        &dir.join("b.safetensors"),
        &[("x", &[2], vec![3.0, 4.0]), ("y", &[1], vec![5.0])],
        &[],
    );
    let idx = dir.join("m.safetensors.index.json");
    // A tensor stored in two shards.
    index(&idx, &[("x", "a.safetensors"), ("y", "b.safetensors")]);
    let e = open_checkpoint(&idx).unwrap_err();
    let (path, field) = format_field(&e);
    assert!(
        path.ends_with("m.safetensors.index.json") && field == "tensor `x`",
        "{e}"
    );
    assert!(e.to_string().contains("two shards"), "{e}");
    // A weight_map naming a tensor its shard does not hold.
    write(&dir.join("b.safetensors"), &[("y", &[1], vec![5.0])], &[]);
    index(
        &idx,
        &[
            ("x", "a.safetensors"),
            ("y", "b.safetensors"),
            ("z", "b.safetensors"),
        ],
    );
    let e = open_checkpoint(&idx).unwrap_err();
    assert_eq!(format_field(&e).1, "weight_map.z", "{e}");
    // A tensor missing from the weight_map.
    write(
        &dir.join("b.safetensors"),
        &[("y", &[1], vec![5.0]), ("w", &[1], vec![6.0])],
        &[],
    );
    index(&idx, &[("x", "a.safetensors"), ("y", "b.safetensors")]);
    let e = open_checkpoint(&idx).unwrap_err();
    assert_eq!(format_field(&e).1, "tensor `w`", "{e}");
    assert!(e.to_string().contains("not listed"), "{e}");
    write(&dir.join("b.safetensors"), &[("y", &[1], vec![5.0])], &[]);
    // Consistent: opens.
    index(&idx, &[("x", "a.safetensors"), ("y", "b.safetensors")]);
    assert_eq!(open_checkpoint(&idx).unwrap().len(), 2);
}

#[cfg(unix)]
#[test]
fn shard_symlinks_leaving_the_directory_are_rejected() {
    let dir = Dir::new("symlink");
    let outside = Dir::new("symlink-outside");
    write(
        &outside.join("secret.safetensors"),
        &[("x", &[1], vec![1.0])],
        &[],
    );
    std::os::unix::fs::symlink(
        outside.join("secret.safetensors"),
        dir.join("s.safetensors"),
    )
    .unwrap();
    let idx = dir.join("m.safetensors.index.json");
    index(&idx, &[("x", "s.safetensors")]);
    let e = open_checkpoint(&idx).unwrap_err();
    assert!(
        e.to_string().contains("outside the checkpoint directory"),
        "{e}"
    );
    // A symlink to a file in the same directory is fine.
    write(
        &dir.join("real.safetensors"),
        &[("x", &[1], vec![1.0])],
        &[],
    );
    std::fs::remove_file(dir.join("s.safetensors")).unwrap();
    std::os::unix::fs::symlink("real.safetensors", dir.join("s.safetensors")).unwrap();
    assert!(open_checkpoint(&idx).is_ok());
}

#[test]
fn duplicate_tensor_names_are_named_clearly() {
    let dir = Dir::new("dup");
    let h = r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(&[0; 8]);
    let p = dir.join("dup.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let e = open_checkpoint(&p).unwrap_err();
    assert_eq!(format_field(&e).1, "tensor `x`");
    assert!(e.to_string().contains("appears twice"), "{e}");
}

#[test]
fn overflowing_encodings_are_refused_before_anything_is_written() {
    let dir = Dir::new("finite");
    let input = dir.join("big.safetensors");
    // Finite values whose range (max - min) overflows f32: an affine scale would be inf.
    let v: Vec<f32> = (0..64)
        .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX } * (1.0 - i as f32 * 1e-3))
        .collect();
    write(&input, &[("w", &[8, 8], v)], &[]);
    let opts = QuantizeOptions {
        scheme: SchemeArg::Affine,
        granularity: Some(compress_checkpoint::encode::GranularityArg::Tensor),
        ..QuantizeOptions::new(8)
    };
    let out = dir.join("q.safetensors");
    let e = quantize_file(&input, &out, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::Tensor { .. } | CheckpointError::Quant(_)
        ),
        "{e}"
    );
    assert!(!out.exists());
    // Low rank and calibrated (whole-tensor) quantization of the same file: either an error
    // and no output, or an output that dequantizes to finite values.
    let low = dir.join("l.safetensors");
    let lr = lowrank_file(
        &input,
        &low,
        &LowrankOptions {
            energy: None,
            rank: Some(1),
            exact: true,
        },
    );
    let mut enc = QuantizeEncoder::new(&QuantizeOptions {
        calibrate: compress_checkpoint::encode::CalibrateArg::Mse,
        ..opts
    })
    .unwrap();
    let mse = encode_checkpoint(
        "quantize",
        &input,
        &out,
        &WriteOptions::default(),
        &Default::default(),
        &mut enc,
        &mut compress_checkpoint::NoProgress,
    );
    for (r, path) in [(lr.map(|_| ()), &low), (mse.map(|_| ()), &out)] {
        match r {
            Ok(()) => dequantize_file(path, &dir.join("d.safetensors"))
                .and_then(|_| {
                    std::fs::remove_file(dir.join("d.safetensors"))
                        .map_err(|e| CheckpointError::io(path, e))
                })
                .unwrap(),
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        CheckpointError::Tensor { .. }
                            | CheckpointError::Arch(_)
                            | CheckpointError::Quant(_)
                    ),
                    "{e}"
                );
                assert!(!path.exists());
            }
        }
    }
    // Never a temporary file left.
    assert!(
        dir.names().iter().all(|n| !n.contains(".tmp")),
        "{:?}",
        dir.names()
    );
}

#[test]
fn a_nan_codebook_does_not_dequantize() {
    let dir = Dir::new("nan");
    let p = dir.join("c.safetensors");
    let meta = r#"{"dtype":"F32","shape":[2,2],"encoding":"cluster","bits":1,"clusters":2,"codebook":"w.__codebook","codes":"w.__codes"}"#;
    let mut w = ShardWriter::with_reserve(&p, 0).unwrap();
    w.add("w.__codebook", "F32", &[2], &f32_bytes(&[f32::NAN, 1.0]))
        .unwrap();
    w.add("w.__codes", "U8", &[1], &[0b0101]).unwrap();
    w.set_metadata("netcompress.format", "1");
    w.set_metadata("netcompress.tensor.w", meta);
    commit(vec![w.assemble().unwrap()]).unwrap();
    let out = dir.join("d.safetensors");
    let e = dequantize_file(&p, &out).unwrap_err();
    assert_eq!(format_field(&e).1, "tensor `w`", "{e}");
    assert!(e.to_string().contains("non-finite"), "{e}");
    assert!(!out.exists());
}

#[cfg(unix)]
#[test]
fn force_never_replaces_what_is_not_a_regular_file() {
    let dir = Dir::new("force");
    let input = dir.join("in.safetensors");
    write(&input, &[("w", &[4, 4], vec![0.5; 16])], &[]);
    let target = dir.join("target.txt");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.join("link.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let sub = dir.join("sub.safetensors");
    std::fs::create_dir(&sub).unwrap();
    let mut enc = QuantizeEncoder::new(&QuantizeOptions::new(8)).unwrap();
    let mut forced = |out: &std::path::Path| {
        encode_checkpoint(
            "quantize",
            &input,
            out,
            &WriteOptions {
                force: true,
                provenance: None,
            },
            &Default::default(),
            &mut enc,
            &mut compress_checkpoint::NoProgress,
        )
        .unwrap_err()
    };
    for out in [&link, &sub] {
        let e = forced(out);
        assert!(matches!(e, CheckpointError::Output { .. }), "{e}");
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    // A FIFO, when the system has mkfifo.
    let fifo = dir.join("fifo.safetensors");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let e = forced(&fifo);
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
