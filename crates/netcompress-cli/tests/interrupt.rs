//! Interrupted and killed runs leave no partial output and an untouched input; files written
//! by `QuantizedModel::save` are read by the commands; options that do nothing are refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compress_checkpoint::{QuantizedModelFile, SafetensorsFile};
use compress_quant::{IntScheme, PtqConfig, QuantScheme, quantize_model};
use rand::{SeedableRng, rngs::StdRng};

use crate::fixtures::{spec, write_safetensors};
use crate::support::{TempDir, command, nc, nc_err, nc_json};

/// Temporary files of our naming in `dir`.
fn temp_files(dir: &TempDir) -> Vec<String> {
    dir.files()
        .into_iter()
        .filter(|n| n.contains(".tmp-") || n.contains(".tmp2-"))
        .collect()
}

/// Starts `netcompress args` and waits until `leftovers` finds its temporary output.
#[cfg(unix)]
fn start_until(
    dir: &TempDir,
    args: &[&str],
    leftovers: fn(&TempDir) -> Vec<String>,
) -> std::process::Child {
    let child = command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while leftovers(dir).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no temporary output appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// Runs `args` three times, each stopped once its temporary output exists: by SIGTERM and
/// by SIGINT (the run fails, leaving no output and no temporary), then by SIGKILL (which
/// cannot be caught: exactly one temporary stays, for the next run to sweep).
#[cfg(unix)]
fn kill_each_way(
    dir: &TempDir,
    args: &[&str],
    output: &Path,
    leftovers: fn(&TempDir) -> Vec<String>,
) {
    for signal in ["TERM", "INT"] {
        let mut child = start_until(dir, args, leftovers);
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
        assert!(leftovers(dir).is_empty(), "SIG{signal}: {:?}", dir.files());
    }
    let mut child = start_until(dir, args, leftovers);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!output.exists());
    assert_eq!(leftovers(dir).len(), 1, "{:?}", dir.files());
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
    let args = [
        "quantize",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--bits",
        "4",
        "--granularity",
        "tensor",
        "--calibrate",
        "entropy",
    ];
    kill_each_way(&dir, &args, &output, temp_files);
    // The SIGKILLed run's temporary file is swept by the next run to that output.
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

/// Partial model directories of our naming (`.OUT.partial-PID`) in `dir`.
fn partial_dirs(dir: &TempDir) -> Vec<String> {
    dir.files()
        .into_iter()
        .filter(|n| n.starts_with(".q.partial-"))
        .collect()
}

#[cfg(unix)]
#[test]
fn killing_a_model_directory_quantize_leaves_no_partial_directory() {
    let dir = TempDir::new("interrupt-dir");
    // Enough calibration text to keep the run busy for a second or two.
    let words = [
        "the", "river", "economy", "grew", "in", "1990", "after", "a", "war",
    ];
    let text: String = (0..3000)
        .map(|i| {
            let line: Vec<&str> = (0..40).map(|j| words[(i * 7 + j * 3) % 9]).collect();
            line.join(" ") + "\n"
        })
        .collect();
    let calib = dir.join("calib.txt");
    std::fs::write(&calib, text).unwrap();
    let output = dir.join("q");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compress-transformer/tests/fixtures/tiny-bert");
    let (fx, out) = (fixture.to_str().unwrap(), output.to_str().unwrap());
    let args = |calib: &Path| {
        let c = calib.to_str().unwrap().to_string();
        [
            "quantize", fx, out, "--method", "gptq", "--bits", "4", "--calib",
        ]
        .map(String::from)
        .into_iter()
        .chain([c, "--json".into()])
        .collect::<Vec<String>>()
    };
    let slow = args(&calib);
    let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
    kill_each_way(&dir, &slow, &output, partial_dirs);
    // The SIGKILLed run's partial directory is swept by the next run to `q`.
    let small = dir.join("small.txt");
    std::fs::write(&small, "The cat sat.\nRain falls.\n").unwrap();
    let quick = args(&small);
    nc_json(&quick.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.is_dir());
    assert!(
        partial_dirs(&dir).is_empty(),
        "stale directory not swept: {:?}",
        dir.files()
    );
}
