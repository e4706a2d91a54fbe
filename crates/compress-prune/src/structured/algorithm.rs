//! Structured pruning of a `Sequential`: score units, pick survivors, shrink.

use compress_core::{CoreError, Cost, Float, Layer};
use compress_nn::Sequential;
use ndarray::ArrayD;

use super::plan::{plan, prunable_layers, width};
use super::score::{UnitCriterion, apoz, unit_scores};
use super::shrink::shrink_layer;
use crate::Result;
use crate::error::check_sparsity;

/// A structured pruning step.
///
/// ```
/// use compress_prune::{ShrinkConfig, UnitCriterion};
/// let cfg = ShrinkConfig::new(0.5).criterion(UnitCriterion::L1).round_to(8);
/// assert_eq!(cfg.kept(100), 56); // 50 rounded up to a multiple of 8
/// assert_eq!(cfg.kept(4), 4);    // never more than the layer has
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ShrinkConfig {
    /// Fraction of each layer's units to remove, in `[0, 1)`.
    pub fraction: f64,
    /// How units are ranked.
    pub criterion: UnitCriterion,
    /// Round kept widths up to a multiple of this (1 = no rounding; 8 suits SIMD and
    /// tensor-core kernels).
    pub round_to: usize,
    /// Keep at least this many units per layer.
    pub min_keep: usize,
    /// Which layers (indices into the `Sequential`); `None` = every prunable layer.
    pub layers: Option<Vec<usize>>,
    /// Samples per forward pass when computing APoZ.
    pub batch: usize,
}

impl ShrinkConfig {
    /// Remove `fraction` of every prunable layer's units by L2 norm.
    pub fn new(fraction: f64) -> Self {
        Self {
            fraction,
            criterion: UnitCriterion::L2,
            round_to: 1,
            min_keep: 1,
            layers: None,
            batch: 256,
        }
    }

    /// Sets the criterion.
    #[must_use]
    pub fn criterion(mut self, c: UnitCriterion) -> Self {
        self.criterion = c;
        self
    }

    /// Sets the width rounding.
    #[must_use]
    pub fn round_to(mut self, r: usize) -> Self {
        self.round_to = r;
        self
    }

    /// Restricts to these layer indices.
    #[must_use]
    pub fn layers(mut self, layers: Vec<usize>) -> Self {
        self.layers = Some(layers);
        self
    }

    /// Units kept of a layer with `width` units.
    pub fn kept(&self, width: usize) -> usize {
        let removed = (width as f64 * self.fraction).round() as usize;
        let mut keep = width.saturating_sub(removed).max(self.min_keep.max(1));
        let r = self.round_to.max(1);
        keep = keep.div_ceil(r) * r;
        keep.min(width)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`PruneError::Sparsity`](crate::PruneError::Sparsity) unless `0 <= fraction < 1`.
    pub fn validate(&self) -> Result<()> {
        check_sparsity("fraction", self.fraction)
    }
}

/// One shrunk layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShrink {
    /// Index in the `Sequential`.
    pub index: usize,
    /// Units before.
    pub before: usize,
    /// Units after.
    pub after: usize,
}

/// What a structured pruning step did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShrinkReport {
    /// One row per shrunk layer.
    pub layers: Vec<LayerShrink>,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
    /// MACs per sample before.
    pub macs_before: u64,
    /// MACs per sample after.
    pub macs_after: u64,
}

/// The `k` highest-scoring indices of `range`, ascending (ties keep the lower index).
pub(crate) fn top(scores: &[f64], range: std::ops::Range<usize>, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = range.collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// Removes the lowest-ranked units of every selected prunable layer physically (see
/// [`shrink_layer`]). Scores are computed on the model as it is before any layer shrinks.
/// `data` (inputs `[N, ...]`) is needed for [`UnitCriterion::Apoz`].
///
/// # Errors
///
/// [`PruneError::Sparsity`](crate::PruneError::Sparsity) for a bad fraction;
/// [`PruneError::Unsupported`](crate::PruneError::Unsupported) for a selected layer that
/// cannot shrink; [`CoreError::InvalidConfig`] for APoZ without data; layer errors.
///
/// ```
/// use compress_core::Layer;
/// use compress_nn::models::mlp;
/// use compress_prune::{ShrinkConfig, prune_structured};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 64, 32, 10], &mut StdRng::seed_from_u64(0));
/// let r = prune_structured(&mut net, &ShrinkConfig::new(0.5), &[64], None).unwrap();
/// assert_eq!(r.layers.len(), 2);
/// assert_eq!((r.layers[0].after, r.layers[1].after), (32, 16));
/// assert_eq!(net.cost(&[64]).unwrap().macs, 64 * 32 + 32 * 16 + 16 * 10);
/// ```
pub fn prune_structured<F: Float>(
    seq: &mut Sequential<F>,
    config: &ShrinkConfig,
    input_shape: &[usize],
    data: Option<&ArrayD<F>>,
) -> Result<ShrinkReport> {
    config.validate()?;
    let before = seq.cost(input_shape)?;
    let targets = match &config.layers {
        Some(l) => l.clone(),
        None => prunable_layers(seq, input_shape),
    };
    let apoz_scores = match (config.criterion, data) {
        (UnitCriterion::Apoz, Some(x)) => Some(apoz(seq, x, input_shape, config.batch)?),
        (UnitCriterion::Apoz, None) => {
            return Err(CoreError::config("criterion", "APoZ needs data (pass Some(x))").into());
        }
        _ => None,
    };
    let mut plans = Vec::new();
    for &i in &targets {
        let scores = unit_scores(seq, i, config.criterion, apoz_scores.as_deref(), 0)?;
        let w = width(seq, i).unwrap_or(scores.len());
        let k = config.kept(w);
        let groups = plan(seq, i, input_shape)?.consumer_groups;
        let keep = if groups > 1 && w.is_multiple_of(groups) {
            // A grouped consumer: the same number of units from every group.
            let per = w / groups;
            let k_per = k.div_ceil(groups).min(per);
            (0..groups)
                .flat_map(|g| top(&scores, g * per..(g + 1) * per, k_per))
                .collect()
        } else {
            top(&scores, 0..w, k)
        };
        plans.push((i, w, keep));
    }
    let (layers, after) = shrink_planned(
        seq,
        input_shape,
        plans,
        |seq, &i, keep| shrink_layer(seq, i, keep, input_shape),
        |index, before, after| LayerShrink {
            index,
            before,
            after,
        },
    )?;
    Ok(ShrinkReport {
        layers,
        params_before: before.params,
        params_after: after.params,
        macs_before: before.macs,
        macs_after: after.macs,
    })
}

/// Carries out `plans` on `model` in order: `shrink(model, target, keep)` for every
/// `(target, width, keep)` that keeps fewer than `width` units. Returns one
/// `row(target, width, kept)` per plan and the model's cost afterwards.
pub(crate) fn shrink_planned<F: Float, M: Layer<F> + ?Sized, T, R>(
    model: &mut M,
    input_shape: &[usize],
    plans: impl IntoIterator<Item = (T, usize, Vec<usize>)>,
    mut shrink: impl FnMut(&mut M, &T, &[usize]) -> Result<()>,
    mut row: impl FnMut(T, usize, usize) -> R,
) -> Result<(Vec<R>, Cost)> {
    let mut rows = Vec::new();
    for (target, w, keep) in plans {
        if keep.len() < w {
            shrink(model, &target, &keep)?;
        }
        rows.push(row(target, w, keep.len()));
    }
    Ok((rows, model.cost(input_shape)?))
}
