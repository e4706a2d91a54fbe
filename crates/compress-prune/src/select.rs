//! O(n) selection of the k-th smallest score: a 16-bit radix histogram over a monotone
//! bucket of the score (its `f32` bit pattern without the sign, top 16 bits), then
//! `select_nth_unstable` on the one bucket that holds the cut.

use compress_core::Float;

/// Buckets in the histogram.
const BUCKETS: usize = 1 << 16;
/// First bucket that may hold non-finite values (`+inf` as f32 bits is `0x7F80_0000`).
const NONFINITE_BUCKET: usize = 0x7F80_0000 >> 15;
/// Keys at or above this are non-finite (f64 bits of `+inf`).
const NONFINITE_KEY: u64 = 0x7FF0_0000_0000_0000;

/// Total-order key of `|x|`: the f64 bit pattern of the absolute value. For finite values
/// it is below `0x7FF0 << 48`; NaN and infinities are at or above it.
#[inline(always)]
pub(crate) fn abs_key<F: Float>(x: F) -> u64 {
    x.as_f64().abs().to_bits()
}

/// Histogram bucket of `|x|`: the top 16 bits of `|x|` rounded to `f32` (monotone in
/// `|x|`, and the identity round trip for `f32` inputs). 8 exponent and 8 mantissa bits
/// spread real weight distributions over thousands of buckets.
#[inline(always)]
pub(crate) fn abs_bucket<F: Float>(x: F) -> usize {
    ((x.as_f64().abs() as f32).to_bits() >> 15) as usize
}

/// A source of `(bucket, key)` pairs, walkable several times in the same order; buckets
/// are non-decreasing functions of the keys.
pub(crate) trait Keys {
    /// Calls `g(bucket, key)` for every entry in order.
    fn each<G: FnMut(usize, u64)>(&self, g: G);
}

/// Keys `abs_key(x)` of one slice.
pub(crate) struct AbsKeys<'a, F>(pub(crate) &'a [F]);

impl<F: Float> Keys for AbsKeys<'_, F> {
    #[inline]
    fn each<G: FnMut(usize, u64)>(&self, mut g: G) {
        for &x in self.0 {
            g(abs_bucket(x), abs_key(x));
        }
    }
}

/// Scores (non-negative) with an optional existing 0/1 mask per segment: masked-out entries
/// get key 0 (they are always selected first), others `abs_key(score) + 1`.
pub(crate) struct MaskedKeys<'a, F> {
    pub(crate) segments: Vec<(&'a [F], Option<&'a [F]>)>,
}

impl<F: Float> Keys for MaskedKeys<'_, F> {
    #[inline]
    fn each<G: FnMut(usize, u64)>(&self, mut g: G) {
        for (scores, mask) in &self.segments {
            match mask {
                None => scores
                    .iter()
                    .for_each(|&s| g(abs_bucket(s), abs_key(s) + 1)),
                Some(m) => scores.iter().zip(m.iter()).for_each(|(&s, &m)| {
                    if m == F::zero() {
                        g(0, 0);
                    } else {
                        g(abs_bucket(s), abs_key(s) + 1);
                    }
                }),
            }
        }
    }
}

/// Where to cut: every key `< key` is selected, plus the first `ties` keys equal to it
/// (in walking order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) key: u64,
    pub(crate) ties: usize,
}

impl Cut {
    /// Selects nothing.
    pub(crate) const NONE: Cut = Cut { key: 0, ties: 0 };

    /// A stateful predicate over keys in walking order: `true` = selected (pruned).
    #[inline]
    pub(crate) fn selector(self) -> impl FnMut(u64) -> bool {
        let mut ties = self.ties;
        move |k| {
            if k < self.key {
                true
            } else if k == self.key && ties > 0 {
                ties -= 1;
                true
            } else {
                false
            }
        }
    }
}

/// Number of entries to prune so that the sparsity is at least `sparsity` (`n * s`
/// rounded up, with a little slack for floating-point error in the product).
pub(crate) fn target_count(n: usize, sparsity: f64) -> usize {
    let k = (sparsity * n as f64 - 1e-9).ceil();
    if k <= 0.0 { 0 } else { (k as usize).min(n) }
}

