//! Physically removing output units of a layer and the matching inputs downstream.

use compress_core::{CoreError, Float, Layer, Mode, Param};
use compress_nn::{BatchNorm1d, BatchNorm2d, Conv2d, Linear, Sequential};
use ndarray::{Array2, ArrayD, Axis, IxDyn};

use super::coupled::{expand, select_param};
use super::plan::{Between, Plan, plan};
use crate::{Mask, PruneError, Result, attach_mask, mask_of};

/// Removes every output unit of layer `index` that is not in `keep` (rows of a `Linear`,
/// filters of a `groups = 1` `Conv2d`), the matching channels of batch norms in between, and
/// the matching inputs of the next `Linear`/`Conv2d` (whole column blocks after a `Flatten`).
///
/// Grouped and depthwise convs after the layer:
/// - a **depthwise** conv (`groups == in_channels`, channel multiplier `m`) is passed
///   through, as in MobileNet's depthwise → pointwise pairs: removing channel `c` removes its
///   filters and biases `c * m .. (c + 1) * m`, and those output channels go on to the batch
///   norms after it and to the inputs of the next `Linear`/`Conv2d` (or the next depthwise
///   conv, multipliers compounding). It stays depthwise with fewer channels.
/// - a **grouped** conv (`1 < groups < in_channels`) consumes the removal only when every
///   group keeps the same number of its inputs: each group gets narrower, the group count
///   stays. Any other `keep` is an `Unsupported` error naming the per-group counts.
///
/// A depthwise or grouped conv cannot be the pruned layer itself: a depthwise channel is tied
/// to its input channel, so prune the layer that feeds it instead.
///
/// When a removed unit's incoming weights are all zero and only element-wise layers separate
/// two `Linear`s, its constant output is folded into the next layer's bias, so removing
/// units that are already zero never changes the model's outputs.
///
/// `input_shape` is the model's per-sample input shape. Masks on the touched parameters are
/// restricted to the kept units; other parametrizations on them are baked in.
///
/// # Errors
///
/// [`PruneError::Unsupported`](crate::PruneError::Unsupported) when the layer cannot be
/// shrunk (see [`prunable_layers`](crate::prunable_layers)) or a grouped consumer would get
/// unequal groups;
/// [`CoreError::InvalidConfig`] when `keep` is empty, not strictly increasing or out of range.
///
/// ```
/// use compress_core::Layer;
/// use compress_nn::models::mlp;
/// use compress_prune::shrink_layer;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = mlp::<f32, _>(&[64, 32, 10], &mut StdRng::seed_from_u64(0));
/// shrink_layer(&mut net, 0, &(0..16).collect::<Vec<_>>(), &[64]).unwrap();
/// assert_eq!(net.cost(&[64]).unwrap().macs, 64 * 16 + 16 * 10);///
/// // Through a depthwise conv with multiplier 2: keeping 2 of 4 channels keeps 4 of its
/// // 8 filters and 4 of the pointwise conv's 8 inputs.
/// use compress_nn::{Conv2d, Conv2dConfig, Sequential};
/// let rng = &mut StdRng::seed_from_u64(1);
/// let mut mb = Sequential::<f32>::new()
///     .with(Conv2d::new(Conv2dConfig::new(3, 4, 1), rng).unwrap())
///     .with(Conv2d::new(Conv2dConfig::new(4, 8, 3).padding(1).groups(4), rng).unwrap())
///     .with(Conv2d::new(Conv2dConfig::new(8, 5, 1), rng).unwrap());
/// shrink_layer(&mut mb, 0, &[1, 3], &[3, 6, 6]).unwrap();
/// let dw = mb.get::<Conv2d<f32>>(1).unwrap().config();
/// assert!(dw.is_depthwise() && (dw.in_channels, dw.out_channels) == (2, 4));
/// assert_eq!(mb.get::<Conv2d<f32>>(2).unwrap().in_channels(), 4);
/// ```
pub fn shrink_layer<F: Float>(
    seq: &mut Sequential<F>,
    index: usize,
    keep: &[usize],
    input_shape: &[usize],
) -> Result<()> {
    let plan = plan(seq, index, input_shape)?;
    let width = super::plan::width(seq, index).unwrap_or(0);
    if keep.is_empty() || keep.windows(2).any(|w| w[0] >= w[1]) || keep[keep.len() - 1] >= width {
        return Err(CoreError::config(
            "keep",
            format!("must be a non-empty strictly increasing subset of 0..{width}, got {keep:?}"),
        )
        .into());
    }
    let expanded = expand(keep, plan.expansion() * plan.block);
    let consumer_pos = if plan.consumer_groups > 1 {
        Some(grouped_positions(seq, &plan, &expanded)?)
    } else {
        None
    };
    let removed: Vec<usize> = (0..width)
        .filter(|u| keep.binary_search(u).is_err())
        .collect();
    fold_dead_units(seq, &plan, &removed)?;
    shrink_producer(seq, index, keep)?;
    for &(j, role) in &plan.between {
        if role == Between::BatchNorm {
            shrink_bn(seq, j, keep)?;
        }
    }
    let mut channels = keep.to_vec();
    for t in &plan.through {
        channels = expand(&channels, t.mult);
        // A depthwise conv stays depthwise when its weight is replaced by `k * mult` filters
        // (`Conv2d::config` reads `k` channels in `k` groups).
        shrink_producer(seq, t.index, &channels)?;
        for &(j, role) in &t.between {
            if role == Between::BatchNorm {
                shrink_bn(seq, j, &channels)?;
            }
        }
    }
    let cols = expand(&channels, plan.block);
    match consumer_pos {
        Some(pos) => shrink_grouped_consumer(seq, plan.consumer, &pos),
        None => shrink_consumer(seq, plan.consumer, &cols),
    }
}

