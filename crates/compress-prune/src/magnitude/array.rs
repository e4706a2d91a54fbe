//! Magnitude pruning of plain slices and arrays: an O(n) global threshold.

use compress_core::{CoreError, Float};
use ndarray::{Array, ArrayRef, Dimension};

use crate::error::check_sparsity;
use crate::select::{AbsKeys, Cut, abs_bucket, abs_key, cut_in, locate, select_cut, target_count};
use crate::{Mask, Result};

/// The magnitude cut of a slice: entries with `|w| < value` are pruned, plus the first `ties`
/// entries (in order) with `|w| == value`, so exactly `pruned` entries are pruned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold<F: Float> {
    /// The magnitude at the cut (`0` when nothing is pruned).
    pub value: F,
    /// How many entries equal to `value` are pruned (the first ones in order).
    pub ties: usize,
    /// Entries pruned in total: `ceil(sparsity * n)`.
    pub pruned: usize,
}

fn cut_of<F: Float>(values: &[F], sparsity: f64, path: &str) -> Result<(Cut, usize)> {
    check_sparsity("sparsity", sparsity)?;
    let k = target_count(values.len(), sparsity);
    let cut =
        select_cut(&AbsKeys(values), values.len(), k).map_err(|index| CoreError::NonFinite {
            path: path.to_string(),
            index,
            value: values[index].as_f64(),
        })?;
    Ok((cut, k))
}

/// The magnitude threshold that prunes `ceil(sparsity * n)` entries of `values`, in O(n)
/// (radix histogram + selection, no sort).
///
/// # Errors
///
/// [`PruneError::Sparsity`](crate::PruneError::Sparsity) unless `0 <= sparsity < 1`;
/// [`CoreError::NonFinite`] for a NaN or infinite weight.
///
/// ```
/// use compress_prune::magnitude_threshold;
/// let t = magnitude_threshold(&[0.5f32, -0.1, 0.3, -0.9], 0.5).unwrap();
/// assert_eq!((t.value, t.pruned), (0.3, 2));
/// ```
pub fn magnitude_threshold<F: Float>(values: &[F], sparsity: f64) -> Result<Threshold<F>> {
    let (cut, k) = cut_of(values, sparsity, "values")?;
    let value = if k == 0 {
        F::zero()
    } else {
        F::lit(f64::from_bits(cut.key))
    };
    Ok(Threshold {
        value,
        ties: cut.ties,
        pruned: k,
    })
}

/// "Strictly below the cut's bucket" for one bucket: for `f32` (where the bucket is the top
/// 16 bits of `|v|`) it is the plain comparison `|v| < lo`, which vectorises; other types
/// compare buckets.
#[derive(Clone, Copy)]
struct Below<F> {
    bucket: usize,
    lo: F,
    exact: bool,
}

impl<F: Float> Below<F> {
    fn new(bucket: usize) -> Self {
        let exact = F::IS_F32;
        let bound = |b: usize| {
            F::lit(f64::from(f32::from_bits(
                ((b as u32) << 15).min(0x7F80_0000),
            )))
        };
        Self {
            bucket,
            lo: bound(bucket),
            exact,
        }
    }

    /// Writes `yes` into `out[j]` for the entries of `chunk` below the bucket and `no` for
    /// the others.
    #[inline]
    fn write(self, chunk: &[F], out: &mut [F], yes: F, no: F) {
        if self.exact {
            for (o, &v) in out.iter_mut().zip(chunk) {
                *o = if v.abs() < self.lo { yes } else { no };
            }
        } else {
            for (o, &v) in out.iter_mut().zip(chunk) {
                *o = if abs_bucket(v) < self.bucket { yes } else { no };
            }
        }
    }

    /// Zeroes the entries of `chunk` below the bucket.
    #[inline]
    fn zero(self, chunk: &mut [F]) {
        if self.exact {
            for v in chunk.iter_mut() {
                if v.abs() < self.lo {
                    *v = F::zero();
                }
            }
        } else {
            for v in chunk.iter_mut() {
                if abs_bucket(*v) < self.bucket {
                    *v = F::zero();
                }
            }
        }
    }

