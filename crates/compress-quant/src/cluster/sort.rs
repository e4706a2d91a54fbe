//! Sorting weights for 1-D k-means: an LSD radix sort on the f32 bit pattern (3 passes of
//! 11 bits), which sorts a million f32 in a few milliseconds, an in-place sort of the same keys
//! for larger tensors, and a comparison sort for f64.

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

/// Above this many values the f32 keys are sorted in place (`sort_unstable`) instead of by
/// the radix sort, whose second buffer would double the memory of the sort: a 47 MB embedding
/// matrix then costs one sorted copy, not two.
const RADIX_MAX: usize = 1 << 20;

/// Values sorted ascending, kept at their own precision: f32 data stays 4 bytes per value.
#[derive(Debug, Clone)]
pub(crate) enum SortedValues {
    /// Sorted f32 values (every 4-byte `Float`).
    F32(Vec<f32>),
    /// Sorted f64 values (every other `Float`).
    F64(Vec<f64>),
}

impl SortedValues {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::F32(x) => x.len(),
            Self::F64(x) => x.len(),
        }
    }

    /// Value `i` as f64 (exact).
    #[inline]
    pub(crate) fn at(&self, i: usize) -> f64 {
        match self {
            Self::F32(x) => f64::from(x[i]),
            Self::F64(x) => x[i],
        }
    }

    /// First index whose value is `>= v`.
    pub(crate) fn lower(&self, v: f64) -> usize {
        match self {
            Self::F32(x) => x.partition_point(|&x| f64::from(x) < v),
            Self::F64(x) => x.partition_point(|&x| x < v),
        }
    }
}

/// Sorts keys ascending, by the radix sort or in place.
fn sort_keys(keys: &mut Vec<u32>, radix: bool) {
    if radix {
        radix_sort_u32(keys);
    } else {
        keys.sort_unstable();
    }
}

/// The values for which `keep` holds, sorted ascending. f32 data (every `F` of 4 bytes) is
/// sorted through its u32 keys: by the radix sort up to [`RADIX_MAX`] values, in place above;
/// anything else through `sort_unstable_by(total_cmp)`. Both orders are the IEEE total order,
/// so the result does not depend on the size.
pub(crate) fn sorted_values<F: Float>(values: &[F], keep: impl Fn(F) -> bool) -> SortedValues {
    if std::mem::size_of::<F>() == 4 {
        // Exact: a 4-byte `Float` is f32, so the round trip through f64 is lossless.
        let mut keys: Vec<u32> = values
            .iter()
            .filter(|&&v| keep(v))
            .map(|v| f32_key(v.as_f64() as f32))
            .collect();
        let radix = keys.len() <= RADIX_MAX;
        sort_keys(&mut keys, radix);
        // Same size and alignment: the collect reuses the keys' allocation.
        SortedValues::F32(keys.into_iter().map(key_f32).collect())
    } else {
        let mut v: Vec<f64> = values
            .iter()
            .filter(|&&v| keep(v))
            .map(|x| x.as_f64())
            .collect();
        v.sort_unstable_by(f64::total_cmp);
        SortedValues::F64(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_and_in_place_sorts_agree() {
        let keys: Vec<u32> = (0..5000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) ^ (i >> 3))
            .collect();
        let (mut a, mut b) = (keys.clone(), keys);
        sort_keys(&mut a, true);
        sort_keys(&mut b, false);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn keep_filters_before_sorting() {
        let v = [0.0f32, 2.0, 0.0, -1.0, 3.0];
        let s = sorted_values(&v, |x| x != 0.0);
        assert_eq!(
            (0..s.len()).map(|i| s.at(i)).collect::<Vec<_>>(),
            [-1.0, 2.0, 3.0]
        );
        assert_eq!(s.lower(2.5), 2);
    }

    #[test]
    fn keys_round_trip_and_order() {
        let xs = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, f32::MAX, f32::MIN];
        for &x in &xs {
            assert_eq!(key_f32(f32_key(x)).to_bits(), x.to_bits());
        }
        let mut v: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 - 500.5)
            .collect();
        let s = sorted_values(&v, |_| true);
        v.sort_by(f32::total_cmp);
        assert_eq!(s.len(), v.len());
        assert!(v.iter().enumerate().all(|(i, a)| f64::from(*a) == s.at(i)));
    }
}
