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

/// Reads an IDX file with `dims` dimensions and the expected `magic` (gunzipping it when its
/// name ends in `.gz`): the dimensions, and the whole file (header included). The payload is
/// read only up to the size the header promises, so a decompression bomb (a small `.gz`
/// inflating far beyond its header) is refused without inflating it.
fn read_idx(path: &Path, magic: u32, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            file,
        )))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let gz_err = |e: std::io::Error| {
        if gz {
            format_err(path, format!("corrupt or truncated gzip data: {e}"))
        } else {
            io_err(path, e)
        }
    };
    let header_len = 4 + 4 * dims;
    let mut bytes = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut bytes)
        .map_err(gz_err)?;
    let payload = parse_header(path, &bytes, magic, dims, None)?;
    let promised: usize = payload.iter().product();
    // At most one byte more than promised is read: enough to tell that the data is longer.
    let mut data = Vec::new();
    // Reserved up to 1 MiB: a header promising more than the file holds never allocates
    // beyond what is actually read.
    data.try_reserve_exact(header_len + promised.min(1 << 20))
        .map_err(|_| {
            format_err(
                path,
                format!("dimensions: cannot allocate {promised} bytes"),
            )
        })?;
    data.extend_from_slice(&bytes);
    reader
        .take(promised as u64 + 1)
        .read_to_end(&mut data)
        .map_err(gz_err)?;
    parse_header(path, &data, magic, dims, Some(data.len() - header_len))?;
    Ok((payload, data))
}

/// Parses an IDX header with `dims` dimensions and the expected `magic`; returns the
/// dimensions after checking, when `payload` is given, that the data after the header has
/// exactly their product in bytes.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    dims: usize,
    payload: Option<usize>,
) -> Result<Vec<usize>> {
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
    let need = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("dimensions {shape:?} overflow")))?;
    if let Some(actual) = payload
        && actual != need
    {
        let has = if actual > need {
            format!("more than {need} (stopped reading there)")
        } else {
            actual.to_string()
        };
        return Err(format_err(
            path,
            format!("dimensions {shape:?} need {need} data bytes after the header, file has {has}"),
        ));
    }
    if shape[0] == 0 {
        return Err(format_err(
            path,
            "dimension 0 (the item count) is 0: no data",
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
/// for a wrong magic number, zero images or zero-sized image dimensions, a size that does
/// not match the header (a `.gz` is never inflated beyond it), or corrupt gzip data.
pub fn read_idx_images<F: Float>(path: &Path) -> Result<ArrayD<F>> {
    let (shape, bytes) = read_idx(path, IMAGES_MAGIC, 3)?;
    if shape[1] == 0 || shape[2] == 0 {
        return Err(format_err(
            path,
            format!(
                "empty image size {}x{} (dimensions 1 and 2)",
                shape[1], shape[2]
            ),
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
    let (_, bytes) = read_idx(path, LABELS_MAGIC, 1)?;
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

fn load_pair<F: Float>(
    dir: &Path,
    images: &str,
    labels: &str,
    size: Option<(usize, usize)>,
) -> Result<Dataset<F>> {
    let ip = locate(dir, images)?;
    let lp = locate(dir, labels)?;
    let x = read_idx_images::<F>(&ip)?;
    if let Some((rows, cols)) = size
        && (x.shape()[1], x.shape()[2]) != (rows, cols)
    {
        return Err(format_err(
            &ip,
            format!(
                "images are {}x{}, expected {rows}x{cols}",
                x.shape()[1],
                x.shape()[2]
            ),
        ));
    }
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
    let train = load_pair(dir, FILES[0], FILES[1], None)?;
    let test = load_pair(dir, FILES[2], FILES[3], None)?;
    Ok((train, test))
}

/// As [`load`], requiring images of `rows x cols` pixels (28 x 28 for MNIST).
///
/// # Errors
///
/// As [`load`], and [`NnError::Format`] naming the image file and both sizes when the
/// images are of another size.
pub fn load_sized<F: Float>(
    dir: &Path,
    rows: usize,
    cols: usize,
) -> Result<(Dataset<F>, Dataset<F>)> {
    let train = load_pair(dir, FILES[0], FILES[1], Some((rows, cols)))?;
    let test = load_pair(dir, FILES[2], FILES[3], Some((rows, cols)))?;
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