    /// Pushes `(key, start + j)` for the entries of `chunk` in the bucket.
    #[inline]
    fn collect(self, chunk: &[F], start: usize, out: &mut Vec<(u64, usize)>) {
        for (j, &v) in chunk.iter().enumerate() {
            if abs_bucket(v) == self.bucket {
                out.push((abs_key(v), start + j));
            }
        }
    }
}

/// Two passes over `values`: the radix histogram locates the bucket of the cut; the second
/// pass hands every chunk to `bulk` (which prunes the entries [`Below`] the bucket) and
/// collects the `(key, index)` pairs inside the bucket, which are then resolved exactly (the
/// first ties in order are pruned) and reported through `fix(i, pruned)`. Returns the number
/// pruned.
fn two_pass<F: Float>(
    values: &[F],
    sparsity: f64,
    mut bulk: impl FnMut(&[F], usize, Below<F>),
    mut fix: impl FnMut(usize, bool),
) -> Result<usize> {
    check_sparsity("sparsity", sparsity)?;
    let n = values.len();
    let k = target_count(n, sparsity);
    let at = locate(&AbsKeys(values), n, k).map_err(|index| CoreError::NonFinite {
        path: "values".to_string(),
        index,
        value: values[index].as_f64(),
    })?;
    let Some(at) = at else {
        // Nothing to prune: nothing is below bucket 0.
        let below = Below::new(0);
        for (c, chunk) in values.chunks(CHUNK).enumerate() {
            bulk(chunk, c * CHUNK, below);
        }
        return Ok(0);
    };
    let below = Below::new(at.bucket);
    let mut cand: Vec<(u64, usize)> = Vec::with_capacity(at.size);
    for (c, chunk) in values.chunks(CHUNK).enumerate() {
        bulk(chunk, c * CHUNK, below);
        below.collect(chunk, c * CHUNK, &mut cand);
    }
    let mut keys: Vec<u64> = cand.iter().map(|c| c.0).collect();
    let cut = cut_in(&mut keys, at.below, k);
    let mut sel = cut.selector();
    for (key, i) in cand {
        fix(i, sel(key));
    }
    Ok(k)
}

/// Chunk length of the second pass (the candidates of a chunk are collected while it is
/// still in L1).
const CHUNK: usize = 4096;

/// Writes the 0/1 magnitude mask of `values` at `sparsity` into `mask` (a caller's buffer,
/// so repeated calls do not pay for fresh pages). Returns the number of pruned entries,
/// exactly `ceil(sparsity * n)`; among equal magnitudes at the cut the first ones are pruned.
///
/// Two passes over the data: a radix histogram, then one pass that writes the mask and
/// collects the few entries in the cut's bucket, resolved exactly afterwards.
///
/// # Errors
///
/// As [`magnitude_threshold`], and [`CoreError::ShapeMismatch`] when `mask` has another
/// length.
pub fn magnitude_mask_into<F: Float>(values: &[F], sparsity: f64, mask: &mut [F]) -> Result<usize> {
    if mask.len() != values.len() {
        return Err(CoreError::shape("mask", &[values.len()], &[mask.len()]).into());
    }
    let (zero, one) = (F::zero(), F::one());
    let cell = std::cell::RefCell::new(mask);
    two_pass(
        values,
        sparsity,
        |chunk, start, below| {
            let mut m = cell.borrow_mut();
            below.write(chunk, &mut m[start..start + chunk.len()], zero, one);
        },
        |i, pruned| cell.borrow_mut()[i] = if pruned { zero } else { one },
    )
}

