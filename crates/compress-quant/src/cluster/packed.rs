//! Cluster indices packed at `bits` bits each (1..=16), in the little-endian bit-stream layout
//! of [`crate::pack`] (which does the work).

use compress_core::CoreError;

use crate::QuantError;
use crate::pack::{pack_bits_u32, unpack_bits_u32};

/// `len` unsigned indices of `bits` bits each, packed into exactly
/// `ceil(len * bits / 8)` bytes.
///
/// ```
/// use compress_quant::PackedIndices;
/// # fn main() -> Result<(), compress_quant::QuantError> {
/// let p = PackedIndices::pack(&[3, 15, 0, 9], 4)?;
/// assert_eq!(p.bytes(), 2);
/// assert_eq!(p.unpack(), vec![3, 15, 0, 9]);
/// assert_eq!(p.get(1), Some(15));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedIndices {
    bits: u32,
    len: usize,
    data: Vec<u8>,
}

impl PackedIndices {
    /// Packs `indices` at `bits` bits each.
    ///
    /// # Errors
    ///
    /// [`QuantError::UnsupportedBits`] unless `bits` is in `1..=16`, and
    /// [`CoreError::InvalidConfig`] (`indices`) when an index does not fit in `bits` bits.
    pub fn pack(indices: &[u32], bits: u32) -> Result<Self, QuantError> {
        if !(1..=16).contains(&bits) {
            return Err(QuantError::UnsupportedBits {
                bits,
                what: "PackedIndices",
                supported: "1..=16",
            });
        }
        if let Some((i, &v)) = indices.iter().enumerate().find(|(_, v)| **v >> bits != 0) {
            return Err(CoreError::config(
                "indices",
                format!("index {v} at position {i} does not fit in {bits} bits"),
            )
            .into());
        }
        Ok(Self {
            bits,
            len: indices.len(),
            data: pack_bits_u32(indices, bits),
        })
    }

    /// Bits per index.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no indices.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Exact storage in bytes: `ceil(len * bits / 8)`.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The packed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Index `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<u32> {
        if i >= self.len {
            return None;
        }
        let bit = i * self.bits as usize;
        let mut v = 0u32;
        let mut got = 0u32;
        while got < self.bits {
            let b = bit + got as usize;
            let take = (8 - (b % 8) as u32).min(self.bits - got);
            let byte = u32::from(self.data[b / 8] >> (b % 8)) & ((1 << take) - 1);
            v |= byte << got;
            got += take;
        }
        Some(v)
    }

    /// All indices.
    pub fn unpack(&self) -> Vec<u32> {
        unpack_bits_u32(&self.data, self.bits, self.len)
    }
}

/// Indices per packed chunk of [`IndexPacker`]: a multiple of 8, so every chunk fills whole
/// bytes and the chunks concatenate into one bit stream.
const CHUNK: usize = 4096;

/// Packs indices as they are produced, a chunk at a time, so a tensor's indices are never held
/// unpacked (as u32, four bytes each) in full.
#[derive(Debug)]
pub(crate) struct IndexPacker {
    bits: u32,
    len: usize,
    chunk: Vec<u32>,
    data: Vec<u8>,
    error: Option<QuantError>,
}

impl IndexPacker {
    /// A packer for about `capacity` indices of `bits` bits.
    pub(crate) fn new(bits: u32, capacity: usize) -> Self {
        Self {
            bits,
            len: 0,
            chunk: Vec::with_capacity(CHUNK),
            data: Vec::with_capacity(crate::pack::packed_len(capacity, bits.clamp(1, 32))),
            error: None,
        }
    }

    /// Appends one index.
    pub(crate) fn push(&mut self, index: u32) {
        self.chunk.push(index);
        if self.chunk.len() == CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.chunk.is_empty() && self.error.is_none() {
            match PackedIndices::pack(&self.chunk, self.bits) {
                Ok(p) => self.data.extend_from_slice(p.as_bytes()),
                Err(e) => self.error = Some(e),
            }
            self.len += self.chunk.len();
        }
        self.chunk.clear();
    }

    /// The packed indices.
    ///
    /// # Errors
    ///
    /// As [`PackedIndices::pack`]: bits outside `1..=16`, or an index that does not fit.
    pub(crate) fn finish(mut self) -> Result<PackedIndices, QuantError> {
        self.flush();
        match self.error {
            Some(e) => Err(e),
            None if self.len == 0 => PackedIndices::pack(&[], self.bits),
            None => Ok(PackedIndices {
                bits: self.bits,
                len: self.len,
                data: self.data,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packer_matches_one_pack_across_chunks() {
        for bits in [1u32, 3, 4, 5, 8, 11] {
            let n = 2 * CHUNK + 37;
            let idx: Vec<u32> = (0..n as u32)
                .map(|i| (i * 7 + i / 5) % (1 << bits))
                .collect();
            let mut p = IndexPacker::new(bits, n);
            idx.iter().for_each(|&i| p.push(i));
            let got = p.finish().expect("valid indices");
            assert_eq!(
                got,
                PackedIndices::pack(&idx, bits).expect("valid"),
                "bits {bits}"
            );
        }
    }

    #[test]
    fn packer_reports_an_index_too_wide() {
        let mut p = IndexPacker::new(2, 10);
        [1u32, 2, 4].iter().for_each(|&i| p.push(i));
        assert!(p.finish().is_err());
        assert!(IndexPacker::new(0, 0).finish().is_err());
    }
}
