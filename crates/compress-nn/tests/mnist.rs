//! The MNIST IDX loader on tiny files written by the test.

use std::path::Path;

use compress_nn::NnError;
use compress_nn::data::mnist::{self, FILES, read_idx_images, read_idx_labels};

use crate::io::temp_dir;

/// Writes a tiny MNIST set: `n_train` and `n_test` images of `rows x cols`.
fn write_set(dir: &Path, gz: bool, n_train: usize, n_test: usize, rows: usize, cols: usize) {
    let ext = if gz { ".gz" } else { "" };
    for (i, n) in [n_train, n_test].into_iter().enumerate() {
        let pixels: Vec<u8> = (0..n * rows * cols).map(|k| (k * 37 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|k| (k % 10) as u8).collect();
        mnist::write_idx_images(
            &dir.join(format!("{}{ext}", FILES[2 * i])),
            &pixels,
            n,
            rows,
            cols,
        )
        .unwrap();
        mnist::write_idx_labels(&dir.join(format!("{}{ext}", FILES[2 * i + 1])), &labels).unwrap();
    }
}

fn format_reason(e: NnError, file: &str) -> String {
    match e {
        NnError::Format { path, reason } => {
            assert!(path.contains(file), "{path} should name {file}");
            reason
        }
        e => panic!("expected a format error, got {e}"),
    }
}

#[test]
fn loads_plain_and_gzip_files() {
    for gz in [false, true] {
        let dir = temp_dir("mnist");
        write_set(&dir, gz, 12, 5, 4, 3);
        let (train, test) = mnist::load::<f32>(&dir).unwrap();
        assert_eq!((train.len(), test.len()), (12, 5));
        assert_eq!(train.sample_shape(), &[12]);
        assert_eq!(train.labels[..3], [0, 1, 2]);
        assert_eq!(train.x[[0, 1]], 37.0 / 255.0);
        assert!(train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let images = train.reshaped(&[1, 4, 3]).unwrap();
        assert_eq!(images.sample_shape(), &[1, 4, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn lenet_trains_on_tiny_mnist_files() {
    use compress_nn::{Sgd, TrainConfig, Trainer, models::lenet_300_100};
    use rand::{SeedableRng, rngs::StdRng};
    let dir = temp_dir("mnist-lenet");
    write_set(&dir, true, 64, 16, 28, 28);
    let (train, _) = mnist::load::<f32>(&dir).unwrap();
    let mut net = lenet_300_100::<f32, _>(&mut StdRng::seed_from_u64(0));
    let report = Trainer::new(TrainConfig {
        epochs: 2,
        batch_size: 32,
        ..TrainConfig::default()
    })
    .fit(&mut net, &mut Sgd::new(0.01), &train, None)
    .unwrap();
    assert_eq!(report.steps, 4);
    assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_bombs_and_wrong_sizes_are_named_errors() {
    use std::io::Write;
    let dir = temp_dir("mnist-more");
    // Zero images.
    let img = dir.join(FILES[0]);
    mnist::write_idx_images(&img, &[], 0, 28, 28).unwrap();
    let r = format_reason(read_idx_images::<f32>(&img).unwrap_err(), FILES[0]);
    assert!(r.contains("item count"), "{r}");
    // A small .gz inflating far beyond what its header promises (one 2x2 image): refused
    // after reading one byte past the promise.
    let gz = dir.join("bomb-idx3-ubyte.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut header = 2051u32.to_be_bytes().to_vec();
    for d in [1u32, 2, 2] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    enc.write_all(&header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let packed = enc.finish().unwrap();
    assert!(packed.len() < 1 << 20, "{} bytes", packed.len());
    std::fs::write(&gz, packed).unwrap();
    let r = format_reason(read_idx_images::<f32>(&gz).unwrap_err(), "bomb");
    assert!(r.contains("more than 4"), "{r}");
    // Images of the wrong size for a 28x28 model.
    write_set(&dir, false, 4, 2, 8, 8);
    let r = format_reason(
        mnist::load_sized::<f32>(&dir, 28, 28).unwrap_err(),
        FILES[0],
    );
    assert!(r.contains("8x8") && r.contains("28x28"), "{r}");
    write_set(&dir, false, 4, 2, 28, 28);
    assert!(mnist::load_sized::<f32>(&dir, 28, 28).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Corrupted or truncated IDX files (plain and gzip) never panic and every error names
    /// the file.
    #[test]
    fn corrupt_idx_files_never_panic(
        flips in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..6),
        cut in 0usize..64,
        gz in proptest::prelude::any::<bool>(),
    ) {
        let dir = temp_dir("mnist-fuzz");
        let plain = dir.join("x-idx3-ubyte");
        mnist::write_idx_images(&plain, &[7u8; 3 * 4 * 4], 3, 4, 4).unwrap();
        let mut bytes = std::fs::read(&plain).unwrap();
        for (i, b) in flips {
            let i = i % bytes.len();
            bytes[i] = b;
        }
        bytes.truncate(bytes.len() - cut.min(bytes.len()));
        let bytes = if gz {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes).unwrap();
            enc.finish().unwrap()
        } else {
            bytes
        };
        // The body of the `mnist_idx` fuzz target.
        let checked = compress_nn::data::fuzzing::idx_file(&dir, &bytes, gz);
        proptest::prop_assert_eq!(checked, Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bad_files_are_named_errors() {
    let dir = temp_dir("mnist-bad");
    write_set(&dir, false, 6, 2, 2, 2);
    let img = dir.join(FILES[0]);
    let good = std::fs::read(&img).unwrap();

    // Truncated data.
    std::fs::write(&img, &good[..good.len() - 1]).unwrap();
    let r = format_reason(read_idx_images::<f32>(&img).unwrap_err(), FILES[0]);
    assert!(r.contains("23"), "{r}");
    // Truncated header.
    std::fs::write(&img, &good[..10]).unwrap();
    let r = format_reason(mnist::load::<f32>(&dir).unwrap_err(), FILES[0]);
    assert!(r.contains("header"), "{r}");
    // Wrong magic (a label file where images are expected).
    let mut bad_magic = good.clone();
    bad_magic[..4].copy_from_slice(&2049u32.to_be_bytes());
    std::fs::write(&img, &bad_magic).unwrap();
    let r = format_reason(read_idx_images::<f32>(&img).unwrap_err(), FILES[0]);
    assert!(r.contains("2049") && r.contains("2051"), "{r}");
    // Trailing bytes.
    let mut long = good.clone();
    long.push(0);
    std::fs::write(&img, &long).unwrap();
    assert!(read_idx_images::<f32>(&img).is_err());
    // A count that does not match the labels.
    std::fs::write(&img, &good).unwrap();
    mnist::write_idx_labels(&dir.join(FILES[1]), &[1, 2, 3]).unwrap();
    let r = format_reason(mnist::load::<f32>(&dir).unwrap_err(), FILES[1]);
    assert!(r.contains("3 labels") && r.contains("6 images"), "{r}");
    // A label that is not a digit.
    mnist::write_idx_labels(&dir.join(FILES[1]), &[1, 2, 3, 4, 5, 10]).unwrap();
    let r = format_reason(read_idx_labels(&dir.join(FILES[1])).unwrap_err(), FILES[1]);
    assert!(r.contains("label 10"), "{r}");
    // Huge declared dimensions are rejected before allocating.
    let mut huge = 2051u32.to_be_bytes().to_vec();
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        huge.extend_from_slice(&d.to_be_bytes());
    }
    std::fs::write(&img, &huge).unwrap();
    assert!(read_idx_images::<f32>(&img).is_err());
    // Corrupt gzip.
    let gz = dir.join("broken-idx3-ubyte.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let r = format_reason(read_idx_images::<f32>(&gz).unwrap_err(), "broken");
    assert!(r.contains("gzip"), "{r}");
    // Missing file.
    std::fs::write(&img, &good).unwrap();
    mnist::write_idx_labels(&dir.join(FILES[1]), &[0; 6]).unwrap();
    std::fs::remove_file(dir.join(FILES[3])).unwrap();
    match mnist::load::<f32>(&dir).unwrap_err() {
        NnError::Io { path, source } => {
            assert!(path.contains(FILES[3]), "{path}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        e => panic!("{e}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
