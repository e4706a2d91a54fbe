//! Bit packing of small unsigned codes (1 to 8 bits each) into bytes.
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
        _ => {
            out.fill(0);
            let mut acc: u32 = 0;
            let mut nbits = 0u32;
            let mut pos = 0usize;
            for &v in values {
                acc |= u32::from(v & mask) << nbits;
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
            let mut acc: u32 = 0;
            let mut nbits = 0u32;
            let mut bytes = packed.iter();
            for o in out.iter_mut() {
                while nbits < bits {
                    // Length checked above, so the stream never runs dry here.
                    acc |= u32::from(*bytes.next().unwrap_or(&0)) << nbits;
                    nbits += 8;
                }
                *o = (acc as u8) & mask;
                acc >>= bits;
                nbits -= bits;
            }
        }
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
