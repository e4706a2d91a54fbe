//! The check behind the `mnist_idx` fuzz target (`fuzz/` in the repository, run with
//! cargo-fuzz) and the bounded property test that runs it in CI: arbitrary bytes as an IDX
//! image file and as a label file, plain or gzip.
//!
//! The contract checked: the readers return (never panic), every error names the file and
//! the field at fault, and accepted data matches the header. Allocation from a lying header
//! is checked by the fuzzer's `-malloc_limit_mb` / `-rss_limit_mb`.

use std::path::Path;

use super::mnist::{read_idx_images, read_idx_labels};
use crate::NnError;

/// Words naming the IDX fields an error can be about.
const FIELDS: [&str; 6] = [
    "header",
    "magic number",
    "dimension",
    "image size",
    "label",
    "gzip",
];

/// Checks that `e` names `path` and one of the [`FIELDS`] (or is an I/O error on `path`).
fn names_file_and_field(e: &NnError, path: &Path) -> Result<(), String> {
    let msg = e.to_string();
    let p = path.display().to_string();
    let ok = match e {
        NnError::Format { path: q, reason } => q == &p && FIELDS.iter().any(|f| reason.contains(f)),
        NnError::Io { path: q, .. } => q == &p,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "error does not name the file {p} and a field: {msg}"
        ))
    }
}

/// Writes `bytes` as `dir/f-idx3-ubyte` and `dir/l-idx1-ubyte` (with `.gz` appended when
/// `gz`, so the bytes are read as a gzip stream) and reads them as images and labels.
///
/// # Errors
///
/// The violated contract, as a description.
pub fn idx_file(dir: &Path, bytes: &[u8], gz: bool) -> Result<(), String> {
    let ext = if gz { ".gz" } else { "" };
    let images = dir.join(format!("f-idx3-ubyte{ext}"));
    let labels = dir.join(format!("l-idx1-ubyte{ext}"));
    for p in [&images, &labels] {
        std::fs::write(p, bytes).map_err(|e| format!("cannot write the input: {e}"))?;
    }
    match read_idx_images::<f32>(&images) {
        Ok(x) => {
            let numel: usize = x.shape().iter().product();
            if x.ndim() != 3 || numel == 0 || (!gz && numel + 16 != bytes.len()) {
                return Err(format!(
                    "accepted images of shape {:?} from {} bytes",
                    x.shape(),
                    bytes.len()
                ));
            }
        }
        Err(e) => names_file_and_field(&e, &images)?,
    }
    match read_idx_labels(&labels) {
        Ok(l) => {
            if l.is_empty() || l.iter().any(|&v| v > 9) || (!gz && l.len() + 8 != bytes.len()) {
                return Err(format!(
                    "accepted {} labels from {} bytes",
                    l.len(),
                    bytes.len()
                ));
            }
        }
        Err(e) => names_file_and_field(&e, &labels)?,
    }
    Ok(())
}
