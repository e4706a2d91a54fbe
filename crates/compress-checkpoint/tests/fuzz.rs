//! Bounded property-based fuzzing of the readers that take untrusted text: sharded indexes and
//! the compressed-tensor metadata (the safetensors header, the decoder and the IDX reader have
//! their own in the modules and in compress-nn). Zero panics; every error names the file and
//! the field.

use std::collections::BTreeMap;

use compress_checkpoint::format::tensor_metas;
use compress_checkpoint::{
    CheckpointError, ShardWriter, commit, dequantize_file, f32_bytes, open_checkpoint,
};
use proptest::prelude::*;

use crate::model::Dir;

/// JSON values a lying index or description may hold.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        prop_oneof![Just(0u64), Just(1), Just(3), Just(u64::MAX), Just(1 << 40)]
            .prop_map(serde_json::Value::from),
        prop_oneof![
            Just("a.safetensors"),
            Just("b.safetensors"),
            Just("../a.safetensors"),
            Just("/etc/passwd"),
            Just(""),
            Just("x/y"),
            Just("int"),
            Just("w.__codes"),
            Just("F32"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("x"),
                    Just("y"),
                    Just("z"),
                    Just("weight_map"),
                    Just("shape")
                ]
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn lying_shard_indexes_never_panic(
        map in proptest::collection::btree_map(
            prop_oneof![Just("x"), Just("y"), Just("z")].prop_map(String::from),
            json_value(),
            0..4,
        ),
        top in json_value(),
        wrap in any::<bool>(),
    ) {
        let dir = Dir::new("fuzz-index");
        for (file, name) in [("a.safetensors", "x"), ("b.safetensors", "y")] {
            let mut w = ShardWriter::with_reserve(&dir.join(file), 0).unwrap();
            w.add(name, "F32", &[1], &f32_bytes(&[1.0])).unwrap();
            commit(vec![w.assemble().unwrap()]).unwrap();
        }
        let idx = dir.join("m.safetensors.index.json");
        let v = if wrap {
            serde_json::json!({"weight_map": map, "metadata": top})
        } else {
            top
        };
        std::fs::write(&idx, serde_json::to_vec(&v).unwrap()).unwrap();
        match open_checkpoint(&idx) {
            Ok(files) => {
                // Accepted: every tensor is listed once, in the shard the map names.
                let n: usize = files.iter().map(|f| f.tensors.len()).sum();
                let listed = v.get("weight_map").and_then(|m| m.as_object()).map_or(0, |m| m.len());
                prop_assert_eq!(n, listed);
            }
            Err(CheckpointError::Format { path, field, .. }) => {
                prop_assert!(path.contains("m.safetensors.index.json") || path.ends_with(".safetensors"));
                prop_assert!(!field.is_empty());
            }
            Err(CheckpointError::Io { path, .. }) => prop_assert!(!path.is_empty()),
            Err(e) => prop_assert!(false, "unexpected error kind: {}", e),
        }
    }

    #[test]
    fn lying_tensor_descriptions_never_panic(
        desc in json_value(),
        encoding in prop::sample::select(vec!["int", "cast", "cluster", "sparse", "rows", "lowrank", "other"]),
        shape in proptest::collection::vec(prop_oneof![0usize..4, Just(usize::MAX), Just(1 << 40)], 0..3),
        version in prop::sample::select(vec!["1", "2", ""]),
    ) {
        let mut d = match desc {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        d.insert("encoding".into(), encoding.into());
        d.insert("dtype".into(), "F32".into());
        d.insert("shape".into(), serde_json::json!(shape));
        let text = serde_json::to_string(&d).unwrap();
        let mut md = BTreeMap::new();
        md.insert("netcompress.format".to_string(), version.to_string());
        md.insert("netcompress.tensor.w".to_string(), text.clone());
        match tensor_metas(&md) {
            Ok(metas) => prop_assert!(version == "1" && metas.contains_key("w")),
            Err((field, reason)) => prop_assert!(field.starts_with("__metadata__.") && !reason.is_empty()),
        }
        // The same description in a real file: dequantize gives an error naming the file,
        // never a panic, and writes nothing.
        let dir = Dir::new("fuzz-meta");
        let p = dir.join("c.safetensors");
        let mut w = ShardWriter::with_reserve(&p, 0).unwrap();
        w.add("w.__codes", "U8", &[4], &[1, 2, 3, 4]).unwrap();
        w.add("w.__scales", "F32", &[1], &f32_bytes(&[0.5])).unwrap();
        w.set_metadata("netcompress.format", version);
        w.set_metadata("netcompress.tensor.w", text);
        commit(vec![w.assemble().unwrap()]).unwrap();
        let out = dir.join("d.safetensors");
        if let Err(e) = dequantize_file(&p, &out) {
            prop_assert!(e.to_string().contains("c.safetensors"), "{}", e);
            prop_assert!(!out.exists());
        }
    }
}