/// For a grouped consumer, the kept input positions within each group; an error unless every
/// group keeps the same (non-zero) number of its inputs.
fn grouped_positions<F: Float>(
    seq: &Sequential<F>,
    plan: &Plan,
    cols: &[usize],
) -> Result<Vec<Vec<usize>>> {
    let Some(cfg) = seq.get::<Conv2d<F>>(plan.consumer).map(Conv2d::config) else {
        return Err(CoreError::config("consumer", "grouped consumer is not a Conv2d").into());
    };
    let ipg = cfg.in_per_group();
    let mut pos = vec![Vec::new(); cfg.groups];
    for &c in cols {
        pos[c / ipg].push(c % ipg);
    }
    if pos.iter().any(|p| p.len() != pos[0].len()) {
        let counts: Vec<usize> = pos.iter().map(Vec::len).collect();
        return Err(PruneError::Unsupported {
            index: plan.consumer,
            layer: "Conv2d".to_string(),
            reason: format!(
                "is grouped (groups = {}, {ipg} inputs per group): the kept inputs per group \
                 {counts:?} must all be equal",
                cfg.groups
            ),
        });
    }
    Ok(pos)
}

/// `a[o, pos[o / out_per_group][t], ...]`: per output filter, the kept inputs of its group.
fn select_grouped<F: Float>(a: &ArrayD<F>, out_per_group: usize, pos: &[Vec<usize>]) -> ArrayD<F> {
    let mut shape = a.shape().to_vec();
    shape[1] = pos[0].len();
    let mut out = ArrayD::zeros(shape);
    for (o, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        row.assign(
            &a.index_axis(Axis(0), o)
                .select(Axis(0), &pos[o / out_per_group]),
        );
    }
    out
}

/// Removes inputs of a grouped `Conv2d`: every group keeps `pos[g]` (same length for all),
/// so the group count stays and each group gets narrower.
fn shrink_grouped_consumer<F: Float>(
    seq: &mut Sequential<F>,
    j: usize,
    pos: &[Vec<usize>],
) -> Result<()> {
    let Some(c) = seq.get_mut::<Conv2d<F>>(j) else {
        return Ok(());
    };
    let opg = c.config().out_per_group();
    let p = &mut c.weight;
    let mask = mask_of(p).map(|m| select_grouped(m.array(), opg, pos));
    let v = select_grouped(&p.effective(), opg, pos);
    p.reset(v);
    if let Some(m) = mask {
        attach_mask(p, Mask::new(m))?;
    }
    Ok(())
}

