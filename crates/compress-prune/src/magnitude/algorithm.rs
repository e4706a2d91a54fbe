//! Unstructured pruning of a [`Module`]: scores, scopes, monotone masks.

use std::collections::HashMap;

use compress_core::{CoreError, Float, Module, Param, ParamPath};
use ndarray::ArrayD;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::config::{Importance, PruneConfig, Scope};
use crate::mask::{Mask, attach_mask, mask_of};
use crate::select::{MaskedKeys, select_cut, target_count};
use crate::{PruneError, Result};

/// What one pruning step did to one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamReport {
    /// Parameter path.
    pub path: String,
    /// Scalars in the parameter.
    pub len: usize,
    /// Scalars pruned (mask zeros) after the step.
    pub pruned: usize,
}

/// What a pruning step did, parameter by parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// One row per selected parameter, in visiting order.
    pub params: Vec<ParamReport>,
}

impl PruneReport {
    /// Scalars in the selected parameters.
    pub fn total(&self) -> usize {
        self.params.iter().map(|p| p.len).sum()
    }

    /// Pruned scalars in the selected parameters.
    pub fn pruned(&self) -> usize {
        self.params.iter().map(|p| p.pruned).sum()
    }

    /// Sparsity of the selected parameters (`0` when none were selected).
    pub fn sparsity(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            self.pruned() as f64 / t as f64
        }
    }
}

/// One selected parameter's scores and current mask.
struct Entry<F: Float> {
    path: String,
    group: String,
    shape: Vec<usize>,
    scores: Vec<F>,
    mask: Option<Vec<F>>,
}

fn scores_of<F: Float>(
    path: &str,
    p: &Param<F>,
    importance: Importance,
    rng: &mut StdRng,
) -> Result<Vec<F>> {
    let w = p.effective();
    Ok(match importance {
        Importance::Magnitude => w.iter().map(|x| x.abs()).collect(),
        Importance::Random { .. } => (0..w.len()).map(|_| F::lit(rng.random::<f64>())).collect(),
        Importance::Taylor => {
            let g = p.grad().ok_or_else(|| PruneError::NoGradient {
                path: path.to_string(),
            })?;
            w.iter()
                .zip(g.iter())
                .map(|(&w, &g)| (w * g).abs())
                .collect()
        }
    })
}

/// Prunes the parameters `config.filter` selects to `config.sparsity` by attaching (or
/// tightening) a [`Mask`] on each: the lowest-scoring entries of each scope group are
/// masked, and previously pruned entries stay pruned, so the sparsity reached is
/// `max(previous, ceil(target * n) / n)` per group. Runs in O(n) per step.
///
/// The pruned entries of each parameter's *stored* value are zeroed at once, when the mask
/// is attached (unlike `torch.nn.utils.prune`, which keeps the original as `weight_orig`):
/// [`Param::value`], `stored_dict` and a saved file show the zeros immediately, and
/// [`remove_masks`](crate::remove_masks) does not restore the old values. Keep a copy of
/// `stored_dict()` to rewind (as [`lottery_ticket`](crate::lottery_ticket) does).
///
/// Which parameters are pruned: [`ParamFilter::selects`](compress_core::ParamFilter::selects)
/// (by default weights of two or more dimensions, not biases, not vectors, not norms).
///
/// # Errors
///
/// [`PruneError::Sparsity`] for a target outside `[0, 1)`, [`PruneError::NoGradient`] for
/// Taylor scores without gradients, [`CoreError::NonFinite`] naming the parameter for a NaN
/// or infinite weight (nothing is changed then).
///
/// ```
/// use compress_core::ModelStats;
/// use compress_nn::models::mlp;
/// use compress_prune::{prune, PruneConfig};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
/// let report = prune(&mut net, &PruneConfig::new(0.9)).unwrap();
/// assert!(report.sparsity() >= 0.9 && report.sparsity() < 0.901);
/// // Biases are not pruned by default, so the model as a whole is a bit less sparse.
/// assert!(ModelStats::of(&net).sparsity() > 0.85);
/// ```
pub fn prune<F: Float, M: Module<F> + ?Sized>(
    model: &mut M,
    config: &PruneConfig,
) -> Result<PruneReport> {
    config.validate()?;
    let seed = match config.importance {
        Importance::Random { seed } => seed,
        _ => 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut entries: Vec<Entry<F>> = Vec::new();
    let mut err = None;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            let key = path.to_string();
            if err.is_some() || !config.filter.selects(&key, p) {
                return;
            }
            match scores_of(&key, p, config.importance, &mut rng) {
                Ok(scores) => {
                    let group = match config.scope {
                        Scope::PerParam => key.clone(),
                        Scope::PerLayer => path.parent(),
                        Scope::Global => String::new(),
                    };
                    entries.push(Entry {
                        path: key,
                        group,
                        shape: p.shape().to_vec(),
                        scores,
                        mask: mask_of(p).map(|m| m.array().iter().copied().collect()),
                    });
                }
                Err(e) => err = Some(e),
            }
        },
    );
    if let Some(e) = err {
        return Err(e);
    }
    let masks = compute_masks(&entries, config.sparsity)?;
    apply_masks(model, masks)
}

