//! Interrupted and killed runs leave no partial output and an untouched input; files written
//! by `QuantizedModel::save` are read by the commands; options that do nothing are refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compress_checkpoint::{QuantizedModelFile, SafetensorsFile};
use compress_quant::{IntScheme, PtqConfig, QuantScheme, quantize_model};
use rand::{SeedableRng, rngs::StdRng};

use crate::files::{TempDir, nc, nc_err, nc_json};
use crate::fixtures::{spec, write_safetensors};

/// Temporary files of our naming in `dir`.
fn temp_files(dir: &TempDir) -> Vec<String> {
    dir.files()
        .into_iter()
        .filter(|n| n.contains(".tmp-") || n.contains(".tmp2-"))
        .collect()
}

/// Starts a slow quantize of `input` into `output`, waits until it writes its temporary
/// file, and returns the child.
fn start_slow_quantize(dir: &TempDir, input: &Path, output: &Path) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_netcompress"))
        .args([
            "quantize",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            "--bits",
            "4",
            "--granularity",
            "tensor",
            "--calibrate",
            "entropy",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while temp_files(dir).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

#[cfg(unix)]
#[test]
fn killing_a_long_quantize_leaves_no_partial_output_and_the_input_untouched() {
    let dir = TempDir::new("interrupt");
    let input = dir.join("big.safetensors");
    let specs: Vec<_> = (0..12)
        .map(|i| spec(&format!("layer{i}.weight"), "F32", &[1024, 1024]))
        .collect();
    write_safetensors(&input, &specs, 3);
    let before = std::fs::read(&input).unwrap();
    let output = dir.join("q.safetensors");
    for signal in ["TERM", "INT"] {
        let mut child = start_slow_quantize(&dir, &input, &output);
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "SIG{signal}: the run must not report success"
        );
        assert!(!output.exists(), "SIG{signal}: partial output");
        assert!(
            temp_files(&dir).is_empty(),
            "SIG{signal}: {:?}",
            dir.files()
        );
    }
    // SIGKILL cannot be caught: its temporary file is swept by the next run to that output.
    let mut child = start_slow_quantize(&dir, &input, &output);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!output.exists());
    assert_eq!(temp_files(&dir).len(), 1, "{:?}", dir.files());
    let small = dir.join("small.safetensors");
    write_safetensors(&small, &[spec("w", "F32", &[8, 8])], 1);
    nc_json(&[
        "quantize",
        small.to_str().unwrap(),
        output.to_str().unwrap(),
        "--bits",
        "8",
        "--json",
    ]);
    assert!(
        temp_files(&dir).is_empty(),
        "stale file not swept: {:?}",
        dir.files()
    );
    assert_eq!(std::fs::read(&input).unwrap(), before, "the input changed");
}

#[test]
fn dequantize_diff_and_inspect_read_quantized_model_files() {
    let dir = TempDir::new("qmodel");
    let net = compress_nn::models::small_cnn::<f32, _>(1, 8, 10, &mut StdRng::seed_from_u64(5));
    for (i, scheme) in [
        QuantScheme::Int(IntScheme::new(4).per_group(16).affine().f16_scales()),
        QuantScheme::Int(IntScheme::int8_per_channel()),
        QuantScheme::Bf16,
    ]
    .into_iter()
    .enumerate()
    {
        let (q, _) = quantize_model(&net, &PtqConfig::new(scheme)).unwrap();
        let saved = dir.join(&format!("m{i}.safetensors"));
        q.save(&saved).unwrap();
        let dense = dir.join(&format!("d{i}.safetensors"));
        let s = nc_json(&[
            "dequantize",
            saved.to_str().unwrap(),
            dense.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(s["totals"]["transformed"], q.quantized.len(), "{s}");
        let mut f = SafetensorsFile::open(&dense).unwrap();
        for p in &q.quantized {
            let t = f.tensors.iter().find(|t| t.name == p.path).unwrap().clone();
            assert_eq!(t.shape, p.shape);
            let want: Vec<f32> = p.tensor.dequantize::<f32>().iter().copied().collect();
            assert_eq!(f.read_f32(&t).unwrap().unwrap(), want, "{}", p.path);
        }
        let d = nc_json(&[
            "diff",
            dense.to_str().unwrap(),
            saved.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(d["totals"]["differing"], 0, "{d}");
        let out = nc(&["inspect", saved.to_str().unwrap()]);
        assert!(out.status.success());
    }
}

#[test]
fn percentile_without_percentile_calibration_is_refused() {
    let dir = TempDir::new("percentile");
    let input = dir.join("in.safetensors");
    write_safetensors(&input, &[spec("w", "F32", &[8, 8])], 1);
    let out = dir.join("out.safetensors");
    let e = nc_err(&[
        "quantize",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--bits",
        "8",
        "--percentile",
        "99.9",
    ]);
    assert!(e.contains("--percentile") && e.contains("calibrate"), "{e}");
    assert!(!out.exists());
    nc_json(&[
        "quantize",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--bits",
        "8",
        "--calibrate",
        "percentile",
        "--percentile",
        "99.9",
        "--json",
    ]);
}
