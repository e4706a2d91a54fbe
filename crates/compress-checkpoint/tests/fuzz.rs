//! Bounded property-based fuzzing of the readers that take untrusted text: sharded indexes and
//! the compressed-tensor metadata, through the same checks as the cargo-fuzz targets
//! (`compress_checkpoint::fuzzing`; the safetensors header, the decoder and the IDX reader
//! have theirs in the modules and in compress-nn). Zero panics; every error names the file
//! and the field.

use compress_checkpoint::fuzzing;
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
        let v = if wrap {
            serde_json::json!({"weight_map": map, "metadata": top})
        } else {
            top
        };
        let dir = Dir::new("fuzz-index");
        let checked = fuzzing::shard_index(&dir.0, &serde_json::to_vec(&v).unwrap());
        prop_assert_eq!(checked, Ok(()));
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
        let dir = Dir::new("fuzz-meta");
        prop_assert_eq!(fuzzing::tensor_description(&dir.0, version, &text), Ok(()));
    }
}

/// Found by the `tensor_description` fuzz target: two stored rows describing a [1e8, 2] tensor
/// made `dequantize` allocate the whole 800 MB dense tensor. Row-pruned (and low-rank) tensors
/// are now decoded block by block.
#[test]
fn a_few_kept_rows_of_a_huge_shape_decode_in_blocks() {
    let dir = Dir::new("fuzz-rows-bomb");
    let text = r#"{"dtype":"F32","shape":[100000000,2],"encoding":"rows","rows":"w.__rows","values":"w.__kept"}"#;
    assert_eq!(fuzzing::tensor_description(&dir.0, "1", text), Ok(()));
}
