//! `netcompress experiment`: the registry and the `--json` contract.

use std::process::Command;

fn netcompress(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netcompress"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn list_names_every_experiment() {
    let out = netcompress(&["experiment", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("baseline")), "{text}");
}

#[test]
fn baseline_json_contract() {
    let out = netcompress(&["experiment", "baseline", "--json", "--fast", "--seed", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
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
    assert!(v["baseline"]["accuracy"].as_f64().unwrap() >= 0.96, "{last}");
    assert!(v["extra"].is_object());
}

#[test]
fn unknown_experiment_is_one_line_error() {
    let out = netcompress(&["experiment", "no-such-thing"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unknown experiment `no-such-thing`"), "{err}");
}
