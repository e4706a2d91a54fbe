//! MNIST in the IDX format (plain or gzip-compressed).
//!
//! An IDX file is a big-endian header (magic number, then one `u32` per dimension) followed
//! by the raw `u8` values. Images have magic 2051 and dimensions `[count, rows, cols]`;
//! labels have magic 2049 and dimension `[count]`. Every size is checked against the file
//! length before anything is allocated from it.

use std::io::Read;
use std::path::{Path, PathBuf};

use compress_core::{CoreError, Float};
use ndarray::{ArrayD, IxDyn};

use super::Dataset;
use crate::{NnError, Result};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 2049;

/// The four standard MNIST file names (each may also end in `.gz`).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn format_err(path: &Path, reason: impl Into<String>) -> NnError {
    NnError::Format {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> NnError {
    NnError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a whole file, gunzipping it when its name ends in `.gz`.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| io_err(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header with `dims` dimensions and the expected `magic`; returns the
/// dimensions after checking that the payload has exactly their product in bytes.
fn parse_header(path: &Path, bytes: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>> {
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(format_err(
            path,
            format!(
                "{} bytes is shorter than the {header}-byte IDX header",
                bytes.len()
            ),
        ));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let found = word(0);
    if found != magic {
        return Err(format_err(
            path,
            format!("magic number {found}, expected {magic}"),
        ));
    }
    let shape: Vec<usize> = (0..dims).map(|d| word(4 + 4 * d) as usize).collect();
    let payload = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {shape:?} overflow")))?;
    let actual = bytes.len() - header;
    if actual != payload {
        return Err(format_err(
            path,
            format!(
                "dimensions {shape:?} need {payload} data bytes after the header, file has {actual}"
            ),
        ));
    }
    Ok(shape)
}

/// Reads an IDX image file (magic 2051) as `[count, rows, cols]` with pixels scaled from
/// `0..=255` to `[0, 1]`.
///
/// # Errors
///
/// [`NnError::Io`] naming the file when it cannot be read, [`NnError::Format`] naming it
/// for a wrong magic number, zero-sized image dimensions, a size that does not match the
/// header, or corrupt gzip data.
pub fn read_idx_images<F: Float>(path: &Path) -> Result<ArrayD<F>> {
    let bytes = read_bytes(path)?;
    let shape = parse_header(path, &bytes, IMAGES_MAGIC, 3)?;
    if shape[1] == 0 || shape[2] == 0 {
        return Err(format_err(
            path,
            format!("empty image size {}x{}", shape[1], shape[2]),
        ));
    }
    let scale = 1.0 / 255.0;
    let lut: Vec<F> = (0..=255u8).map(|v| F::lit(f64::from(v) * scale)).collect();
    let x: Vec<F> = bytes[16..].iter().map(|&v| lut[v as usize]).collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), x).map_err(CoreError::from)?)
}

/// Reads an IDX label file (magic 2049); every label must be below 10.
///
/// # Errors
///
/// As [`read_idx_images`], and [`NnError::Format`] for a label above 9.
pub fn read_idx_labels(path: &Path) -> Result<Vec<usize>> {
    let bytes = read_bytes(path)?;
    parse_header(path, &bytes, LABELS_MAGIC, 1)?;
    let labels: Vec<usize> = bytes[8..].iter().map(|&v| usize::from(v)).collect();
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(format_err(
            path,
            format!("label {l} at index {i} is not a digit 0..9"),
        ));
    }
    Ok(labels)
}

/// `dir/name`, or `dir/name.gz` when only that exists.
fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(io_err(
        &plain,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {name} nor {name}.gz exists in {}", dir.display()),
        ),
    ))
}