/// Finds the cut that selects exactly `k` of the `n` keys in O(n).
///
/// # Errors
///
/// The walking-order index of the first non-finite key (NaN or infinite score).
pub(crate) fn select_cut<K: Keys>(keys: &K, n: usize, k: usize) -> Result<Cut, usize> {
    histogram_cut(keys, n, k)
}

/// The cut among candidates: the `r`-th smallest (0-based) of `cand`, with `below` keys
/// known to be smaller than every candidate.
pub(crate) fn cut_in(cand: &mut [u64], below: usize, k: usize) -> Cut {
    let r = k - 1 - below;
    let (_, &mut key, _) = cand.select_nth_unstable(r);
    let less = cand.iter().filter(|&&c| c < key).count();
    Cut {
        key,
        ties: k - below - less,
    }
}

/// Two passes: a 16-bit radix histogram finds the bucket of the k-th key, then the keys of
/// that bucket are collected and selected.
fn histogram_cut<K: Keys>(keys: &K, n: usize, k: usize) -> Result<Cut, usize> {
    let Some(at) = locate(keys, n, k)? else {
        return Ok(Cut::NONE);
    };
    let mut cand: Vec<u64> = Vec::with_capacity(at.size);
    keys.each(|b, key| {
        if b == at.bucket {
            cand.push(key);
        }
    });
    Ok(cut_in(&mut cand, at.below, k))
}

/// The histogram bucket holding the k-th smallest key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    /// The bucket.
    pub(crate) bucket: usize,
    /// Keys in lower buckets.
    pub(crate) below: usize,
    /// Keys in the bucket.
    pub(crate) size: usize,
}

/// First pass: the 16-bit histogram. `Ok(None)` when `k == 0`.
///
/// # Errors
///
/// The walking-order index of the first non-finite key.
pub(crate) fn locate<K: Keys>(keys: &K, n: usize, k: usize) -> Result<Option<Located>, usize> {
    let mut hist = vec![0u32; BUCKETS];
    keys.each(|b, _| hist[b] += 1);
    if hist[NONFINITE_BUCKET..].iter().any(|&c| c > 0) {
        // Rare path: the top buckets also hold huge finite f64 values; check the keys.
        let mut first = None;
        let mut i = 0usize;
        keys.each(|_, key| {
            if first.is_none() && key >= NONFINITE_KEY {
                first = Some(i);
            }
            i += 1;
        });
        if let Some(i) = first {
            return Err(i);
        }
    }
    if k == 0 {
        return Ok(None);
    }
    debug_assert!(k <= n);
    let mut below = 0usize;
    for (b, &c) in hist.iter().enumerate() {
        if below + c as usize >= k {
            return Ok(Some(Located {
                bucket: b,
                below,
                size: c as usize,
            }));
        }
        below += c as usize;
    }
    unreachable!("k <= n keys were counted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_selects_exactly_k_with_ties() {
        let v = [3.0f32, 1.0, 1.0, 1.0, 2.0, 0.0, -1.0];
        for k in 0..=v.len() {
            let cut = select_cut(&AbsKeys(&v), v.len(), k).unwrap();
            let mut sel = cut.selector();
            let n = v.iter().filter(|&&x| sel(abs_key(x))).count();
            assert_eq!(n, k);
        }
    }

    #[test]
    fn large_inputs_with_ties_and_nan() {
        let v: Vec<f32> = (0..(1usize << 20))
            .map(|i| ((i * 7919) % 1000) as f32 * 0.01)
            .collect();
        for k in [1usize, 1000, 1 << 19, (1 << 20) - 1, 1 << 20] {
            let cut = select_cut(&AbsKeys(&v), v.len(), k).unwrap();
            let mut sel = cut.selector();
            assert_eq!(v.iter().filter(|&&x| sel(abs_key(x))).count(), k);
        }
        let mut w = v.clone();
        w[12345] = f32::NAN;
        assert_eq!(select_cut(&AbsKeys(&w), w.len(), 10), Err(12345));
    }

    #[test]
    fn nonfinite_is_located() {
        let v = [1.0f64, 2.0, f64::NAN, f64::INFINITY];
        assert_eq!(select_cut(&AbsKeys(&v), 4, 2), Err(2));
    }

    #[test]
    fn target_count_rounds_up() {
        assert_eq!(target_count(10, 0.9), 9);
        assert_eq!(target_count(10, 0.91), 10);
        assert_eq!(target_count(3, 0.5), 2);
        assert_eq!(target_count(0, 0.5), 0);
    }
}
