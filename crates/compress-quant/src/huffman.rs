//! Canonical Huffman coding of small-alphabet symbols (cluster indices, CSR relative-index
//! gaps), with exact bit counts and the entropy lower bound.
//!
//! Codes are canonical (assigned in order of length, then symbol), so a code is fully
//! described by its code lengths: [`HuffmanCode::table_bytes`] counts one byte per alphabet
//! symbol for them. Bits are written most significant first; lengths are limited to
//! [`MAX_CODE_LEN`] bits (frequencies are halved and the tree rebuilt if needed).
//!
//! ```
//! use compress_quant::huffman::{HuffmanEncoded, entropy_bits, frequencies};
//! # fn main() -> Result<(), compress_quant::QuantError> {
//! let symbols = [0u32, 0, 0, 0, 1, 1, 2, 3];
//! let enc = HuffmanEncoded::encode(&symbols, 4)?;
//! assert_eq!(enc.bit_len(), 4 * 1 + 2 * 2 + 3 + 3); // lengths 1, 2, 3, 3
//! assert!(enc.bit_len() as f64 >= entropy_bits(&frequencies(&symbols, 4)?));
//! assert_eq!(enc.decode()?, symbols);
//! # Ok(()) }
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use compress_core::CoreError;

use crate::QuantError;

/// The longest code length produced.
pub const MAX_CODE_LEN: u8 = 24;

/// Symbol counts of `symbols` over an alphabet of `alphabet` symbols.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] (`symbols`) when a symbol is `>= alphabet`.
pub fn frequencies(symbols: &[u32], alphabet: usize) -> Result<Vec<u64>, QuantError> {
    let mut f = vec![0u64; alphabet];
    for (i, &s) in symbols.iter().enumerate() {
        match f.get_mut(s as usize) {
            Some(c) => *c += 1,
            None => return Err(out_of_alphabet(i, s, alphabet)),
        }
    }
    Ok(f)
}

fn out_of_alphabet(i: usize, s: u32, alphabet: usize) -> QuantError {
    CoreError::config(
        "symbols",
        format!("symbol {s} at position {i} is outside the alphabet 0..{alphabet}"),
    )
    .into()
}

/// Shannon's bound in bits: `sum_s f_s * log2(N / f_s)`, the least any symbol-by-symbol code
/// can spend on these counts (Huffman is within one bit per symbol of it).
pub fn entropy_bits(freqs: &[u64]) -> f64 {
    let n: u64 = freqs.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    freqs
        .iter()
        .filter(|&&f| f > 0)
        .map(|&f| f as f64 * (n / f as f64).log2())
        .sum()
}

/// A canonical Huffman code over symbols `0..alphabet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanCode {
    lengths: Vec<u8>,
    codes: Vec<u32>,
}

