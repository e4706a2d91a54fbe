//! Magnitude pruning of plain slices and arrays: an O(n) global threshold.

use compress_core::{CoreError, Float};
use ndarray::{Array, ArrayRef, Dimension};

use crate::error::check_sparsity;
use crate::select::{AbsKeys, Cut, select_cut, target_count};
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

/// Chunk length of the masking passes (fits L1 twice over for f32).
const CHUNK: usize = 4096;

/// How a chunk of values is pruned given the cut at `|w| = t`.
#[derive(Clone, Copy)]
enum Pred {
    /// `|w| <= t` (every tie in the chunk is pruned).
    Le,
    /// `|w| < t` (no tie in the chunk is pruned).
    Lt,
    /// `|w| < t`, plus the first `n` ties of the chunk.
    Mixed(usize),
}

/// Walks `values` in chunks, deciding per chunk whether its ties at the cut are pruned, so
/// that exactly `cut.ties` ties are (the first ones in order) and every chunk except the one
/// where the budget runs out gets a branch-free, vectorisable predicate.
fn chunked<F: Float>(values: &[F], cut: Cut, mut body: impl FnMut(usize, Pred, F)) {
    let t = F::lit(f64::from_bits(cut.key));
    if cut.takes_all_ties() {
        for start in (0..values.len()).step_by(CHUNK) {
            body(start, Pred::Le, t);
        }
        return;
    }
    let mut left = cut.ties;
    for (c, chunk) in values.chunks(CHUNK).enumerate() {
        let pred = if left == 0 {
            Pred::Lt
        } else {
            let eq = chunk.iter().filter(|v| v.abs() == t).count();
            if eq <= left {
                left -= eq;
                Pred::Le
            } else {
                let n = left;
                left = 0;
                Pred::Mixed(n)
            }
        };
        body(c * CHUNK, pred, t);
    }
}

/// Writes the 0/1 magnitude mask of `values` at `sparsity` into `mask` (a caller's buffer,
/// so repeated calls do not pay for fresh pages). Returns the number of pruned entries,
/// exactly `ceil(sparsity * n)`; among equal magnitudes at the cut the first ones are pruned.
///
/// # Errors
///
/// As [`magnitude_threshold`], and [`CoreError::ShapeMismatch`] when `mask` has another
/// length.
pub fn magnitude_mask_into<F: Float>(
    values: &[F],
    sparsity: f64,
    mask: &mut [F],
) -> Result<usize> {
    if mask.len() != values.len() {
        return Err(CoreError::shape("mask", &[values.len()], &[mask.len()]).into());
    }
    let (cut, k) = cut_of(values, sparsity, "values")?;
    let (zero, one) = (F::zero(), F::one());
    chunked(values, cut, |start, pred, t| {
        let end = (start + CHUNK).min(values.len());
        let (v, m) = (&values[start..end], &mut mask[start..end]);
        match pred {
            Pred::Le => {
                for (m, &v) in m.iter_mut().zip(v) {
                    *m = if v.abs() <= t { zero } else { one };
                }
            }
            Pred::Lt => {
                for (m, &v) in m.iter_mut().zip(v) {
                    *m = if v.abs() < t { zero } else { one };
                }
            }
            Pred::Mixed(mut ties) => {
                for (m, &v) in m.iter_mut().zip(v) {
                    let a = v.abs();
                    let pruned = a < t || (a == t && ties > 0);
                    if a == t && ties > 0 {
                        ties -= 1;
                    }
                    *m = if pruned { zero } else { one };
                }
            }
        }
    });
    Ok(k)
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
    let (cut, k) = cut_of(values, sparsity, "values")?;
    let mut plan = Vec::new();
    chunked(values, cut, |start, pred, t| plan.push((start, pred, t)));
    for (start, pred, t) in plan {
        let end = (start + CHUNK).min(values.len());
        let v = &mut values[start..end];
        match pred {
            Pred::Le => v.iter_mut().for_each(|x| {
                if x.abs() <= t {
                    *x = F::zero();
                }
            }),
            Pred::Lt => v.iter_mut().for_each(|x| {
                if x.abs() < t {
                    *x = F::zero();
                }
            }),
            Pred::Mixed(mut ties) => v.iter_mut().for_each(|x| {
                let a = x.abs();
                if a < t || (a == t && ties > 0) {
                    if a == t {
                        ties -= 1;
                    }
                    *x = F::zero();
                }
            }),
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
