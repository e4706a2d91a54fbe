//! Facade tests: every feature's module is reachable and the documented feature list matches
//! Cargo.toml; a user-defined model through the whole pipeline.

mod pipeline;

#[test]
fn every_cargo_feature_is_documented_in_lib_rs() {
    let manifest = include_str!("../Cargo.toml");
    let lib = include_str!("../src/lib.rs");
    let features = manifest
        .split("[features]")
        .nth(1)
        .expect("a [features] table")
        .split("\n[")
        .next()
        .expect("table body");
    for line in features.lines() {
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.starts_with('#') || name == "default" {
            continue;
        }
        assert!(
            lib.contains(&format!("- `{name}`")),
            "feature `{name}` is not documented in lib.rs"
        );
    }
}

#[test]
fn modules_are_mounted() {
    use netcompress::prelude::*;
    let (train, _) = netcompress::nn::data::digits::<f32>().unwrap();
    assert_eq!(train.sample_shape(), &[64]);
    let stats = ModelStats::default();
    assert_eq!(stats.sparsity(), 0.0);
}
