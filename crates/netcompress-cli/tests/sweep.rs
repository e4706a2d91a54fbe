//! `netcompress sweep`: points as JSON and an SVG plot.

use crate::support::{TempDir, nc_err, nc_json};

#[test]
fn prune_and_quant_sweeps_report_points_and_plot() {
    let dir = TempDir::new("sweep");
    for (kind, x) in [("prune", "sparsity"), ("quant", "bits")] {
        let svg = dir.join(&format!("{kind}.svg"));
        let r = nc_json(&[
            "sweep",
            kind,
            "--fast",
            "--json",
            "--plot",
            svg.to_str().unwrap(),
        ]);
        assert_eq!(r["sweep"], kind);
        assert_eq!(r["x"], x);
        let base = r["baseline_accuracy"].as_f64().unwrap();
        assert!(base > 0.9, "{r}");
        let points = r["points"].as_array().unwrap();
        assert!(points.len() >= 4, "{r}");
        for p in points {
            let a = p["accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a));
        }
        // The mildest setting keeps the baseline accuracy (within a few test samples).
        let first = points[0]["accuracy"].as_f64().unwrap();
        assert!((first - base).abs() < 0.02, "{r}");
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains(x),
            "{}",
            &text[..80.min(text.len())]
        );
    }
    nc_err(&[
        "sweep",
        "prune",
        "--data",
        dir.join("no-mnist-here").to_str().unwrap(),
    ]);
}