fn load_pair<F: Float>(dir: &Path, images: &str, labels: &str) -> Result<Dataset<F>> {
    let ip = locate(dir, images)?;
    let lp = locate(dir, labels)?;
    let x = read_idx_images::<F>(&ip)?;
    let y = read_idx_labels(&lp)?;
    if x.shape()[0] != y.len() {
        return Err(format_err(
            &lp,
            format!(
                "{} labels but {} has {} images",
                y.len(),
                ip.display(),
                x.shape()[0]
            ),
        ));
    }
    let (n, d) = (x.shape()[0], x.shape()[1] * x.shape()[2]);
    let x = x
        .into_shape_with_order(IxDyn(&[n, d]))
        .map_err(CoreError::from)?;
    Dataset::new(x, y, 10)
}

/// Loads MNIST from `dir`: `(train, test)` with flat samples `[N, rows * cols]` and pixels
/// in `[0, 1]` (use [`Dataset::reshaped`]`(&[1, 28, 28])` for images). Each of the
/// four [`FILES`] may be plain or `.gz`.
///
/// # Errors
///
/// [`NnError::Io`] naming a missing or unreadable file, [`NnError::Format`] naming a
/// malformed one (see [`read_idx_images`]) or image and label counts that differ.
///
/// ```
/// # fn main() -> Result<(), compress_nn::NnError> {
/// use compress_nn::data::mnist;
/// let dir = std::env::temp_dir().join(format!("mnist-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// for (prefix, n) in [("train", 3), ("t10k", 2)] {
///     let pixels = vec![128u8; n * 2 * 2];
///     mnist::write_idx_images(&dir.join(format!("{prefix}-images-idx3-ubyte")), &pixels, n, 2, 2)?;
///     mnist::write_idx_labels(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &vec![7u8; n])?;
/// }
/// let (train, test) = mnist::load::<f32>(&dir)?;
/// assert_eq!((train.len(), test.len()), (3, 2));
/// assert_eq!(train.sample_shape(), &[4]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn load<F: Float>(dir: &Path) -> Result<(Dataset<F>, Dataset<F>)> {
    let train = load_pair(dir, FILES[0], FILES[1])?;
    let test = load_pair(dir, FILES[2], FILES[3])?;
    Ok((train, test))
}

/// Writes `bytes` to `path`, gzip-compressed when the name ends in `.gz`.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let data = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).map_err(|e| io_err(path, e))?;
        enc.finish().map_err(|e| io_err(path, e))?
    } else {
        bytes.to_vec()
    };
    std::fs::write(path, data).map_err(|e| io_err(path, e))
}

fn dim(path: &Path, name: &str, v: usize) -> Result<[u8; 4]> {
    u32::try_from(v)
        .map(u32::to_be_bytes)
        .map_err(|_| format_err(path, format!("{name} {v} does not fit in 32 bits")))
}

/// Writes an IDX image file (`count` images of `rows x cols` bytes); gzip when the name
/// ends in `.gz`. For tests and for exporting small data sets.
///
/// # Errors
///
/// [`NnError::Format`] when `pixels.len() != count * rows * cols` or a dimension exceeds
/// 32 bits, [`NnError::Io`] when the file cannot be written.
pub fn write_idx_images(
    path: &Path,
    pixels: &[u8],
    count: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    if Some(pixels.len()) != count.checked_mul(rows).and_then(|v| v.checked_mul(cols)) {
        return Err(format_err(
            path,
            format!(
                "{} pixels for {count} images of {rows}x{cols}",
                pixels.len()
            ),
        ));
    }
    let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
    for (name, v) in [("count", count), ("rows", rows), ("cols", cols)] {
        bytes.extend_from_slice(&dim(path, name, v)?);
    }
    bytes.extend_from_slice(pixels);
    write_bytes(path, &bytes)
}

/// Writes an IDX label file; gzip when the name ends in `.gz`.
///
/// # Errors
///
/// [`NnError::Io`] when the file cannot be written, [`NnError::Format`] for more than
/// `u32::MAX` labels.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
    bytes.extend_from_slice(&dim(path, "count", labels.len())?);
    bytes.extend_from_slice(labels);
    write_bytes(path, &bytes)
}
