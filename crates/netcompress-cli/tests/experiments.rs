//! `netcompress experiment`: the registry and the `--json` contract.

use crate::support::{TempDir, nc, nc_err, nc_json, p};

#[test]
fn list_names_every_experiment() {
    let out = nc(&["experiment", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("baseline")), "{text}");
}

#[test]
fn baseline_json_contract() {
    let v = nc_json(&["experiment", "baseline", "--json", "--fast", "--seed", "3"]);
    let last = v.to_string();
    assert_eq!(v["experiment"], "baseline");
    assert_eq!(v["data"], "digits");
    assert_eq!(v["seed"], 3);
    for side in ["baseline", "compressed"] {
        for key in ["accuracy", "params", "nonzero", "bytes", "macs"] {
            assert!(v[side][key].is_number(), "{side}.{key} in {last}");
        }
        let acc = v[side]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    assert!(
        v["baseline"]["accuracy"].as_f64().unwrap() >= 0.96,
        "{last}"
    );
    assert!(
        v["extra"]["cnn"]["accuracy"].as_f64().unwrap() >= 0.96,
        "{last}"
    );
    assert_eq!(
        v["baseline"]["params"],
        64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    );
    assert!(v["extra"].is_object());
}

#[test]
fn unknown_experiment_is_one_line_error() {
    let err = nc_err(&["experiment", "no-such-thing"]);
    assert!(err.contains("unknown experiment `no-such-thing`"), "{err}");
}

fn write_idx(dir: &std::path::Path, prefix: &str, n: usize, seed: u8) {
    let mut images = Vec::new();
    images.extend_from_slice(&2051u32.to_be_bytes());
    images.extend_from_slice(&(n as u32).to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    images.extend_from_slice(&28u32.to_be_bytes());
    let mut labels = Vec::new();
    labels.extend_from_slice(&2049u32.to_be_bytes());
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let label = (i % 10) as u8;
        // A bright bar whose row depends on the label: learnable, not noise.
        for r in 0..28u8 {
            for c in 0..28u8 {
                let on = r / 3 == label && c > 3 && c < 24;
                images.push(if on { 200 } else { (r ^ c ^ seed) % 7 });
            }
        }
        labels.push(label);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

#[test]
fn baseline_trains_lenet_300_100_on_mnist_idx_files() {
    let dir = TempDir::new("mnist");
    write_idx(&dir.0, "train", 60, 1);
    write_idx(&dir.0, "t10k", 20, 2);
    let v = nc_json(&[
        "experiment",
        "baseline",
        "--json",
        "--fast",
        "--data",
        p(&dir.0),
    ]);
    assert_eq!(v["data"], "mnist");
    let lenet = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10;
    assert_eq!(v["baseline"]["params"], lenet);
    assert_eq!(v["extra"]["test_samples"], 20);
    assert!(v["baseline"]["accuracy"].as_f64().unwrap() > 0.5, "{v}");
}

#[test]
fn fine_tuning_experiment_reports_its_control_seeds_and_met_targets() {
    let v = nc_json(&["experiment", "prune-nm", "--json", "--fast"]);
    // The control row has the contract's fields, and the f32 control keeps every weight.
    for key in ["accuracy", "params", "nonzero", "bytes", "macs"] {
        assert!(v["control"][key].is_number(), "control.{key} in {v}");
    }
    assert_eq!(v["control"]["bytes"], v["baseline"]["bytes"]);
    // Three seeds with --fast, and the report's accuracies are their means.
    let acc = &v["extra"]["accuracy"];
    for side in ["baseline", "control", "compressed"] {
        let per_seed: Vec<f64> = acc[side]["per_seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(per_seed.len(), 3, "{side}");
        let mean = per_seed.iter().sum::<f64>() / 3.0;
        assert!((v[side]["accuracy"].as_f64().unwrap() - mean).abs() < 1e-12);
    }
    // The verdict is against the better of baseline and control.
    let reference = if acc["control"]["mean"].as_f64() > acc["baseline"]["mean"].as_f64() {
        "control"
    } else {
        "baseline"
    };
    assert_eq!(v["extra"]["reference"], reference);
    let targets = v["extra"]["targets"].as_object().unwrap();
    assert!(!targets.is_empty());
    assert!(targets.values().all(|t| t == true), "{targets:?}");
}