/// Huffman code lengths of `freqs` without a length limit (0 for unused symbols; a lone used
/// symbol gets length 1).
fn raw_lengths(freqs: &[u64]) -> Vec<u32> {
    let used: Vec<usize> = (0..freqs.len()).filter(|&s| freqs[s] > 0).collect();
    let mut lengths = vec![0u32; freqs.len()];
    if used.len() == 1 {
        lengths[used[0]] = 1;
        return lengths;
    }
    // Nodes: leaves first, then internal nodes; parent links give the depths.
    let mut parent: Vec<usize> = vec![usize::MAX; used.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = used
        .iter()
        .enumerate()
        .map(|(i, &s)| Reverse((freqs[s], i)))
        .collect();
    while heap.len() > 1 {
        let (Some(Reverse((fa, a))), Some(Reverse((fb, b)))) = (heap.pop(), heap.pop()) else {
            break;
        };
        let id = parent.len();
        parent.push(usize::MAX);
        parent[a] = id;
        parent[b] = id;
        heap.push(Reverse((fa + fb, id)));
    }
    // Internal nodes are created after their children, so depths resolve root-first.
    let mut depth = vec![0u32; parent.len()];
    for v in (0..parent.len()).rev() {
        if parent[v] != usize::MAX {
            depth[v] = depth[parent[v]] + 1;
        }
    }
    for (i, &s) in used.iter().enumerate() {
        lengths[s] = depth[i];
    }
    lengths
}

impl HuffmanCode {
    /// The optimal (length-limited) code for symbol counts `freqs`; symbols with count 0 get
    /// no code.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (`freqs`) when the alphabet has more than 2^20 symbols.
    pub fn from_frequencies(freqs: &[u64]) -> Result<Self, QuantError> {
        if freqs.len() > 1 << 20 {
            return Err(CoreError::config(
                "freqs",
                format!("alphabet of {} symbols exceeds 2^20", freqs.len()),
            )
            .into());
        }
        let mut f = freqs.to_vec();
        loop {
            let l = raw_lengths(&f);
            if l.iter().all(|&x| x <= u32::from(MAX_CODE_LEN)) {
                return Self::from_lengths(&l.iter().map(|&x| x as u8).collect::<Vec<_>>());
            }
            for x in f.iter_mut().filter(|x| **x > 0) {
                *x = (*x).div_ceil(2);
            }
        }
    }

    /// The canonical code with these code lengths (0 = symbol unused).
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] when a length exceeds [`MAX_CODE_LEN`] or the lengths violate
    /// Kraft's inequality (no prefix code has them).
    pub fn from_lengths(lengths: &[u8]) -> Result<Self, QuantError> {
        if let Some(&l) = lengths.iter().find(|&&l| l > MAX_CODE_LEN) {
            return Err(bad_stream(format!(
                "code length {l} exceeds {MAX_CODE_LEN}"
            )));
        }
        let kraft: u64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (MAX_CODE_LEN - l))
            .sum();
        if kraft > 1u64 << MAX_CODE_LEN {
            return Err(bad_stream("code lengths violate Kraft's inequality".into()));
        }
        let mut order: Vec<usize> = (0..lengths.len()).filter(|&s| lengths[s] > 0).collect();
        order.sort_by_key(|&s| (lengths[s], s));
        let mut codes = vec![0u32; lengths.len()];
        let (mut code, mut prev) = (0u32, 0u8);
        for &s in &order {
            code <<= lengths[s] - prev;
            prev = lengths[s];
            codes[s] = code;
            code += 1;
        }
        Ok(Self {
            lengths: lengths.to_vec(),
            codes,
        })
    }

    /// Alphabet size.
    pub fn alphabet(&self) -> usize {
        self.lengths.len()
    }

    /// Code length of every symbol (0 = no code).
    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// `(code, length)` of `symbol`, if it has a code.
    pub fn code(&self, symbol: u32) -> Option<(u32, u8)> {
        let s = symbol as usize;
        match self.lengths.get(s) {
            Some(&l) if l > 0 => Some((self.codes[s], l)),
            _ => None,
        }
    }

    /// Bytes to store the code: one length byte per alphabet symbol.
    pub fn table_bytes(&self) -> usize {
        self.lengths.len()
    }

    /// Exact bits to encode symbols with these counts, or `None` if a counted symbol has no code.
    pub fn encoded_bits(&self, freqs: &[u64]) -> Option<u64> {
        freqs.iter().enumerate().try_fold(0u64, |acc, (s, &f)| {
            if f == 0 {
                Some(acc)
            } else {
                let l = *self.lengths.get(s)?;
                (l > 0).then_some(acc + f * u64::from(l))
            }
        })
    }

    /// Encodes `symbols`, most significant bit first; the last byte is zero-padded.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (`symbols`) for a symbol outside the alphabet or without
    /// a code.
    pub fn encode(&self, symbols: &[u32]) -> Result<(Vec<u8>, u64), QuantError> {
        let mut out = Vec::with_capacity(symbols.len() / 2 + 8);
        let (mut acc, mut nbits, mut total) = (0u64, 0u32, 0u64);
        for (i, &s) in symbols.iter().enumerate() {
            let (code, len) = match self.lengths.get(s as usize) {
                Some(&l) if l > 0 => (self.codes[s as usize], u32::from(l)),
                _ => return Err(out_of_alphabet(i, s, self.alphabet())),
            };
            acc = (acc << len) | u64::from(code);
            nbits += len;
            total += u64::from(len);
            if nbits >= 32 {
                nbits -= 32;
                out.extend_from_slice(&((acc >> nbits) as u32).to_be_bytes());
            }
        }
        if nbits > 0 {
            let tail = ((acc << (32 - nbits)) as u32).to_be_bytes();
            out.extend_from_slice(&tail[..nbits.div_ceil(8) as usize]);
        }
        Ok((out, total))
    }

    /// Decodes `count` symbols from the first `bit_len` bits of `bytes`.
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] when the bits run out or hold no valid code.
    pub fn decode(&self, bytes: &[u8], bit_len: u64, count: usize) -> Result<Vec<u32>, QuantError> {
        let mut out = Vec::with_capacity(count);
        self.decode_each(bytes, bit_len, count, |s| out.push(s))?;
        Ok(out)
    }

    /// Decodes `count` symbols from the first `bit_len` bits of `bytes`, handing each to `sink`
    /// in order instead of collecting them (a large tensor's indices are never all in memory).
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] when the bits run out or hold no valid code (the symbols before
    /// the error have been handed over).
    pub fn decode_each(
        &self,
        bytes: &[u8],
        bit_len: u64,
        count: usize,
        mut sink: impl FnMut(u32),
    ) -> Result<(), QuantError> {
        if bit_len > bytes.len() as u64 * 8 {
            return Err(bad_stream(format!(
                "{bit_len} bits claimed but only {} bytes given",
                bytes.len()
            )));
        }
        // Canonical tables: per length, the first code, how many codes, and where their
        // symbols start in `sorted`.
        let max = usize::from(MAX_CODE_LEN);
        let mut count_of = vec![0u32; max + 1];
        for &l in &self.lengths {
            count_of[usize::from(l)] += 1;
        }
        count_of[0] = 0;
        let mut sorted: Vec<u32> = (0..self.lengths.len() as u32)
            .filter(|&s| self.lengths[s as usize] > 0)
            .collect();
        sorted.sort_by_key(|&s| (self.lengths[s as usize], s));
        let (mut first, mut offset) = (vec![0u32; max + 1], vec![0u32; max + 1]);
        let (mut code, mut off) = (0u32, 0u32);
        for l in 1..=max {
            code = (code + count_of[l - 1]) << 1;
            first[l] = code;
            offset[l] = off;
            off += count_of[l];
        }
        let mut pos = 0u64;
        for done in 0..count {
            let (mut c, mut len) = (0u32, 0usize);
            loop {
                if pos >= bit_len {
                    return Err(bad_stream(format!(
                        "bit stream ended after {done} of {count} symbols"
                    )));
                }
                let bit = (bytes[(pos / 8) as usize] >> (7 - pos % 8)) & 1;
                pos += 1;
                c = (c << 1) | u32::from(bit);
                len += 1;
                if len > max {
                    return Err(bad_stream(format!("no code matches at bit {pos}")));
                }
                let d = c.wrapping_sub(first[len]);
                if c >= first[len] && d < count_of[len] {
                    sink(sorted[(offset[len] + d) as usize]);
                    break;
                }
            }
        }
        Ok(())
    }
}

