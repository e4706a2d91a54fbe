//! Streaming safetensors reading: the header is parsed and checked in full, then tensors are
//! read one at a time, so memory stays near the size of the largest tensor.
//!
//! The header is validated strictly: its length must fit the file, every entry must have a
//! known dtype, a shape whose element count matches its byte range, and byte ranges that lie
//! inside the data section without overlapping. A header that lies about offsets, a truncated
//! file or a non-safetensors file is an error naming the file, never a panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{CheckpointError, Result};
use crate::header::parse_header;

/// Largest header accepted (100 MB, as the safetensors reference implementation).
const MAX_HEADER: u64 = 100_000_000;

/// Element types of safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 64-bit float.
    F64,
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Any other type, by name and element size in bytes (passed through untouched).
    Other(&'static str, usize),
}

impl Dtype {
    /// Parses a safetensors dtype name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "F64" => Self::F64,
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::Other("I64", 8),
            "U64" => Self::Other("U64", 8),
            "I32" => Self::Other("I32", 4),
            "U32" => Self::Other("U32", 4),
            "I16" => Self::Other("I16", 2),
            "U16" => Self::Other("U16", 2),
            "I8" => Self::Other("I8", 1),
            "U8" => Self::Other("U8", 1),
            "BOOL" => Self::Other("BOOL", 1),
            "F8_E4M3" => Self::Other("F8_E4M3", 1),
            "F8_E5M2" => Self::Other("F8_E5M2", 1),
            _ => return None,
        })
    }

    /// The dtype's name as written in headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::F64 => "F64",
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Other(n, _) => n,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 => 8,
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Other(_, s) => s,
        }
    }

    /// Whether the dtype is a float the tool can compress.
    pub fn is_float(self) -> bool {
        !matches!(self, Self::Other(..))
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte range within the data section.
    pub begin: u64,
    /// End of the byte range (exclusive).
    pub end: u64,
}

impl TensorInfo {
    /// Element count.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data.
    pub fn nbytes(&self) -> u64 {
        self.end - self.begin
    }
}

