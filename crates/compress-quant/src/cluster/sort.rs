//! Sorting weights for 1-D k-means: an LSD radix sort on the f32 bit pattern (3 passes of
//! 11 bits), which sorts a million f32 in a few milliseconds, and a comparison sort for f64.

use compress_core::Float;

/// Maps an f32 to a u32 whose unsigned order is the IEEE total order of the float.
#[inline]
fn f32_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Inverse of [`f32_key`].
#[inline]
fn key_f32(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

const RADIX_BITS: u32 = 11;
const BINS: usize = 1 << RADIX_BITS;
const PASSES: usize = 3;

/// Sorts u32 keys ascending (LSD radix, 3 passes of 11 bits; a pass whose digit is the same
/// for every key is skipped).
pub(crate) fn radix_sort_u32(keys: &mut Vec<u32>) {
    let n = keys.len();
    if n < 256 {
        keys.sort_unstable();
        return;
    }
    let mut hist = vec![[0usize; BINS]; PASSES];
    for &k in keys.iter() {
        for (p, h) in hist.iter_mut().enumerate() {
            h[((k >> (p as u32 * RADIX_BITS)) as usize) & (BINS - 1)] += 1;
        }
    }
    let mut buf = vec![0u32; n];
    for (p, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut offsets = [0usize; BINS];
        let mut acc = 0;
        for (o, &c) in offsets.iter_mut().zip(h.iter()) {
            *o = acc;
            acc += c;
        }
        let shift = p as u32 * RADIX_BITS;
        for &k in keys.iter() {
            let d = ((k >> shift) as usize) & (BINS - 1);
            buf[offsets[d]] = k;
            offsets[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

/// The values sorted ascending as f64. f32 data (every `F` of 4 bytes) goes through the radix
/// sort; anything else through `sort_unstable_by(total_cmp)`.
pub(crate) fn sorted_f64<F: Float>(values: &[F]) -> Vec<f64> {
    if std::mem::size_of::<F>() == 4 {
        // Exact: a 4-byte `Float` is f32, so the round trip through f64 is lossless.
        let mut keys: Vec<u32> = values.iter().map(|v| f32_key(v.as_f64() as f32)).collect();
        radix_sort_u32(&mut keys);
        keys.into_iter().map(|k| f64::from(key_f32(k))).collect()
    } else {
        let mut v: Vec<f64> = values.iter().map(|x| x.as_f64()).collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order() {
        let xs = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, f32::MAX, f32::MIN];
        for &x in &xs {
            assert_eq!(key_f32(f32_key(x)).to_bits(), x.to_bits());
        }
        let mut v: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 - 500.5)
            .collect();
        let s = sorted_f64(&v);
        v.sort_by(f32::total_cmp);
        assert!(v.iter().zip(&s).all(|(a, b)| f64::from(*a) == *b));
    }
}
