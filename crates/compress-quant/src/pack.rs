//! Bit packing of unsigned codes into bytes: 1 to 8 bits each ([`pack_bits`], `u8` codes)
//! and up to 32 bits each ([`pack_bits_u32`], `u32` codes, e.g. cluster indices).
//!
//! The layout is a little-endian bit stream: value `i` occupies bits
//! `i * bits .. (i + 1) * bits` of the stream, where bit `b` of the stream is bit `b % 8` of
//! byte `b / 8`. So 4-bit values go low nibble first, 2-bit values fill a byte from its low
//! bits, and 3-bit values may straddle two bytes. `n` values always take exactly
//! `ceil(n * bits / 8)` bytes ([`packed_len`]); unused high bits of the last byte are zero.
//!
//! Signed codes are stored as their two's-complement low `bits` bits
//! ([`sign_extend`] recovers them), so 8-bit signed codes are plain `i8` bytes.
//!
//! ```
//! use compress_quant::pack::{pack_bits, unpack_bits, packed_len};
//! let codes = [1u8, 2, 3, 0, 3];
//! let packed = pack_bits(&codes, 2);
//! assert_eq!(packed.len(), packed_len(5, 2));
//! assert_eq!(packed, vec![0b0011_1001, 0b0000_0011]);
//! assert_eq!(unpack_bits(&packed, 2, 5), codes);
//! ```

/// Bytes needed for `n` values of `bits` bits each: `ceil(n * bits / 8)`.
pub fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

#[track_caller]
fn check_bits(bits: u32) {
    assert!((1..=8).contains(&bits), "bits must be in 1..=8, got {bits}");
}

/// Packs `values` (each `< 2^bits`; higher bits are ignored) into a new buffer.
///
/// # Panics
///
/// If `bits` is not in `1..=8`.
#[track_caller]
pub fn pack_bits(values: &[u8], bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; packed_len(values.len(), bits)];
    pack_bits_into(values, bits, &mut out);
    out
}

/// Packs `values` into `out`, which must hold exactly [`packed_len`] bytes.
///
/// # Panics
///
/// If `bits` is not in `1..=8` or `out` has the wrong length.
#[track_caller]
pub fn pack_bits_into(values: &[u8], bits: u32, out: &mut [u8]) {
    check_bits(bits);
    assert_eq!(
        out.len(),
        packed_len(values.len(), bits),
        "output buffer length"
    );
    let mask = ((1u16 << bits) - 1) as u8;
    match bits {
        8 => out.copy_from_slice(values),
        4 | 2 | 1 => {
            let per = (8 / bits) as usize;
            for (o, chunk) in out.iter_mut().zip(values.chunks(per)) {
                let mut byte = 0u8;
                for (i, &v) in chunk.iter().enumerate() {
                    byte |= (v & mask) << (i as u32 * bits);
                }
                *o = byte;
            }
        }
        _ => write_stream(values.iter().map(|&v| u32::from(v & mask)), bits, out),
    }
}

/// Unpacks `n` values of `bits` bits from `packed`.
///
/// # Panics
///
/// If `bits` is not in `1..=8` or `packed` is shorter than [`packed_len`]`(n, bits)`.
#[track_caller]
pub fn unpack_bits(packed: &[u8], bits: u32, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    unpack_bits_into(packed, bits, &mut out);
    out
}

/// Unpacks `out.len()` values of `bits` bits from `packed` into `out`.
///
/// # Panics
///
/// If `bits` is not in `1..=8` or `packed` is too short.
#[track_caller]
pub fn unpack_bits_into(packed: &[u8], bits: u32, out: &mut [u8]) {
    check_bits(bits);
    assert!(
        packed.len() >= packed_len(out.len(), bits),
        "packed buffer too short: {} bytes for {} values of {bits} bits",
        packed.len(),
        out.len()
    );
    let mask = ((1u16 << bits) - 1) as u8;
    match bits {
        8 => out.copy_from_slice(&packed[..out.len()]),
        4 | 2 | 1 => {
            let per = (8 / bits) as usize;
            for (chunk, &byte) in out.chunks_mut(per).zip(packed) {
                for (i, o) in chunk.iter_mut().enumerate() {
                    *o = (byte >> (i as u32 * bits)) & mask;
                }
            }
        }
        _ => {
            let mut codes = read_stream(packed, bits);
            for o in out.iter_mut() {
                *o = codes.next_code() as u8;
            }
        }
    }
}

/// Packs `values` of up to 32 bits each (each `< 2^bits`; higher bits are ignored) into a
/// new buffer, in the same bit-stream layout as [`pack_bits`] (which it uses for `bits <= 8`).
///
/// ```
/// use compress_quant::pack::{pack_bits_u32, unpack_bits_u32};
/// let codes = [1000u32, 4095, 0, 7];
/// let packed = pack_bits_u32(&codes, 12);
/// assert_eq!(packed.len(), 6);
/// assert_eq!(unpack_bits_u32(&packed, 12, 4), codes);
/// ```
///
/// # Panics
///
/// If `bits` is not in `1..=32`.
#[track_caller]
pub fn pack_bits_u32(values: &[u32], bits: u32) -> Vec<u8> {
    assert!(
        (1..=32).contains(&bits),
        "bits must be in 1..=32, got {bits}"
    );
    if bits <= 8 {
        let small: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        return pack_bits(&small, bits);
    }
    let mut out = vec![0u8; packed_len(values.len(), bits)];
    let mask = low_mask(bits);
    write_stream(values.iter().map(|&v| v & mask), bits, &mut out);
    out
}

