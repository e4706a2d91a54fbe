//! Atomic, streaming safetensors writing.
//!
//! Tensor data is written to `OUT.tmp-<pid>` beside the output as it is produced (one tensor at
//! a time), after a space reserved for the header, while the header entries are kept in
//! memory. [`ShardWriter::assemble`] then writes the 8-byte header length and the header into
//! the reserved space, padded with spaces (which the safetensors format allows, and which keeps
//! the data 8-byte aligned). When the header does not fit, or would leave more than a little
//! padding, the header and data are instead copied into a fresh `OUT.tmp2-<pid>`. [`commit`]
//! renames every assembled file to its final name once *all* shards of a command are done.
//! Any temporary file left by an error (or a panic) is removed on drop, so a failed command
//! leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{CheckpointError, Result};

/// Bytes of the write buffers.
const BUF: usize = 1 << 20;

use crate::tempfiles::{self, remove_quietly, sibling};

/// One header entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Writes one safetensors file, tensor by tensor.
#[derive(Debug)]
pub struct ShardWriter {
    /// Bytes reserved for the header after the 8-byte length (a multiple of 8).
    reserve: u64,
    final_path: PathBuf,
    data_path: PathBuf,
    data: Option<BufWriter<File>>,
    entries: Vec<Entry>,
    names: std::collections::HashSet<String>,
    offset: u64,
    metadata: BTreeMap<String, String>,
    /// Bytes still owed to the entry opened by [`ShardWriter::begin`].
    owed: u64,
}

impl ShardWriter {
    /// Starts a file that will be renamed to `final_path` on [`commit`], reserving about
    /// `reserve` bytes for the header so that it can be written in place, without copying
    /// the data (0 is fine: the header and data are then copied into a new file).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] if the temporary file cannot be created.
    pub fn with_reserve(final_path: &Path, reserve: u64) -> Result<Self> {
        let reserve = reserve.next_multiple_of(8);
        tempfiles::sweep_stale(final_path);
        let data_path = sibling(final_path, "tmp");
        let mut file = tempfiles::create(
            &data_path,
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
        )?;
        file.seek(SeekFrom::Start(8 + reserve))
            .map_err(|e| CheckpointError::io(&data_path, e))?;
        Ok(Self {
            reserve,
            final_path: final_path.to_path_buf(),
            data_path,
            data: Some(BufWriter::with_capacity(BUF, file)),
            entries: Vec::new(),
            names: std::collections::HashSet::new(),
            offset: 0,
            metadata: BTreeMap::new(),
            owed: 0,
        })
    }

