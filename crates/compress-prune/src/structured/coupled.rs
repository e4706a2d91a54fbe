//! Structured shrinking of any model through the coupling groups it declares.

use compress_core::surgery::with_param_mut;
use compress_core::{CoreError, CouplingGroup, CouplingRole, Float, Layer, Param, ParamPath};
use ndarray::Axis;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::algorithm::{ShrinkConfig, shrink_planned, top};
use super::score::UnitCriterion;
use crate::{Mask, Result, attach_mask, mask_of};

/// One shrunk coupling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupShrink {
    /// The group's name as declared by the model.
    pub name: String,
    /// Units before.
    pub before: usize,
    /// Units after.
    pub after: usize,
}

/// What [`prune_coupled`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoupledShrinkReport {
    /// One row per group, in declaration order.
    pub groups: Vec<GroupShrink>,
    /// Parameters before.
    pub params_before: usize,
    /// Parameters after.
    pub params_after: usize,
    /// MACs per sample before.
    pub macs_before: u64,
    /// MACs per sample after.
    pub macs_after: u64,
}

/// Indices `u * block .. (u + 1) * block` for every unit `u` of `keep`.
pub(crate) fn expand(keep: &[usize], block: usize) -> Vec<usize> {
    keep.iter()
        .flat_map(|&c| c * block..(c + 1) * block)
        .collect()
}

/// Replaces `p` by its effective value restricted to `idx` along `axis`, keeping a mask
/// (restricted the same way) if there was one. Other parametrizations are baked in.
pub(crate) fn select_param<F: Float>(p: &mut Param<F>, axis: usize, idx: &[usize]) -> Result<()> {
    let mask = mask_of(p).map(|m| m.array().select(Axis(axis), idx));
    let v = p.effective().select(Axis(axis), idx);
    p.reset(v);
    if let Some(m) = mask {
        attach_mask(p, Mask::new(m))?;
    }
    Ok(())
}

/// Scores of the `width` units of `group` (higher = more important): the Lp norm over the
/// slices of every [`CouplingRole::Produce`] member (as if they were concatenated), or
/// seeded random scores.
fn group_scores<F: Float>(
    model: &dyn Layer<F>,
    group: &CouplingGroup,
    width: usize,
    criterion: UnitCriterion,
    index: usize,
) -> Result<Vec<f64>> {
    let p = match criterion {
        UnitCriterion::L1 => 1,
        UnitCriterion::L2 => 2,
        UnitCriterion::Random { seed } => {
            let mut rng = StdRng::seed_from_u64(seed ^ (index as u64) << 32);
            return Ok((0..width).map(|_| rng.random::<f64>()).collect());
        }
        _ => {
            return Err(CoreError::config(
                "criterion",
                format!(
                    "{criterion:?} is not available for declared coupling groups (use L1, L2 or \
                     Random)"
                ),
            )
            .into());
        }
    };
    let mut acc = vec![0f64; width];
    let mut producers = 0;
    model.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, param: &Param<F>| {
            let key = path.to_string();
            for m in &group.members {
                if m.role != CouplingRole::Produce || m.path != key {
                    continue;
                }
                producers += 1;
                let w = param.effective();
                for (i, lane) in w.axis_iter(Axis(m.axis)).enumerate() {
                    let s: f64 = if p == 1 {
                        lane.iter().map(|x| x.as_f64().abs()).sum()
                    } else {
                        lane.iter().map(|x| x.as_f64().powi(2)).sum()
                    };
                    acc[i / m.block] += s;
                }
            }
        },
    );
    if producers == 0 {
        return Err(CoreError::config(
            format!("coupling `{}`", group.name),
            "has no Produce member to score units by",
        )
        .into());
    }
    if p == 2 {
        acc.iter_mut().for_each(|a| *a = a.sqrt());
    }
    Ok(acc)
}

/// Removes the lowest-ranked `config.fraction` of the units of every coupling group that
/// `model` declares ([`Layer::coupling_groups`]), from every member parameter at once: any
/// model (a user's struct with residual connections, a transformer) can be shrunk this way,
/// not only a `Sequential`. Units are ranked by the L1/L2 norm of their
/// [`CouplingRole::Produce`] slices (all of them together) or at random; every group is
/// scored on the model as it is before any group shrinks. Masks on touched parameters are
/// restricted to the kept units; other parametrizations are baked in. Layers read their
/// sizes from their parameters' shapes, so they need nothing else.
///
/// `config.layers` does not apply here (groups are chosen by the model).
///
/// # Errors
///
/// [`PruneError::Sparsity`](crate::PruneError::Sparsity) for a bad fraction;
/// [`CoreError::InvalidConfig`] for [`UnitCriterion::Apoz`], a group without a producer or
/// members that disagree on the width; [`CoreError::MissingParam`] for a member path that
/// the model does not have. Nothing is changed when any group fails to plan.
pub fn prune_coupled<F: Float>(
    model: &mut dyn Layer<F>,
    config: &ShrinkConfig,
    input_shape: &[usize],
) -> Result<CoupledShrinkReport> {
    config.validate()?;
    let before = model.cost(input_shape)?;
    let groups = model.coupling_groups(input_shape)?;
    let mut plans = Vec::with_capacity(groups.len());
    for (gi, g) in groups.iter().enumerate() {
        let w = g.width(&*model)?;
        let scores = group_scores(&*model, g, w, config.criterion, gi)?;
        let keep = top(&scores, 0..w, config.kept(w));
        plans.push((g, w, keep));
    }
    let (groups, after) = shrink_planned(
        model,
        input_shape,
        plans,
        |model, g, keep| shrink_group(model, g, keep),
        |g, before, after| GroupShrink {
            name: g.name.clone(),
            before,
            after,
        },
    )?;
    Ok(CoupledShrinkReport {
        groups,
        params_before: before.params,
        params_after: after.params,
        macs_before: before.macs,
        macs_after: after.macs,
    })
}

/// Keeps only units `keep` (strictly increasing) of `group` in every member parameter of
/// `model`.
///
/// # Errors
///
/// [`CoreError::InvalidConfig`] when `keep` is empty, not strictly increasing or out of
/// range; [`CoreError::MissingParam`] for a member the model does not have.
pub fn shrink_group<F: Float>(
    model: &mut dyn Layer<F>,
    group: &CouplingGroup,
    keep: &[usize],
) -> Result<()> {
    let width = group.width(&*model)?;
    if keep.is_empty() || keep.windows(2).any(|w| w[0] >= w[1]) || keep[keep.len() - 1] >= width {
        return Err(CoreError::config(
            "keep",
            format!("must be a non-empty strictly increasing subset of 0..{width}, got {keep:?}"),
        )
        .into());
    }
    for m in &group.members {
        let idx = expand(keep, m.block);
        with_param_mut(&mut *model, &m.path, |p| {
            select_param(p, m.axis, &idx).map_err(|e| CoreError::technique(m.path.clone(), e))
        })?;
    }
    Ok(())
}