/// Unpacks `n` values of `bits` bits (up to 32) from `packed` (written by
/// [`pack_bits_u32`]).
///
/// # Panics
///
/// If `bits` is not in `1..=32` or `packed` is shorter than [`packed_len`]`(n, bits)`.
#[track_caller]
pub fn unpack_bits_u32(packed: &[u8], bits: u32, n: usize) -> Vec<u32> {
    assert!(
        (1..=32).contains(&bits),
        "bits must be in 1..=32, got {bits}"
    );
    if bits <= 8 {
        return unpack_bits(packed, bits, n)
            .into_iter()
            .map(u32::from)
            .collect();
    }
    assert!(
        packed.len() >= packed_len(n, bits),
        "packed buffer too short: {} bytes for {n} values of {bits} bits",
        packed.len(),
    );
    let mut codes = read_stream(packed, bits);
    (0..n).map(|_| codes.next_code()).collect()
}

/// `2^bits - 1` for `bits` in `1..=32`.
fn low_mask(bits: u32) -> u32 {
    (((1u64) << bits) - 1) as u32
}

/// Writes `codes` (already masked to `bits` bits, `bits <= 32`) as the little-endian bit
/// stream into `out` (exactly [`packed_len`] bytes).
fn write_stream(codes: impl Iterator<Item = u32>, bits: u32, out: &mut [u8]) {
    out.fill(0);
    let (mut acc, mut nbits, mut pos) = (0u64, 0u32, 0usize);
    for v in codes {
        acc |= u64::from(v) << nbits;
        nbits += bits;
        while nbits >= 8 {
            out[pos] = acc as u8;
            pos += 1;
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out[pos] = acc as u8;
    }
}

/// Reads codes of `bits` bits (`bits <= 32`) from a little-endian bit stream.
struct StreamReader<'a> {
    bytes: std::slice::Iter<'a, u8>,
    acc: u64,
    nbits: u32,
    bits: u32,
    mask: u64,
}

fn read_stream(packed: &[u8], bits: u32) -> StreamReader<'_> {
    StreamReader {
        bytes: packed.iter(),
        acc: 0,
        nbits: 0,
        bits,
        mask: u64::from(low_mask(bits)),
    }
}

impl StreamReader<'_> {
    /// The next code (zeros once the stream runs dry; callers check the length first).
    #[inline]
    fn next_code(&mut self) -> u32 {
        while self.nbits < self.bits {
            self.acc |= u64::from(*self.bytes.next().unwrap_or(&0)) << self.nbits;
            self.nbits += 8;
        }
        let v = (self.acc & self.mask) as u32;
        self.acc >>= self.bits;
        self.nbits -= self.bits;
        v
    }
}

/// Interprets the low `bits` bits of `code` as a two's-complement signed integer.
///
/// ```
/// use compress_quant::pack::sign_extend;
/// assert_eq!(sign_extend(0b1111, 4), -1);
/// assert_eq!(sign_extend(0b0111, 4), 7);
/// assert_eq!(sign_extend(0x80, 8), -128);
/// ```
#[inline]
pub fn sign_extend(code: u8, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((u32::from(code) << shift) as i32) >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(any::<u8>(), 0..200), bits in 1u32..=8) {
            let mask = ((1u16 << bits) - 1) as u8;
            let v: Vec<u8> = values.iter().map(|x| x & mask).collect();
            let p = pack_bits(&v, bits);
            prop_assert_eq!(p.len(), packed_len(v.len(), bits));
            prop_assert_eq!(unpack_bits(&p, bits, v.len()), v);
        }

        #[test]
        fn u32_round_trip_and_layout(values in prop::collection::vec(any::<u32>(), 0..100), bits in 1u32..=32) {
            let mask = ((1u64 << bits) - 1) as u32;
            let v: Vec<u32> = values.iter().map(|x| x & mask).collect();
            let p = pack_bits_u32(&v, bits);
            prop_assert_eq!(p.len(), packed_len(v.len(), bits));
            prop_assert_eq!(unpack_bits_u32(&p, bits, v.len()), v.clone());
            // The same stream as bit-by-bit packing (value i at bits i*bits.., LSB first).
            let mut expect = vec![0u8; p.len()];
            for (i, &x) in v.iter().enumerate() {
                for b in 0..bits as usize {
                    if (x >> b) & 1 == 1 {
                        let bit = i * bits as usize + b;
                        expect[bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            prop_assert_eq!(p, expect);
        }

        #[test]
        fn fast_paths_match_bitstream(values in prop::collection::vec(any::<u8>(), 0..64), bits in prop::sample::select(vec![1u32, 2, 4])) {
            // The byte-aligned fast paths must produce the generic little-endian bit stream.
            let mask = ((1u16 << bits) - 1) as u8;
            let mut expect = vec![0u8; packed_len(values.len(), bits)];
            for (i, &v) in values.iter().enumerate() {
                for b in 0..bits as usize {
                    if (v & mask) >> b & 1 == 1 {
                        let bit = i * bits as usize + b;
                        expect[bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            prop_assert_eq!(pack_bits(&values, bits), expect);
        }
    }

    #[test]
    fn three_bits_straddle() {
        let p = pack_bits(&[7, 0, 5], 3);
        assert_eq!(p, vec![0b0100_0111, 0b0000_0001]);
        assert_eq!(sign_extend(5, 3), -3);
    }
}