    /// Bytes of tensor data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.offset
    }

    /// Names written so far.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Sets one `__metadata__` entry.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    fn check_complete(&self) -> Result<()> {
        if self.owed != 0 {
            let name = self.entries.last().map_or("", |e| e.name.as_str());
            return Err(CheckpointError::format(
                &self.final_path,
                format!("tensor `{name}`"),
                format!("missing {} bytes", self.owed),
            ));
        }
        Ok(())
    }

    fn begin_entry(&mut self, name: &str, dtype: &str, shape: &[usize], len: u64) -> Result<()> {
        self.check_complete()?;
        let elem = dtype_size(dtype).ok_or_else(|| {
            CheckpointError::format(
                &self.final_path,
                format!("tensor `{name}`.dtype"),
                format!("cannot write dtype `{dtype}`"),
            )
        })?;
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if numel.and_then(|n| n.checked_mul(elem as u64)) != Some(len) {
            return Err(CheckpointError::format(
                &self.final_path,
                format!("tensor `{name}`.shape"),
                format!("{len} bytes do not match shape {shape:?} of {dtype}"),
            ));
        }
        if name == "__metadata__" || !self.names.insert(name.to_string()) {
            return Err(CheckpointError::format(
                &self.final_path,
                format!("tensor `{name}`"),
                format!(
                    "tensor name `{name}` is written twice (it collides with a generated name)"
                ),
            ));
        }
        self.entries.push(Entry {
            name: name.to_string(),
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
            begin: self.offset,
            end: self.offset + len,
        });
        self.offset += len;
        Ok(())
    }

    fn sink(&mut self) -> &mut BufWriter<File> {
        self.data
            .as_mut()
            .expect("data writer present until assemble")
    }

    /// Opens a tensor of `len` bytes whose data follows in [`ShardWriter::append`] calls
    /// (streamed encodings); it must be complete before the next tensor or `assemble`.
    ///
    /// # Errors
    ///
    /// As [`ShardWriter::add`].
    pub fn begin(&mut self, name: &str, dtype: &str, shape: &[usize], len: u64) -> Result<()> {
        self.begin_entry(name, dtype, shape, len)?;
        self.owed = len;
        Ok(())
    }

    /// Appends data to the tensor opened by [`ShardWriter::begin`].
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Format`] when more bytes are given than the tensor holds; I/O errors.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let n = bytes.len() as u64;
        if n > self.owed {
            let name = self.entries.last().map_or("", |e| e.name.as_str());
            return Err(CheckpointError::format(
                &self.final_path,
                format!("tensor `{name}`"),
                "streamed tensor data overflows its entry",
            ));
        }
        self.owed -= n;
        let path = self.data_path.clone();
        self.sink()
            .write_all(bytes)
            .map_err(|e| CheckpointError::io(&path, e))
    }

    /// Appends a tensor from bytes.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Format`] if `bytes` does not hold `shape` of `dtype` or the name is taken;
    /// [`CheckpointError::Io`] on write failure.
    pub fn add(&mut self, name: &str, dtype: &str, shape: &[usize], bytes: &[u8]) -> Result<()> {
        self.begin_entry(name, dtype, shape, bytes.len() as u64)?;
        let path = self.data_path.clone();
        self.sink()
            .write_all(bytes)
            .map_err(|e| CheckpointError::io(&path, e))
    }

    /// Appends a tensor of `len` bytes copied from `src` in chunks (pass-through tensors).
    ///
    /// # Errors
    ///
    /// As [`ShardWriter::add`]; also a short read from `src`.
    pub fn add_from(
        &mut self,
        name: &str,
        dtype: &str,
        shape: &[usize],
        len: u64,
        src: &mut dyn Read,
        src_path: &Path,
    ) -> Result<()> {
        self.begin_entry(name, dtype, shape, len)?;
        let path = self.data_path.clone();
        let copied = std::io::copy(&mut src.take(len), self.sink())
            .map_err(|e| CheckpointError::io(&path, e))?;
        if copied != len {
            return Err(CheckpointError::format(
                src_path,
                format!("tensor `{name}`"),
                "file ended early",
            ));
        }
        Ok(())
    }

    /// The header JSON (with `__metadata__`), padded with spaces to a multiple of 8 bytes.
    fn header(&self) -> Result<Vec<u8>> {
        let mut map = Map::new();
        if !self.metadata.is_empty() {
            map.insert("__metadata__".to_string(), json!(self.metadata));
        }
        for e in &self.entries {
            map.insert(
                e.name.clone(),
                json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [e.begin, e.end]}),
            );
        }
        let mut h = serde_json::to_vec(&Value::Object(map))?;
        while !(8 + h.len()).is_multiple_of(8) {
            h.push(b' ');
        }
        Ok(h)
    }

    /// Writes the header (in place when it fits the reserved space, else into a compacted
    /// copy); the result is renamed into place by [`commit`].
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] on any write failure (the temporary files are removed).
    pub fn assemble(mut self) -> Result<Pending> {
        self.check_complete()?;
        let mut header = self.header()?;
        let data_path = self.data_path.clone();
        let io_data = |e| CheckpointError::io(&data_path, e);
        let mut data = self
            .data
            .take()
            .ok_or_else(|| {
                CheckpointError::format(&self.final_path, "data", "the writer was assembled")
            })?
            .into_inner()
            .map_err(|e| io_data(e.into_error()))?;
        let slack = (header.len() as u64).abs_diff(self.reserve);
        if header.len() as u64 <= self.reserve && slack <= 4096.max(self.offset / 1000) {
            header.resize(self.reserve as usize, b' ');
            data.seek(SeekFrom::Start(0)).map_err(io_data)?;
            data.write_all(&(header.len() as u64).to_le_bytes())
                .map_err(io_data)?;
            data.write_all(&header).map_err(io_data)?;
            // The data file becomes the pending file: Drop must not remove it now.
            self.data_path = PathBuf::new();
            return Ok(Pending {
                tmp: data_path.clone(),
                target: self.final_path.clone(),
                bytes: 8 + header.len() as u64 + self.offset,
            });
        }
        let (pending, out) = Pending::create(
            &self.final_path,
            "tmp2",
            8 + header.len() as u64 + self.offset,
        )?;
        let io = |e| CheckpointError::io(&pending.tmp, e);
        let mut out = BufWriter::with_capacity(BUF, out);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let mut out = out.into_inner().map_err(|e| io(e.into_error()))?;
        data.seek(SeekFrom::Start(8 + self.reserve))
            .map_err(io_data)?;
        let copied = std::io::copy(&mut data, &mut out).map_err(io)?;
        if copied != self.offset {
            return Err(CheckpointError::format(
                &pending.tmp,
                "data",
                "temporary data file is short",
            ));
        }
        Ok(pending)
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        self.data = None;
        if !self.data_path.as_os_str().is_empty() {
            tempfiles::remove(&self.data_path);
        }
    }
}

