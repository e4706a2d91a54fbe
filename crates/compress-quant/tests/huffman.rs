//! Canonical Huffman coding: round trips, exact bit counts, the entropy bound.

use compress_quant::huffman::{
    HuffmanCode, HuffmanEncoded, MAX_CODE_LEN, entropy_bits, frequencies,
};
use proptest::prelude::*;

#[test]
fn known_code_lengths_and_canonical_codes() {
    let code = HuffmanCode::from_frequencies(&[45, 13, 12, 16, 9, 5]).unwrap();
    assert_eq!(code.lengths(), &[1, 3, 3, 3, 4, 4]);
    assert_eq!(code.code(0), Some((0b0, 1)));
    assert_eq!(code.code(1), Some((0b100, 3)));
    assert_eq!(code.code(5), Some((0b1111, 4)));
    assert_eq!(code.encoded_bits(&[45, 13, 12, 16, 9, 5]), Some(224));
}

#[test]
fn degenerate_alphabets() {
    let enc = HuffmanEncoded::encode(&[3, 3, 3], 5).unwrap();
    assert_eq!(enc.bit_len(), 3);
    assert_eq!(enc.decode().unwrap(), vec![3, 3, 3]);
    let empty = HuffmanEncoded::encode(&[], 4).unwrap();
    assert_eq!(empty.bit_len(), 0);
    assert!(empty.decode().unwrap().is_empty());
}

#[test]
fn errors_are_typed() {
    assert!(HuffmanEncoded::encode(&[0, 7], 4).is_err());
    assert!(HuffmanCode::from_lengths(&[1, 1, 1]).is_err()); // violates Kraft
    let code = HuffmanCode::from_frequencies(&[1, 1, 1, 1]).unwrap();
    let (bytes, bits) = code.encode(&[0, 1, 2, 3]).unwrap();
    assert!(code.decode(&bytes, bits - 1, 4).is_err()); // truncated
    assert!(code.decode(&bytes, bits + 64, 4).is_err()); // claims more bits than given
    assert!(code.encode(&[9]).is_err());
}

#[test]
fn length_limit_holds_for_fibonacci_frequencies() {
    let mut f = vec![1u64, 1];
    while f.len() < 40 {
        let n = f[f.len() - 1] + f[f.len() - 2];
        f.push(n);
    }
    let code = HuffmanCode::from_frequencies(&f).unwrap();
    assert!(
        code.lengths()
            .iter()
            .all(|l| (1..=MAX_CODE_LEN).contains(l))
    );
    let symbols: Vec<u32> = (0..40).collect();
    let (bytes, bits) = code.encode(&symbols).unwrap();
    assert_eq!(code.decode(&bytes, bits, 40).unwrap(), symbols);
}

proptest! {
    #[test]
    fn round_trip_exact_bits_and_entropy_bound(
        symbols in prop::collection::vec(0u32..12, 0..500),
        skew in 0u32..4,
    ) {
        let symbols: Vec<u32> = symbols.iter().map(|s| s >> skew.min(3)).collect();
        let enc = HuffmanEncoded::encode(&symbols, 12).unwrap();
        prop_assert_eq!(enc.decode().unwrap(), symbols.clone());
        let f = frequencies(&symbols, 12).unwrap();
        prop_assert_eq!(Some(enc.bit_len()), enc.code().encoded_bits(&f));
        prop_assert_eq!(enc.as_bytes().len() as u64, enc.bit_len().div_ceil(8));
        let h = entropy_bits(&f);
        let n = symbols.len() as f64;
        prop_assert!(enc.bit_len() as f64 + 1e-9 >= h);
        // Huffman is within one bit per symbol of the entropy (more than one used symbol).
        if f.iter().filter(|&&c| c > 0).count() > 1 {
            prop_assert!((enc.bit_len() as f64) < h + n + 1e-9);
        }
    }
}