fn bad_stream(reason: String) -> QuantError {
    QuantError::Format {
        path: "<huffman bit stream>".into(),
        reason,
    }
}

/// Symbols Huffman-coded with their own canonical code: everything needed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanEncoded {
    code: HuffmanCode,
    bytes: Vec<u8>,
    bit_len: u64,
    symbols: usize,
}

impl HuffmanEncoded {
    /// Builds the optimal code for `symbols` (over `0..alphabet`) and encodes them.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (`symbols`) for a symbol `>= alphabet`.
    pub fn encode(symbols: &[u32], alphabet: usize) -> Result<Self, QuantError> {
        let code = HuffmanCode::from_frequencies(&frequencies(symbols, alphabet)?)?;
        let (bytes, bit_len) = code.encode(symbols)?;
        Ok(Self {
            code,
            bytes,
            bit_len,
            symbols: symbols.len(),
        })
    }

    /// The code used.
    pub fn code(&self) -> &HuffmanCode {
        &self.code
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Exact number of payload bits.
    pub fn bit_len(&self) -> u64 {
        self.bit_len
    }

    /// Number of symbols encoded.
    pub fn symbols(&self) -> usize {
        self.symbols
    }

    /// Payload bytes (`ceil(bits / 8)`) plus the code table.
    pub fn total_bytes(&self) -> usize {
        self.bytes.len() + self.code.table_bytes()
    }

    /// Decodes the symbols back.
    ///
    /// # Errors
    ///
    /// [`QuantError::Format`] only if the data were corrupted.
    pub fn decode(&self) -> Result<Vec<u32>, QuantError> {
        self.code.decode(&self.bytes, self.bit_len, self.symbols)
    }
}