fn shrink_producer<F: Float>(seq: &mut Sequential<F>, i: usize, keep: &[usize]) -> Result<()> {
    if let Some(l) = seq.get_mut::<Linear<F>>(i) {
        select_param(&mut l.weight, 0, keep)?;
        if let Some(b) = &mut l.bias {
            select_param(b, 0, keep)?;
        }
    } else if let Some(c) = seq.get_mut::<Conv2d<F>>(i) {
        select_param(&mut c.weight, 0, keep)?;
        if let Some(b) = &mut c.bias {
            select_param(b, 0, keep)?;
        }
    }
    Ok(())
}

fn shrink_bn<F: Float>(seq: &mut Sequential<F>, j: usize, keep: &[usize]) -> Result<()> {
    // Weight, bias, running mean and variance, restricted to the kept channels.
    let select = |ps: [&Param<F>; 4]| ps.map(|p| p.effective().select(Axis(0), keep));
    if let Some(bn) = seq.get_mut::<BatchNorm1d<F>>(j) {
        let [w, b, m, v] = select([bn.weight(), bn.bias(), bn.running_mean(), bn.running_var()]);
        bn.set_tensors(w, b, m, v)?;
    } else if let Some(bn) = seq.get_mut::<BatchNorm2d<F>>(j) {
        let [w, b, m, v] = select([bn.weight(), bn.bias(), bn.running_mean(), bn.running_var()]);
        bn.set_tensors(w, b, m, v)?;
    }
    Ok(())
}

fn shrink_consumer<F: Float>(seq: &mut Sequential<F>, j: usize, cols: &[usize]) -> Result<()> {
    if let Some(l) = seq.get_mut::<Linear<F>>(j) {
        select_param(&mut l.weight, 1, cols)?;
    } else if let Some(c) = seq.get_mut::<Conv2d<F>>(j) {
        select_param(&mut c.weight, 1, cols)?;
    }
    Ok(())
}

/// Folds the constant outputs of removed `Linear` units with all-zero weights into the next
/// `Linear`'s bias (only when just element-wise layers lie between).
fn fold_dead_units<F: Float>(
    seq: &mut Sequential<F>,
    plan: &Plan,
    removed: &[usize],
) -> Result<()> {
    if removed.is_empty()
        || plan.block != 1
        || !plan.through.is_empty()
        || plan.between.iter().any(|(_, r)| *r != Between::Elementwise)
    {
        return Ok(());
    }
    let Some(prod) = seq.get::<Linear<F>>(plan.producer) else {
        return Ok(());
    };
    let Some(bias) = &prod.bias else {
        return Ok(());
    };
    let w = prod.weight.effective2()?.into_owned();
    let b = bias.effective().into_owned();
    let dead: Vec<usize> = removed
        .iter()
        .copied()
        .filter(|&u| w.row(u).iter().all(|&x| x == F::zero()) && b[u] != F::zero())
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    // The dead units output act(b_u) for every input: push their biases through the
    // element-wise layers in between.
    let mut c: ArrayD<F> = Array2::from_shape_fn((1, dead.len()), |(_, k)| b[dead[k]]).into_dyn();
    for &(j, _) in &plan.between {
        c = seq.layers_mut()[j].forward(&c, Mode::Eval)?;
    }
    let Some(cons) = seq.get_mut::<Linear<F>>(plan.consumer) else {
        return Ok(());
    };
    let wn = cons.weight.effective2()?.into_owned();
    let mut delta = ndarray::Array1::<F>::zeros(wn.nrows());
    for (k, &u) in dead.iter().enumerate() {
        let cu = c[[0, k]];
        if cu != F::zero() {
            delta.scaled_add(cu, &wn.column(u));
        }
    }
    if delta.iter().all(|&d| d == F::zero()) {
        return Ok(());
    }
    match &mut cons.bias {
        Some(nb) => {
            let mut v = nb.value().clone();
            v += &delta.into_dyn();
            nb.set_value(v)?;
        }
        None => {
            let out = wn.nrows();
            cons.bias = Some(Param::with_kind(
                delta
                    .into_shape_with_order(IxDyn(&[out]))
                    .map_err(CoreError::from)?,
                compress_core::ParamKind::Bias,
            ));
        }
    }
    Ok(())
}
