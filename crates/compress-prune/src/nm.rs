//! N:M semi-structured sparsity: in every group of `m` consecutive weights along the input
//! dimension, only the `n` largest in magnitude are kept (2:4 is what sparse tensor cores
//! accelerate).

use std::collections::HashMap;

use compress_core::{CoreError, Float, Module, Param, ParamFilter, ParamPath};
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn};

use crate::magnitude::apply_masks;
use crate::{Mask, PruneError, PruneReport, Result, mask_of};

fn check_nm(n: usize, m: usize) -> Result<()> {
    if m == 0 || n == 0 || n > m {
        return Err(CoreError::config("n:m", format!("need 1 <= n <= m, got {n}:{m}")).into());
    }
    Ok(())
}

/// The N:M mask of a weight whose axis 1 is the input dimension (`[out, in]` for Linear,
/// `[out, in, kh, kw]` for Conv2d; a 1-D tensor is grouped along axis 0): in every group of
/// `m` consecutive entries along that axis the `n` largest `|w|` are kept (earlier entries
/// win ties). Entries already pruned by `existing` count as smallest.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] unless `1 <= n <= m`; [`PruneError::NotDivisible`] when `m`
/// does not divide the input dimension; [`CoreError::NonFinite`] for NaN weights.
///
/// ```
/// use compress_prune::nm_mask;
/// use ndarray::array;
/// let w = array![[0.1f32, -0.9, 0.5, 0.2, 1.0, 2.0, -3.0, 0.0]].into_dyn();
/// let m = nm_mask(&w, 2, 4, None, "w").unwrap();
/// assert_eq!(m.array().as_slice().unwrap(), &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
/// ```
pub fn nm_mask<F: Float>(
    w: &ArrayRef<F, IxDyn>,
    n: usize,
    m: usize,
    existing: Option<&Mask<F>>,
    path: &str,
) -> Result<Mask<F>> {
    check_nm(n, m)?;
    if let Some((index, &v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CoreError::NonFinite {
            path: path.to_string(),
            index,
            value: v.as_f64(),
        }
        .into());
    }
    let axis = if w.ndim() >= 2 { 1 } else { 0 };
    let len = w.shape().get(axis).copied().unwrap_or(0);
    if len % m != 0 {
        return Err(PruneError::NotDivisible {
            path: path.to_string(),
            len,
            m,
            shape: w.shape().to_vec(),
        });
    }
    let mut scores: ArrayD<F> = w.mapv(|x| x.abs());
    if let Some(e) = existing {
        ndarray::Zip::from(&mut scores)
            .and(e.array())
            .for_each(|s, &k| {
                if k == F::zero() {
                    *s = -F::one();
                }
            });
    }
    let mut mask = ArrayD::<F>::zeros(w.raw_dim());
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for (s_lane, mut m_lane) in scores
        .lanes(Axis(axis))
        .into_iter()
        .zip(mask.lanes_mut(Axis(axis)))
    {
        for g in 0..len / m {
            order.clear();
            order.extend(g * m..(g + 1) * m);
            // Stable sort by descending score: earlier entries win ties.
            order.sort_by(|&a, &b| s_lane[b].total_cmp(&s_lane[a]));
            for &j in &order[..n] {
                m_lane[j] = F::one();
            }
        }
    }
    Ok(Mask::new(mask))
}

/// Applies N:M masks to every parameter `filter` selects (ANDed with existing masks).
///
/// # Errors
///
/// As [`nm_mask`], naming the parameter.
///
/// ```
/// use compress_core::ParamFilter;
/// use compress_nn::models::mlp;
/// use compress_prune::nm_prune;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 32, 12], &mut StdRng::seed_from_u64(1));
/// let report = nm_prune(&mut net, 2, 4, &ParamFilter::new()).unwrap();
/// assert_eq!(report.sparsity(), 0.5);
/// ```
pub fn nm_prune<F: Float, M: Module<F> + ?Sized>(
    model: &mut M,
    n: usize,
    m: usize,
    filter: &ParamFilter,
) -> Result<PruneReport> {
    check_nm(n, m)?;
    let mut masks = HashMap::new();
    let mut err = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            let key = path.to_string();
            if err.is_some() || !filter.selects(&key, p) {
                return;
            }
            match nm_mask(&p.effective(), n, m, mask_of(p), &key) {
                Ok(mask) => {
                    masks.insert(key, mask);
                }
                Err(e) => err = Some(e),
            }
        },
    );
    if let Some(e) = err {
        return Err(e);
    }
    apply_masks(model, masks)
}

/// Whether `w` satisfies N:M sparsity along its input dimension (at most `n` non-zeros in
/// every group of `m`). `false` when `m` does not divide that dimension.
pub fn is_nm_sparse<F: Float>(w: &ArrayRef<F, IxDyn>, n: usize, m: usize) -> bool {
    if m == 0 {
        return false;
    }
    let axis = if w.ndim() >= 2 { 1 } else { 0 };
    let len = w.shape().get(axis).copied().unwrap_or(0);
    if len % m != 0 {
        return false;
    }
    w.lanes(Axis(axis)).into_iter().all(|lane| {
        (0..len / m).all(|g| {
            (g * m..(g + 1) * m)
                .filter(|&j| lane[j] != F::zero())
                .count()
                <= n
        })
    })
}

/// Exact bytes of an N:M compressed tensor of `len` dense entries (as sparse tensor cores
/// store it): the `len / m * n` kept values at `value_bytes` each, plus `ceil(log2 m)` bits
/// of position metadata per kept value, packed.
///
/// ```
/// // 2:4 of 1024 f32 weights: 512 values (2048 B) + 512 x 2 bits (128 B).
/// assert_eq!(compress_prune::nm_storage_bytes(1024, 2, 4, 4), 2048 + 128);
/// ```
pub fn nm_storage_bytes(len: usize, n: usize, m: usize, value_bytes: usize) -> usize {
    if m == 0 {
        return 0;
    }
    let kept = len / m * n;
    let bits = usize::BITS - (m - 1).leading_zeros();
    kept * value_bytes + (kept * bits as usize).div_ceil(8)
}
