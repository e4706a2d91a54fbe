//! Importance of whole output units: weight norms, APoZ, random.

use compress_core::{CoreError, Float, Layer, Mode, Param, ParamPath};
use compress_nn::Sequential;
use ndarray::{ArrayD, Axis};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::plan::{Between, plan};
use crate::Result;

/// How output units (neurons, filters) are ranked; the lowest are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum UnitCriterion {
    /// L1 norm of the unit's incoming weights (Li et al. 2017).
    L1,
    /// L2 norm of the unit's incoming weights.
    #[default]
    L2,
    /// Average percentage of zeros of the unit's activation over a data set (Hu et al.
    /// 2016): units that are mostly zero go first. Needs data.
    Apoz,
    /// Uniform random scores (the baseline).
    Random {
        /// Seed.
        seed: u64,
    },
}

/// Ln norm (`p` = 1 or 2) of each output unit's weights (row of a `[out, in]` weight, filter
/// of a `[out, in, kh, kw]` kernel), from the effective values.
pub fn unit_norms<F: Float>(weight: &ArrayD<F>, p: u32) -> Vec<f64> {
    weight
        .axis_iter(Axis(0))
        .map(|u| {
            if p == 1 {
                u.iter().map(|x| x.as_f64().abs()).sum()
            } else {
                u.iter().map(|x| x.as_f64().powi(2)).sum::<f64>().sqrt()
            }
        })
        .collect()
}

fn weight_of<F: Float>(seq: &Sequential<F>, i: usize) -> Option<ArrayD<F>> {
    let mut w = None;
    seq.layers()[i].visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, v: &Param<F>| {
            if p.leaf() == "weight" {
                w = Some(v.effective().into_owned());
            }
        },
    );
    w
}

/// Average percentage of zeros of each prunable layer's units over the samples of `x`:
/// for layer `i` the activation observed is the output of the first element-wise layer
/// after it (e.g. its ReLU), or its own output when there is none. Returns, for each layer
/// index, `Some(apoz per unit)` for prunable layers and `None` otherwise. Runs in eval mode
/// in batches of `batch`.
///
/// # Errors
///
/// Any layer error from the forward passes.
pub fn apoz<F: Float>(
    seq: &mut Sequential<F>,
    x: &ArrayD<F>,
    input_shape: &[usize],
    batch: usize,
) -> Result<Vec<Option<Vec<f64>>>> {
    let n_layers = seq.len();
    // Observation point for each prunable producer.
    let mut observe: Vec<Option<usize>> = vec![None; n_layers];
    for (i, slot) in observe.iter_mut().enumerate() {
        if let Ok(p) = plan(seq, i, input_shape) {
            *slot = Some(
                p.between
                    .iter()
                    .find(|(_, r)| *r == Between::Elementwise)
                    .map_or(i, |(j, _)| *j),
            );
        }
    }
    let mut zeros: Vec<Vec<f64>> = vec![Vec::new(); n_layers];
    let mut counts = vec![0f64; n_layers];
    let n = x.shape().first().copied().unwrap_or(0);
    let batch = batch.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let mut h = x.slice_axis(Axis(0), (start..end).into()).to_owned();
        for j in 0..n_layers {
            h = seq.layers_mut()[j].forward(&h, Mode::Eval)?;
            for (i, obs) in observe.iter().enumerate() {
                if *obs != Some(j) {
                    continue;
                }
                if h.ndim() < 2 {
                    return Err(
                        CoreError::shape("apoz activation", &[end - start, 0], h.shape()).into(),
                    );
                }
                let c = h.shape()[1];
                let per = h.len() / c.max(1);
                let z = &mut zeros[i];
                z.resize(c, 0.0);
                for (u, lane) in h.axis_iter(Axis(1)).enumerate() {
                    z[u] += lane.iter().filter(|&&v| v == F::zero()).count() as f64;
                }
                counts[i] += per as f64;
            }
        }
        start = end;
    }
    Ok(observe
        .iter()
        .enumerate()
        .map(|(i, o)| {
            o.map(|_| {
                zeros[i]
                    .iter()
                    .map(|&z| if counts[i] > 0.0 { z / counts[i] } else { 0.0 })
                    .collect()
            })
        })
        .collect())
}

/// Scores (higher = more important) of the output units of layer `i` by `criterion`;
/// `apoz` must hold the result of [`apoz`] for [`UnitCriterion::Apoz`].
pub(crate) fn unit_scores<F: Float>(
    seq: &Sequential<F>,
    i: usize,
    criterion: UnitCriterion,
    apoz: Option<&[Option<Vec<f64>>]>,
    round: u64,
) -> Result<Vec<f64>> {
    let w = weight_of(seq, i).ok_or_else(|| CoreError::MissingParam {
        path: format!("{i}.weight"),
    })?;
    Ok(match criterion {
        UnitCriterion::L1 => unit_norms(&w, 1),
        UnitCriterion::L2 => unit_norms(&w, 2),
        UnitCriterion::Random { seed } => {
            let mut rng = StdRng::seed_from_u64(seed ^ (i as u64) << 32 ^ round);
            (0..w.shape()[0]).map(|_| rng.random::<f64>()).collect()
        }
        UnitCriterion::Apoz => {
            let a = apoz
                .and_then(|a| a.get(i).cloned().flatten())
                .ok_or_else(|| CoreError::config("criterion", "APoZ needs data (pass Some(x))"))?;
            // Tie-break by weight norm so that never-active units with tiny weights go first.
            let norms = unit_norms(&w, 2);
            let max = norms.iter().copied().fold(0.0, f64::max).max(1e-30);
            a.iter()
                .zip(norms)
                .map(|(z, nrm)| (1.0 - z) + 1e-3 * nrm / max)
                .collect()
        }
    })
}