/// A finished temporary file waiting to be renamed to its target.
#[derive(Debug)]
pub struct Pending {
    tmp: PathBuf,
    target: PathBuf,
    bytes: u64,
}

impl Pending {
    /// Writes `contents` to a temporary file for `target` (used for index JSON files).
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] on write failure.
    pub fn from_bytes(target: &Path, contents: &[u8]) -> Result<Self> {
        let (pending, mut f) = Self::create(target, "tmp", contents.len() as u64)?;
        f.write_all(contents)
            .map_err(|e| CheckpointError::io(&pending.tmp, e))?;
        Ok(pending)
    }

    /// A pending file of `bytes` bytes for `target`, created empty (and registered) at the
    /// sibling path with `suffix`.
    fn create(target: &Path, suffix: &str, bytes: u64) -> Result<(Self, std::fs::File)> {
        let pending = Self {
            tmp: sibling(target, suffix),
            target: target.to_path_buf(),
            bytes,
        };
        let f = tempfiles::create(
            &pending.tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
        )?;
        Ok((pending, f))
    }

    /// Size of the file in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        tempfiles::remove(&self.tmp);
    }
}

/// Renames every pending file into place. If one rename fails, the files already renamed by
/// this call are removed again, so the command leaves either all outputs or none. An output
/// path that exists and is not a regular file (a directory, FIFO, device or symlink) is never
/// replaced. The renames run under the temporary-file lock, so a SIGINT/SIGTERM handler calling
/// [`crate::interrupt_writes`] waits for them (the outputs are then complete) or prevents them.
///
/// # Errors
///
/// [`CheckpointError::Io`] naming the file that could not be renamed;
/// [`CheckpointError::Output`] for an output that is not a regular file;
/// [`CheckpointError::Interrupted`] after a signal.
pub fn commit(files: Vec<Pending>) -> Result<()> {
    tempfiles::while_locked(|live| {
        for p in &files {
            tempfiles::check_replaceable(&p.target)?;
        }
        let mut done: Vec<PathBuf> = Vec::new();
        for p in &files {
            if let Err(e) = std::fs::rename(&p.tmp, &p.target) {
                for d in &done {
                    remove_quietly(d);
                }
                return Err(CheckpointError::io(&p.target, e));
            }
            live.retain(|t| t != &p.tmp);
            done.push(p.target.clone());
        }
        Ok(())
    })?;
    drop(files);
    Ok(())
}

/// Element size of a dtype name the writer accepts.
pub(crate) fn dtype_size(dtype: &str) -> Option<usize> {
    crate::reader::Dtype::parse(dtype).map(crate::reader::Dtype::size)
}

/// Little-endian bytes of f32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Little-endian bytes of u32 values.
pub(crate) fn u32_bytes(values: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::SafetensorsFile;

    #[test]
    fn writes_a_valid_file_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("nc-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("a.safetensors");
        let mut w = ShardWriter::with_reserve(&out, 0).unwrap();
        w.add("x", "F32", &[2], &f32_bytes(&[1.0, 2.0])).unwrap();
        w.add("ids", "I64", &[1], &7i64.to_le_bytes()).unwrap();
        assert!(
            w.add("x", "F32", &[1], &f32_bytes(&[1.0])).is_err(),
            "duplicate name"
        );
        assert!(
            w.add("y", "F32", &[3], &f32_bytes(&[1.0])).is_err(),
            "short data"
        );
        w.set_metadata("k", "v");
        let p = w.assemble().unwrap();
        commit(vec![p]).unwrap();
        let mut f = SafetensorsFile::open(&out).unwrap();
        assert_eq!(f.metadata["k"], "v");
        let x = f.tensors.iter().find(|t| t.name == "x").unwrap().clone();
        assert_eq!(f.read_f32(&x).unwrap().unwrap(), vec![1.0, 2.0]);
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 2);
        // A dropped writer leaves nothing.
        let out2 = dir.join("b.safetensors");
        let mut w = ShardWriter::with_reserve(&out2, 64).unwrap();
        w.add("x", "F32", &[1], &f32_bytes(&[1.0])).unwrap();
        drop(w);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.safetensors")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