/// New masks per path, grouped by scope.
fn compute_masks<F: Float>(
    entries: &[Entry<F>],
    sparsity: f64,
) -> Result<HashMap<String, Mask<F>>> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == e.group) {
            Some((_, v)) => v.push(i),
            None => groups.push((&e.group, vec![i])),
        }
    }
    let mut out = HashMap::new();
    for (_, members) in groups {
        let keys = MaskedKeys {
            segments: members
                .iter()
                .map(|&i| (entries[i].scores.as_slice(), entries[i].mask.as_deref()))
                .collect(),
        };
        let n: usize = members.iter().map(|&i| entries[i].scores.len()).sum();
        let k = target_count(n, sparsity);
        let cut = select_cut(&keys, n, k).map_err(|index| non_finite(entries, &members, index))?;
        let mut sel = cut.selector();
        for &i in &members {
            let e = &entries[i];
            let keep: Vec<F> = match &e.mask {
                None => e
                    .scores
                    .iter()
                    .map(|&s| sel(crate::select::abs_key(s) + 1))
                    .map(|p| if p { F::zero() } else { F::one() })
                    .collect(),
                Some(m) => e
                    .scores
                    .iter()
                    .zip(m)
                    .map(|(&s, &m)| {
                        let key = if m == F::zero() {
                            0
                        } else {
                            crate::select::abs_key(s) + 1
                        };
                        if sel(key) { F::zero() } else { F::one() }
                    })
                    .collect(),
            };
            let arr = ArrayD::from_shape_vec(e.shape.clone(), keep).map_err(CoreError::from)?;
            out.insert(e.path.clone(), Mask::new(arr));
        }
    }
    Ok(out)
}

fn non_finite<F: Float>(entries: &[Entry<F>], members: &[usize], mut index: usize) -> PruneError {
    for &i in members {
        let e = &entries[i];
        if index < e.scores.len() {
            return CoreError::NonFinite {
                path: e.path.clone(),
                index,
                value: e.scores[index].as_f64(),
            }
            .into();
        }
        index -= e.scores.len();
    }
    CoreError::config("scores", "non-finite score").into()
}

/// Attaches `masks` by path and reports the resulting pruned counts.
pub(crate) fn apply_masks<F: Float, M: Module<F> + ?Sized>(
    model: &mut M,
    mut masks: HashMap<String, Mask<F>>,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    model.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            let key = path.to_string();
            if let Some(m) = masks.remove(&key) {
                let pruned = attach_mask(p, m).map_err(|e| match e {
                    PruneError::Core(c) => c,
                    other => CoreError::technique(key.clone(), other),
                })?;
                report.params.push(ParamReport {
                    path: key,
                    len: p.len(),
                    pruned,
                });
            }
            Ok(())
        },
    )?;
    Ok(report)
}

/// Sparsity of the masks on the parameters `filter` selects (pruned / total), together
/// with the per-parameter counts. Unmasked parameters count as dense.
pub fn mask_report<F: Float, M: Module<F> + ?Sized>(
    model: &M,
    filter: &compress_core::ParamFilter,
) -> PruneReport {
    let mut report = PruneReport::default();
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            let key = path.to_string();
            if filter.selects(&key, p) {
                report.params.push(ParamReport {
                    path: key,
                    len: p.len(),
                    pruned: mask_of(p).map_or(0, Mask::pruned),
                });
            }
        },
    );
    report
}
