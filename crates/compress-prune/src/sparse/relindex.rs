//! Deep Compression's relative-index encoding (Han et al. 2016, section 3): the non-zeros of
//! a flattened tensor are stored as `(gap, value)` pairs, where the gap (zeros skipped since
//! the previous entry) takes `index_bits` bits; a gap too large for that is bridged by
//! filler entries with value zero.

use compress_core::{CoreError, Float};

use crate::Result;

/// A relative-index encoded tensor. Entry `e` sits at flat position
/// `pos(e) = pos(e - 1) + 1 + gaps[e]` (with `pos(-1) = -1`); filler entries have value 0.
///
/// `gaps` and `values` are the streams a later stage (weight sharing, Huffman coding)
/// compresses further.
#[derive(Debug, Clone, PartialEq)]
pub struct RelativeIndex<F: Float> {
    /// Zeros skipped before each entry, each `< 2^index_bits`.
    pub gaps: Vec<u32>,
    /// The value of each entry (0 for fillers).
    pub values: Vec<F>,
    /// Bits per gap.
    pub index_bits: u32,
    /// Length of the dense (flattened) tensor.
    pub len: usize,
}

/// Encodes the non-zeros of `dense` with `index_bits`-bit gaps (Deep Compression uses 8 for
/// conv and 5 for fully connected layers).
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] unless `1 <= index_bits <= 31`.
///
/// ```
/// use compress_prune::relative_index_encode;
/// // With 3-bit gaps the largest gap is 7; 9 zeros need a filler entry.
/// let mut w = vec![0.0f32; 12];
/// w[1] = 1.5;
/// w[11] = -2.0;
/// let enc = relative_index_encode(&w, 3).unwrap();
/// assert_eq!(enc.gaps, vec![1, 7, 1]);
/// assert_eq!(enc.values, vec![1.5, 0.0, -2.0]);
/// assert_eq!(enc.fillers(), 1);
/// assert_eq!(enc.decode(), w);
/// // 3 entries x (3 + 32) bits = 105 bits -> 2 + 12 bytes
/// assert_eq!(enc.bytes(32), 2 + 12);
/// ```
pub fn relative_index_encode<F: Float>(dense: &[F], index_bits: u32) -> Result<RelativeIndex<F>> {
    if !(1..=31).contains(&index_bits) {
        return Err(
            CoreError::config("index_bits", format!("{index_bits} is not in 1..=31")).into(),
        );
    }
    let max_gap = (1usize << index_bits) - 1;
    let mut gaps = Vec::new();
    let mut values = Vec::new();
    let mut zeros = 0usize;
    for &v in dense {
        if v == F::zero() {
            zeros += 1;
            continue;
        }
        while zeros > max_gap {
            gaps.push(max_gap as u32);
            values.push(F::zero());
            zeros -= max_gap + 1;
        }
        gaps.push(zeros as u32);
        values.push(v);
        zeros = 0;
    }
    Ok(RelativeIndex {
        gaps,
        values,
        index_bits,
        len: dense.len(),
    })
}

impl<F: Float> RelativeIndex<F> {
    /// Entries stored (non-zeros plus fillers).
    pub fn entries(&self) -> usize {
        self.gaps.len()
    }

    /// Filler entries (value zero) inserted for long gaps.
    pub fn fillers(&self) -> usize {
        self.values.iter().filter(|&&v| v == F::zero()).count()
    }

    /// Bytes of the packed gap stream: `ceil(entries * index_bits / 8)`.
    pub fn index_bytes(&self) -> usize {
        (self.entries() * self.index_bits as usize).div_ceil(8)
    }

    /// Bytes of the gap stream plus the value stream at `value_bits` per entry (32 for raw
    /// f32, or the bits of a codebook index after weight sharing), each packed separately.
    pub fn bytes(&self, value_bits: u32) -> usize {
        self.index_bytes() + (self.entries() * value_bits as usize).div_ceil(8)
    }

    /// The gap stream packed LSB-first, `index_bits` per gap (`index_bytes()` long).
    pub fn pack_gaps(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.index_bytes()];
        let mut bit = 0usize;
        for &g in &self.gaps {
            for b in 0..self.index_bits as usize {
                if (g >> b) & 1 == 1 {
                    out[(bit + b) / 8] |= 1 << ((bit + b) % 8);
                }
            }
            bit += self.index_bits as usize;
        }
        out
    }

    /// Flat positions of the entries (fillers included), in order.
    pub fn positions(&self) -> Vec<usize> {
        let mut pos = Vec::with_capacity(self.gaps.len());
        let mut next = 0usize;
        for &g in &self.gaps {
            let p = next + g as usize;
            pos.push(p);
            next = p + 1;
        }
        pos
    }

    /// The dense tensor (flattened).
    pub fn decode(&self) -> Vec<F> {
        let mut out = vec![F::zero(); self.len];
        for (p, &v) in self.positions().into_iter().zip(&self.values) {
            if let Some(slot) = out.get_mut(p) {
                *slot = v;
            }
        }
        out
    }
}