/// An open safetensors file with a validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    /// Tensors in data order.
    pub tensors: Vec<TensorInfo>,
    /// The `__metadata__` entries.
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Opens `path` and validates its header against the file size.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] if the file cannot be read; [`CheckpointError::Format`]
    /// naming the field for anything malformed (see the module docs).
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| CheckpointError::io(path, e))?
            .len();
        if len < 8 {
            return Err(CheckpointError::format(
                path,
                "header length",
                format!("not a safetensors file: {len} bytes, need at least 8"),
            ));
        }
        let mut n = [0u8; 8];
        file.read_exact(&mut n)
            .map_err(|e| CheckpointError::io(path, e))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n > len - 8 {
            return Err(CheckpointError::format(
                path,
                "header length",
                format!(
                    "header length {n} does not fit a {len}-byte file (not safetensors, or truncated)"
                ),
            ));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| CheckpointError::io(path, e))?;
        let data_len = len - 8 - n;
        let (tensors, metadata) = parse_header(&header, data_len)
            .map_err(|(field, reason)| CheckpointError::format(path, field, reason))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start: 8 + n,
            tensors,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads one tensor's raw bytes.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Format`] when `t` does not lie in this file's data section;
    /// [`CheckpointError::Io`] on a read failure.
    pub fn read_raw(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        self.check_range(t)?;
        let mut buf = vec![0u8; t.nbytes() as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + t.begin))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| CheckpointError::io(&self.path, e))?;
        Ok(buf)
    }

    /// Positions the file at the start of tensor `t`'s data and returns it, for chunked
    /// copies of pass-through tensors (memory stays at the copy buffer, not the tensor).
    ///
    /// # Errors
    ///
    /// As [`SafetensorsFile::read_raw`].
    pub fn seek_to(&mut self, t: &TensorInfo) -> Result<&mut File> {
        self.check_range(t)?;
        self.file
            .seek(SeekFrom::Start(self.data_start + t.begin))
            .map_err(|e| CheckpointError::io(&self.path, e))?;
        Ok(&mut self.file)
    }

    /// Refuses a tensor entry that is not inside this file's data section (an entry built by
    /// hand or taken from another file), so no read allocates more than the file holds.
    fn check_range(&self, t: &TensorInfo) -> Result<()> {
        if t.begin > t.end || t.end > self.data_bytes() {
            return Err(CheckpointError::format(
                &self.path,
                format!("tensor `{}`.data_offsets", t.name),
                format!(
                    "[{}, {}] is outside the {}-byte data section",
                    t.begin,
                    t.end,
                    self.data_bytes()
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of the data section (sum of every tensor's bytes).
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::nbytes).sum()
    }

    /// Size of the whole file: 8 + header + data.
    pub fn file_bytes(&self) -> u64 {
        self.data_start + self.data_bytes()
    }

    /// Reads elements `start .. start + count` of float tensor `t` converted to f32 into
    /// `out` (cleared first), through the caller's `scratch` byte buffer, so a large tensor
    /// can be processed in chunks with two small reused buffers.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] on a read failure; [`CheckpointError::Format`] for a range outside the
    /// tensor or a non-float dtype.
    pub fn read_f32_range(
        &mut self,
        t: &TensorInfo,
        start: usize,
        count: usize,
        scratch: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let size = t.dtype.size();
        if !t.dtype.is_float() || start.checked_add(count).is_none_or(|e| e > t.numel()) {
            return Err(CheckpointError::format(
                &self.path,
                format!("tensor `{}`", t.name),
                format!(
                    "tensor `{}`: cannot read elements {start}..+{count} as floats",
                    t.name
                ),
            ));
        }
        scratch.resize(count * size, 0);
        self.file
            .seek(SeekFrom::Start(
                self.data_start + t.begin + (start * size) as u64,
            ))
            .and_then(|_| self.file.read_exact(scratch))
            .map_err(|e| CheckpointError::io(&self.path, e))?;
        out.clear();
        bytes_to_f32_into(scratch, t.dtype, out);
        Ok(())
    }

    /// Reads a whole float tensor as f32 in 1 MiB chunks (peak memory: the f32 values, not
    /// the raw bytes as well).
    ///
    /// # Errors
    ///
    /// As [`SafetensorsFile::read_f32_range`].
    pub fn read_f32_lean(&mut self, t: &TensorInfo) -> Result<Vec<f32>> {
        let n = t.numel();
        let step = ((1 << 20) / t.dtype.size()).max(1);
        let mut values = Vec::with_capacity(n);
        let (mut scratch, mut chunk) = (Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let count = step.min(n - start);
            self.read_f32_range(t, start, count, &mut scratch, &mut chunk)?;
            values.extend_from_slice(&chunk);
            start += count;
        }
        Ok(values)
    }

    /// Reads one float tensor converted to f32 (`None` for non-float dtypes).
    ///
    /// # Errors
    ///
    /// As [`SafetensorsFile::read_raw`].
    pub fn read_f32(&mut self, t: &TensorInfo) -> Result<Option<Vec<f32>>> {
        if !t.dtype.is_float() {
            return Ok(None);
        }
        let raw = self.read_raw(t)?;
        Ok(Some(bytes_to_f32(&raw, t.dtype)))
    }
}

/// Appends little-endian float bytes of `dtype` converted to f32 to `out`.
pub fn bytes_to_f32_into(raw: &[u8], dtype: Dtype, out: &mut Vec<f32>) {
    out.reserve(raw.len() / dtype.size());
    match dtype {
        Dtype::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F64 => {
            out.extend(raw.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
        Dtype::F16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::Other(..) => {}
    }
}

/// Converts little-endian float bytes of `dtype` to f32.
pub fn bytes_to_f32(raw: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::Other(..) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the reader's contract on `bytes` (the body of the `safetensors` fuzz target),
    /// then returns whether the file opens and reads.
    fn open_and_read_all(bytes: &[u8], tag: &str) -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nc-fuzz-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let checked = crate::fuzzing::safetensors_file(&dir, bytes);
        let out = SafetensorsFile::open(&dir.join("fuzz.safetensors")).and_then(|mut f| {
            for t in f.tensors.clone() {
                f.read_raw(&t)?;
            }
            Ok(())
        });
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(checked, Ok(()));
        out
    }

    fn valid_file() -> Vec<u8> {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"I64","shape":[2],"data_offsets":[12,28]},"c":{"dtype":"BF16","shape":[4],"data_offsets":[28,36]}}"#;
        let mut v = (h.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(h.as_bytes());
        v.extend((0..36u8).map(|i| i.wrapping_mul(37)));
        v
    }

    #[test]
    fn the_valid_fixture_reads() {
        open_and_read_all(&valid_file(), "valid").unwrap();
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = open_and_read_all(&bytes, "random");
        }

        #[test]
        fn truncated_files_are_errors(cut in 0usize..300) {
            let v = valid_file();
            let cut = cut % v.len();
            prop_assert!(open_and_read_all(&v[..cut], "trunc").is_err());
        }

        #[test]
        fn corrupted_files_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let mut v = valid_file();
            for (i, b) in flips {
                let i = i.index(v.len());
                v[i] = b;
            }
            let _ = open_and_read_all(&v, "flip");
        }
    }
}
