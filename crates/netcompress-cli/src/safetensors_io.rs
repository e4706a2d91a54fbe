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

use serde_json::Value;

use crate::error::{CliError, Result};

/// Largest header accepted (100 MB, as the safetensors reference implementation).
const MAX_HEADER: u64 = 100_000_000;

/// Element types of safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dtype {
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
    pub(crate) fn parse(name: &str) -> Option<Self> {
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::F64 => "F64",
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Other(n, _) => n,
        }
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 => 8,
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Other(_, s) => s,
        }
    }

    /// Whether the dtype is a float the tool can compress.
    pub(crate) fn is_float(self) -> bool {
        !matches!(self, Self::Other(..))
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorInfo {
    /// Name.
    pub(crate) name: String,
    /// Element type.
    pub(crate) dtype: Dtype,
    /// Shape.
    pub(crate) shape: Vec<usize>,
    /// Byte range within the data section.
    pub(crate) begin: u64,
    /// End of the byte range (exclusive).
    pub(crate) end: u64,
}

impl TensorInfo {
    /// Element count.
    pub(crate) fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data.
    pub(crate) fn nbytes(&self) -> u64 {
        self.end - self.begin
    }
}

/// An open safetensors file with a validated header.
#[derive(Debug)]
pub(crate) struct SafetensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    /// Tensors in data order.
    pub(crate) tensors: Vec<TensorInfo>,
    /// The `__metadata__` entries.
    pub(crate) metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Opens `path` and validates its header against the file size.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| CliError::io(path, e))?;
        let len = file.metadata().map_err(|e| CliError::io(path, e))?.len();
        if len < 8 {
            return Err(CliError::format(
                path,
                format!("not a safetensors file: {len} bytes, need at least 8"),
            ));
        }
        let mut n = [0u8; 8];
        file.read_exact(&mut n).map_err(|e| CliError::io(path, e))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || n > len - 8 {
            return Err(CliError::format(
                path,
                format!(
                    "header length {n} does not fit a {len}-byte file (not safetensors, or truncated)"
                ),
            ));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| CliError::io(path, e))?;
        let data_len = len - 8 - n;
        let (tensors, metadata) =
            parse_header(&header, data_len).map_err(|r| CliError::format(path, r))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start: 8 + n,
            tensors,
            metadata,
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads one tensor's raw bytes.
    pub(crate) fn read_raw(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; t.nbytes() as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + t.begin))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| CliError::io(&self.path, e))?;
        Ok(buf)
    }

    /// Positions the file at the start of tensor `t`'s data and returns it, for chunked
    /// copies of pass-through tensors (memory stays at the copy buffer, not the tensor).
    pub(crate) fn seek_to(&mut self, t: &TensorInfo) -> Result<&mut File> {
        self.file
            .seek(SeekFrom::Start(self.data_start + t.begin))
            .map_err(|e| CliError::io(&self.path, e))?;
        Ok(&mut self.file)
    }

    /// Bytes of the data section (sum of every tensor's bytes).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::nbytes).sum()
    }

    /// Size of the whole file: 8 + header + data.
    pub(crate) fn file_bytes(&self) -> u64 {
        self.data_start + self.data_bytes()
    }

    /// Reads elements `start .. start + count` of float tensor `t` converted to f32 into
    /// `out` (cleared first), through the caller's `scratch` byte buffer, so a large tensor
    /// can be processed in chunks with two small reused buffers.
    ///
    /// # Errors
    ///
    /// [`CliError::Io`] on a read failure; [`CliError::Format`] for a range outside the
    /// tensor or a non-float dtype.
    pub(crate) fn read_f32_range(
        &mut self,
        t: &TensorInfo,
        start: usize,
        count: usize,
        scratch: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let size = t.dtype.size();
        if !t.dtype.is_float() || start.checked_add(count).is_none_or(|e| e > t.numel()) {
            return Err(CliError::format(
                &self.path,
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
            .map_err(|e| CliError::io(&self.path, e))?;
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
    pub(crate) fn read_f32_lean(&mut self, t: &TensorInfo) -> Result<Vec<f32>> {
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
    pub(crate) fn read_f32(&mut self, t: &TensorInfo) -> Result<Option<Vec<f32>>> {
        if !t.dtype.is_float() {
            return Ok(None);
        }
        let raw = self.read_raw(t)?;
        Ok(Some(bytes_to_f32(&raw, t.dtype)))
    }
}

/// Appends little-endian float bytes of `dtype` converted to f32 to `out`.
pub(crate) fn bytes_to_f32_into(raw: &[u8], dtype: Dtype, out: &mut Vec<f32>) {
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
pub(crate) fn bytes_to_f32(raw: &[u8], dtype: Dtype) -> Vec<f32> {
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

/// Parses and validates a header for a data section of `data_len` bytes.
fn parse_header(
    header: &[u8],
    data_len: u64,
) -> std::result::Result<(Vec<TensorInfo>, BTreeMap<String, String>), String> {
    let text = std::str::from_utf8(header).map_err(|e| format!("header is not UTF-8: {e}"))?;
    let value: Value = serde_json::from_str(text.trim_end_matches(' '))
        .map_err(|e| format!("header is not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("header is not a JSON object".to_string());
    };
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, entry) in map {
        if name == "__metadata__" {
            let Value::Object(m) = entry else {
                return Err("__metadata__ is not an object".to_string());
            };
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(format!("__metadata__ value for `{k}` is not a string"));
                };
                metadata.insert(k, s);
            }
            continue;
        }
        tensors.push(parse_entry(&name, &entry)?);
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut cursor = 0u64;
    for t in &tensors {
        if t.begin != cursor {
            return Err(format!(
                "tensor `{}` starts at byte {} but the previous one ends at {cursor} (gap or overlap)",
                t.name, t.begin
            ));
        }
        cursor = t.end;
    }
    if cursor != data_len {
        return Err(format!(
            "tensors cover {cursor} bytes but the data section has {data_len} (truncated or padded file)"
        ));
    }
    Ok((tensors, metadata))
}

fn parse_entry(name: &str, entry: &Value) -> std::result::Result<TensorInfo, String> {
    let dtype_name = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("tensor `{name}` has no dtype"))?;
    let dtype = Dtype::parse(dtype_name)
        .ok_or_else(|| format!("tensor `{name}` has unknown dtype `{dtype_name}`"))?;
    let shape: Vec<usize> = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("tensor `{name}` has no shape"))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("tensor `{name}` has a bad shape"))?;
    let offs = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
        .ok_or_else(|| format!("tensor `{name}` has bad data_offsets"))?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}` shape {shape:?} overflows"))?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| format!("tensor `{name}` byte size overflows"))? as u64;
    if offs.1 < offs.0 || offs.1 - offs.0 != nbytes {
        return Err(format!(
            "tensor `{name}`: offsets {:?} hold {} bytes but shape {shape:?} of {} needs {nbytes}",
            offs,
            offs.1.saturating_sub(offs.0),
            dtype.name()
        ));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        begin: offs.0,
        end: offs.1,
    })
}

/// The shard files of a checkpoint: the file itself, or for a `*.index.json` every file its
/// `weight_map` names (in order of first appearance), resolved beside the index.
pub(crate) fn shard_paths(path: &Path) -> Result<Vec<PathBuf>> {
    let is_index = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".index.json"));
    if !is_index {
        return Ok(vec![path.to_path_buf()]);
    }
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::format(path, format!("index is not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| CliError::format(path, "index has no `weight_map` object"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            CliError::format(
                path,
                format!("weight_map entry `{tensor}` is not a file name"),
            )
        })?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(CliError::format(
                path,
                format!("shard name `{file}` must be a plain file name"),
            ));
        }
        let p = dir.join(file);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Vec<u8> {
        json.as_bytes().to_vec()
    }

    #[test]
    fn accepts_a_consistent_header() {
        let h = header(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#,
        );
        let (t, m) = parse_header(&h, 8).unwrap();
        assert_eq!(t[0].numel(), 2);
        assert_eq!(m["k"], "v");
    }

    #[test]
    fn rejects_lying_offsets_and_sizes() {
        let bad = [
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            r#"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            r#"[1,2]"#,
            r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#,
        ];
        for b in bad {
            assert!(parse_header(&header(b), 8).is_err(), "{b}");
        }
        let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert!(
            parse_header(&header(ok), 12).is_err(),
            "data section larger than tensors"
        );
    }

    /// Opens `bytes` as a file and reads every tensor; must never panic.
    fn open_and_read_all(bytes: &[u8], tag: &str) -> Result<()> {
        let path =
            std::env::temp_dir().join(format!("nc-fuzz-{}-{tag}.safetensors", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let out = SafetensorsFile::open(&path).and_then(|mut f| {
            for t in f.tensors.clone() {
                f.read_raw(&t)?;
                f.read_f32(&t)?;
            }
            Ok(())
        });
        std::fs::remove_file(&path).unwrap();
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

        #[test]
        fn random_headers_never_panic(
            dtype in prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "Q4", ""]),
            shape in proptest::collection::vec(prop_oneof![0u64..5, Just(u64::MAX), Just(1u64 << 62)], 0..4),
            begin in prop_oneof![0u64..40, Just(u64::MAX)],
            len in prop_oneof![0u64..40, Just(u64::MAX)],
            data_len in 0u64..64,
        ) {
            let end = begin.wrapping_add(len);
            let h = format!(
                r#"{{"t":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}}}"#
            );
            if let Ok((ts, _)) = parse_header(h.as_bytes(), data_len) {
                for t in ts {
                    prop_assert!(t.end <= data_len);
                    prop_assert_eq!(t.nbytes() as usize, t.numel() * t.dtype.size());
                }
            }
        }
    }
}
