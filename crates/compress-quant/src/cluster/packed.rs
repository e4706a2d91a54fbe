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