/// Zeroes the `ceil(sparsity * n)` smallest-magnitude entries of `values` in place (global
/// magnitude pruning of a flat weight buffer). Returns the number pruned.
///
/// # Errors
///
/// As [`magnitude_threshold`].
///
/// ```
/// use compress_prune::magnitude_prune_inplace;
/// let mut w = vec![0.5f32, -0.1, 0.3, -0.9, 0.05];
/// assert_eq!(magnitude_prune_inplace(&mut w, 0.6).unwrap(), 3);
/// assert_eq!(w, vec![0.5, 0.0, 0.0, -0.9, 0.0]);
/// ```
pub fn magnitude_prune_inplace<F: Float>(values: &mut [F], sparsity: f64) -> Result<usize> {
    let mut pruned_idx = Vec::new();
    let mut cut_bucket = None;
    let k = two_pass(
        values,
        sparsity,
        |_, _, below| cut_bucket = Some(below),
        |i, pruned| {
            if pruned {
                pruned_idx.push(i);
            }
        },
    )?;
    if k > 0
        && let Some(below) = cut_bucket
    {
        below.zero(values);
        for i in pruned_idx {
            values[i] = F::zero();
        }
    }
    Ok(k)
}

/// The magnitude [`Mask`] of an array at `sparsity` (row-major order breaks ties).
///
/// # Errors
///
/// As [`magnitude_threshold`].
///
/// ```
/// use compress_prune::magnitude_mask;
/// use ndarray::array;
/// let m = magnitude_mask(&array![[1.0f32, -0.2], [0.1, 3.0]], 0.5).unwrap();
/// assert_eq!(m.array().as_slice().unwrap(), &[1.0, 0.0, 0.0, 1.0]);
/// ```
pub fn magnitude_mask<F: Float, D: Dimension>(
    w: &ArrayRef<F, D>,
    sparsity: f64,
) -> Result<Mask<F>> {
    let flat: Vec<F> = w.iter().copied().collect();
    let mut mask = vec![F::zero(); flat.len()];
    magnitude_mask_into(&flat, sparsity, &mut mask)?;
    let arr = Array::from_shape_vec(w.shape().to_vec(), mask).map_err(CoreError::from)?;
    Ok(Mask::new(arr))
}

/// The magnitude mask of an array as a plain 0/1 array of the same shape and dimension
/// type (`1` = kept), for code that multiplies by it rather than attaching a [`Mask`].
///
/// # Errors
///
/// As [`magnitude_threshold`].
///
/// ```
/// use compress_prune::magnitude_mask_array;
/// use ndarray::array;
/// let m = magnitude_mask_array(&array![[1.0f32, -0.2], [0.1, 3.0]], 0.5).unwrap();
/// assert_eq!(m, array![[1.0, 0.0], [0.0, 1.0]]);
/// ```
pub fn magnitude_mask_array<F: Float, D: Dimension>(
    w: &ArrayRef<F, D>,
    sparsity: f64,
) -> Result<Array<F, D>> {
    let flat = w.as_standard_layout();
    let values = flat.as_slice().unwrap_or(&[]);
    let mut mask = vec![F::zero(); values.len()];
    magnitude_mask_into(values, sparsity, &mut mask)?;
    Ok(Array::from_shape_vec(w.raw_dim(), mask).map_err(CoreError::from)?)
}

/// Zeroes the `ceil(sparsity * n)` smallest-magnitude entries of any array or view in place
/// (row-major order breaks ties), contiguous or not. Returns the number pruned.
///
/// # Errors
///
/// As [`magnitude_threshold`].
///
/// ```
/// use compress_prune::magnitude_prune_array;
/// use ndarray::array;
/// let mut w = array![[0.5f32, -0.1, 7.0], [0.3, -0.9, 0.05]];
/// // A strided view: the first two columns.
/// let pruned = magnitude_prune_array(&mut w.slice_mut(ndarray::s![.., ..2]), 0.5).unwrap();
/// assert_eq!(pruned, 2);
/// assert_eq!(w, array![[0.5, 0.0, 7.0], [0.0, -0.9, 0.05]]);
/// ```
pub fn magnitude_prune_array<F: Float, D: Dimension>(
    w: &mut ArrayRef<F, D>,
    sparsity: f64,
) -> Result<usize> {
    if let Some(values) = w.as_slice_mut() {
        return magnitude_prune_inplace(values, sparsity);
    }
    let mut flat: Vec<F> = w.iter().copied().collect();
    let pruned = magnitude_prune_inplace(&mut flat, sparsity)?;
    for (dst, src) in w.iter_mut().zip(flat) {
        *dst = src;
    }
    Ok(pruned)
}
