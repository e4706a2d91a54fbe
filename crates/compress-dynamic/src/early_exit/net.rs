//! The early-exit network: a backbone of stages with classifier heads after chosen stages.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut,
};
use std::sync::Arc;

use ndarray::{Array2, ArrayD, ArrayRef, Axis, IxDyn};

use crate::output::logits_2d;
use crate::profile::ExitCosts;
use crate::{DynamicError, Result};

/// A backbone of stages (any [`Layer`]s) with exit heads after chosen stages (BranchyNet).
///
/// Parameter paths are `stages.<i>.…` and `exits.<k>.…`. The last exit must follow the last
/// stage: it is the network's own classifier. As a [`Layer`] the network is the *static*
/// model (every stage, then the last head); dynamic inference is
/// [`EarlyExitNet::infer`] and joint training is
/// [`train_early_exit`](crate::train_early_exit).
///
/// Static forward, [`EarlyExitNet::forward_all`], profiling and dynamic inference run the
/// same layers the same way, so a sample's logits agree between them whenever its layers'
/// results do not depend on the batch (true of [`compress_nn::Linear`]'s eval path, which
/// also makes the few-row products of the deep stages cheap).
///
/// ```
/// use compress_core::Layer;
/// use compress_dynamic::EarlyExitNet;
/// use compress_nn::{Linear, ReLU, Sequential};
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let block = |i, o, rng: &mut StdRng| Sequential::new().with(Linear::new(i, o, true, rng)).with(ReLU::new());
/// let net = EarlyExitNet::<f32>::new(&[64])
///     .with_stage(block(64, 32, &mut rng))
///     .with_exit(Linear::new(32, 10, true, &mut rng))
///     .with_stage(block(32, 32, &mut rng))
///     .with_exit(Linear::new(32, 10, true, &mut rng));
/// net.validate()?;
/// let costs = net.exit_costs()?;
/// assert_eq!(costs.shared, vec![64 * 32, 64 * 32 + 32 * 32]);
/// assert_eq!(costs.own, vec![320, 320]);
/// assert_eq!(net.cost(&[64])?.macs, costs.full());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EarlyExitNet<F: Float> {
    pub(super) stages: Vec<Box<dyn Layer<F>>>,
    pub(super) exits: Vec<Box<dyn Layer<F>>>,
    pub(super) attach: Vec<usize>,
    input_shape: Vec<usize>,
    /// Per-stage MACs and exit costs, computed on first use by inference and dropped by
    /// every mutable parameter walk (which may reshape layers).
    pub(super) cost_cache: Option<Arc<(Vec<u64>, ExitCosts)>>,
}

impl<F: Float> EarlyExitNet<F> {
    /// An empty network for samples of `input_shape` (no batch dimension).
    pub fn new(input_shape: &[usize]) -> Self {
        Self {
            stages: Vec::new(),
            exits: Vec::new(),
            attach: Vec::new(),
            input_shape: input_shape.to_vec(),
            cost_cache: None,
        }
    }

    /// Appends a backbone stage (builder style).
    #[must_use]
    pub fn with_stage(mut self, stage: impl Layer<F> + 'static) -> Self {
        self.push_stage(Box::new(stage));
        self
    }

    /// Attaches an exit head after the last stage pushed so far (builder style).
    #[must_use]
    pub fn with_exit(mut self, head: impl Layer<F> + 'static) -> Self {
        self.push_exit(Box::new(head));
        self
    }

    /// Appends a backbone stage.
    pub fn push_stage(&mut self, stage: Box<dyn Layer<F>>) {
        self.invalidate();
        self.stages.push(stage);
    }

    /// Attaches an exit head after the last stage pushed so far.
    pub fn push_exit(&mut self, head: Box<dyn Layer<F>>) {
        self.invalidate();
        self.attach.push(self.stages.len().wrapping_sub(1));
        self.exits.push(head);
    }

    /// Attaches an exit head after stage `after_stage` of a built network, keeping the exits
    /// in stage order: the way to add early exits to a trained static network before
    /// [`train_exit_heads`](crate::train_exit_heads) trains them on its frozen backbone.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `after_stage` when it is not a stage before the
    /// last exit's, or when that stage already has an exit.
    pub fn insert_exit(&mut self, after_stage: usize, head: Box<dyn Layer<F>>) -> Result<()> {
        let last = self.attach.last().copied();
        if last.is_none_or(|l| after_stage >= l) || self.attach.contains(&after_stage) {
            return Err(DynamicError::config(
                "after_stage",
                format!(
                    "{after_stage} must be a stage without an exit before the last exit's stage \
                     {last:?} (exits follow {:?})",
                    self.attach
                ),
            ));
        }
        self.invalidate();
        let at = self.attach.partition_point(|&a| a < after_stage);
        self.attach.insert(at, after_stage);
        self.exits.insert(at, head);
        Ok(())
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Number of exits.
    pub fn num_exits(&self) -> usize {
        self.exits.len()
    }

    /// Number of backbone stages.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// The stage index each exit follows.
    pub fn attach_points(&self) -> &[usize] {
        &self.attach
    }

    /// The backbone stages.
    pub fn stages(&self) -> &[Box<dyn Layer<F>>] {
        &self.stages
    }

    /// The exit heads.
    pub fn exits(&self) -> &[Box<dyn Layer<F>>] {
        &self.exits
    }

    /// Checks the structure: at least one stage and one exit, at most one exit per stage
    /// (in order), the last exit after the last stage, every shape fitting, and every head
    /// producing the same number of classes.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming what is wrong, or the shape error of the first
    /// layer that does not fit.
    pub fn validate(&self) -> Result<()> {
        self.check_structure()?;
        self.exit_costs().map(|_| ())
    }

    /// The structural part of [`EarlyExitNet::validate`] (no shape walk).
    pub(super) fn check_structure(&self) -> Result<()> {
        if self.stages.is_empty() || self.exits.is_empty() {
            return Err(DynamicError::config(
                "early-exit network",
                format!(
                    "needs at least one stage and one exit, got {} stages, {} exits",
                    self.stages.len(),
                    self.exits.len()
                ),
            ));
        }
        if self.attach.iter().any(|&a| a >= self.stages.len())
            || self.attach.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(DynamicError::config(
                "exits",
                format!(
                    "exits must follow distinct stages in order (push a stage first), attached after {:?}",
                    self.attach
                ),
            ));
        }
        if self.attach.last() != Some(&(self.stages.len() - 1)) {
            return Err(DynamicError::config(
                "exits",
                format!(
                    "the last exit must follow the last stage {}, it follows {:?}",
                    self.stages.len() - 1,
                    self.attach.last()
                ),
            ));
        }
        Ok(())
    }

    /// Stage MACs and exit costs, cached until the next mutable parameter walk.
    pub(super) fn cached_costs(&mut self) -> Result<Arc<(Vec<u64>, ExitCosts)>> {
        if let Some(c) = &self.cost_cache {
            return Ok(Arc::clone(c));
        }
        self.validate()?;
        let c = Arc::new((self.stage_macs()?, self.exit_costs()?));
        self.cost_cache = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Drops the cached costs (the layers may change).
    fn invalidate(&mut self) {
        self.cost_cache = None;
    }

    /// Per-stage costs for one sample, and each exit's head cost.
    fn layer_costs(&self) -> Result<(Vec<Cost>, Vec<Cost>)> {
        let mut shape = self.input_shape.clone();
        let mut stage_costs = Vec::with_capacity(self.stages.len());
        for s in &self.stages {
            let c = s.cost(&shape)?;
            shape.clone_from(&c.output_shape);
            stage_costs.push(c);
        }
        let mut head_costs: Vec<Cost> = Vec::with_capacity(self.exits.len());
        for (k, (h, &a)) in self.exits.iter().zip(&self.attach).enumerate() {
            let in_shape = stage_costs
                .get(a)
                .map(|c| c.output_shape.clone())
                .ok_or_else(|| DynamicError::config("exits", format!("exit {k} has no stage")))?;
            let c = h.cost(&in_shape)?;
            if c.output_shape.len() != 1 {
                return Err(
                    CoreError::shape(format!("exit {k} output"), &[0], &c.output_shape).into(),
                );
            }
            if let Some(first) = head_costs.first()
                && first.output_shape != c.output_shape
            {
                return Err(CoreError::shape(
                    format!("exit {k} output"),
                    &first.output_shape,
                    &c.output_shape,
                )
                .into());
            }
            head_costs.push(c);
        }
        Ok((stage_costs, head_costs))
    }

    /// MACs per sample of each stage, in order.
    ///
    /// # Errors
    ///
    /// The first stage that cannot take its input shape.
    pub fn stage_macs(&self) -> Result<Vec<u64>> {
        Ok(self.layer_costs()?.0.iter().map(|c| c.macs).collect())
    }

    /// The exits' MAC accounting: trunk MACs up to each exit and each head's MACs, both
    /// from the layers' [`Layer::cost`].
    ///
    /// # Errors
    ///
    /// A shape error when a stage or head does not fit.
    pub fn exit_costs(&self) -> Result<ExitCosts> {
        let (stages, heads) = self.layer_costs()?;
        let mut prefix = Vec::with_capacity(stages.len());
        let mut acc = 0u64;
        for c in &stages {
            acc += c.macs;
            prefix.push(acc);
        }
        Ok(ExitCosts {
            shared: self.attach.iter().map(|&a| prefix[a]).collect(),
            own: heads.iter().map(|c| c.macs).collect(),
        })
    }

    /// Number of classes (output width of the heads).
    ///
    /// # Errors
    ///
    /// As [`EarlyExitNet::validate`].
    pub fn classes(&self) -> Result<usize> {
        let (_, heads) = self.layer_costs()?;
        heads
            .first()
            .map(|c| c.output_shape[0])
            .ok_or_else(|| DynamicError::config("exits", "the network has no exit"))
    }

    /// Runs every sample through every stage and every head: the logits of each exit.
    /// In [`Mode::Train`] the layers cache for [`EarlyExitNet::backward_all`].
    ///
    /// # Errors
    ///
    /// Any layer error, or a head whose output is not `[N, classes]`.
    pub fn forward_all(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<Vec<Array2<F>>> {
        self.forward_modes(x, mode, |_| mode)
    }

    /// The frozen-backbone forward of [`train_exit_heads`](crate::train_exit_heads): the
    /// stages and the last head in [`Mode::Eval`] (no caches, no batch statistics updated),
    /// the early heads in [`Mode::Train`].
    pub(super) fn forward_frozen(&mut self, x: &ArrayRef<F, IxDyn>) -> Result<Vec<Array2<F>>> {
        let last = self.exits.len().saturating_sub(1);
        self.forward_modes(x, Mode::Eval, |k| {
            if k < last { Mode::Train } else { Mode::Eval }
        })
    }

    /// Back-propagates each early exit's gradient through its head only (after
    /// [`EarlyExitNet::forward_frozen`]); the stages and the last head get no gradient.
    pub(super) fn backward_early_heads(&mut self, grads: &[Array2<F>]) -> Result<()> {
        if grads.len() != self.exits.len() {
            return Err(
                CoreError::shape("exit gradients", &[self.exits.len()], &[grads.len()]).into(),
            );
        }
        let last = self.exits.len().saturating_sub(1);
        for (head, g) in self.exits[..last].iter_mut().zip(grads) {
            head.backward(&g.view().into_dyn())?;
        }
        Ok(())
    }

    /// Every stage in `stage_mode`, exit `k` in `head_mode(k)`.
    fn forward_modes(
        &mut self,
        x: &ArrayRef<F, IxDyn>,
        stage_mode: Mode,
        head_mode: impl Fn(usize) -> Mode,
    ) -> Result<Vec<Array2<F>>> {
        self.check_structure()?;
        let mut out = Vec::with_capacity(self.exits.len());
        let mut h: Option<ArrayD<F>> = None;
        let mut next = 0;
        for s in 0..self.stages.len() {
            let hs = self.stages[s].forward(h.as_deref().unwrap_or(x), stage_mode)?;
            let hs = &*h.insert(hs);
            while next < self.attach.len() && self.attach[next] == s {
                let y = self.exits[next].forward(hs, head_mode(next))?;
                out.push(logits_2d(&y, &format_args!("exit {next}"))?.to_owned());
                next += 1;
            }
        }
        Ok(out)
    }

    /// Back-propagates one gradient per exit (with respect to its logits) through the heads
    /// and the shared stages, accumulating parameter gradients; returns the input gradient.
    /// Needs a preceding [`EarlyExitNet::forward_all`] in [`Mode::Train`].
    ///
    /// # Errors
    ///
    /// A shape mismatch for the wrong number of gradients, or any layer error.
    pub fn backward_all(&mut self, grads: &[Array2<F>]) -> Result<ArrayD<F>> {
        if grads.len() != self.exits.len() {
            return Err(
                CoreError::shape("exit gradients", &[self.exits.len()], &[grads.len()]).into(),
            );
        }
        let mut g: Option<ArrayD<F>> = None;
        for s in (0..self.stages.len()).rev() {
            for k in (0..self.exits.len()).filter(|&k| self.attach[k] == s) {
                let gh = self.exits[k].backward(&grads[k].view().into_dyn())?;
                g = Some(match g {
                    Some(acc) => acc + gh,
                    None => gh,
                });
            }
            let gs = g.ok_or_else(|| CoreError::InvalidState {
                layer: "EarlyExitNet".into(),
                reason: format!("no gradient reaches stage {s}"),
            })?;
            g = Some(self.stages[s].backward(&gs)?);
        }
        g.ok_or_else(|| DynamicError::config("stages", "the network has no stage"))
    }

    /// Splits a batch into row chunks of at most `batch` (for memory-bounded passes).
    pub(crate) fn chunks(n: usize, batch: usize) -> impl Iterator<Item = (usize, usize)> {
        let b = batch.max(1);
        (0..n.div_ceil(b)).map(move |i| (i * b, ((i + 1) * b).min(n)))
    }

    /// Logits of every exit for every sample of `x` in eval mode, in chunks of `batch`.
    ///
    /// # Errors
    ///
    /// As [`EarlyExitNet::forward_all`].
    pub fn all_exit_logits(&mut self, x: &ArrayD<F>, batch: usize) -> Result<Vec<Array2<F>>> {
        let n = x.shape().first().copied().unwrap_or(0);
        let mut parts: Vec<Vec<Array2<F>>> = Vec::new();
        for (a, b) in Self::chunks(n, batch) {
            parts.push(self.forward_all(&x.slice_axis(Axis(0), (a..b).into()), Mode::Eval)?);
        }
        let classes = self.classes()?;
        (0..self.exits.len())
            .map(|k| {
                if parts.is_empty() {
                    return Ok(Array2::zeros((0, classes)));
                }
                let views: Vec<_> = parts.iter().map(|p| p[k].view()).collect();
                Ok(ndarray::concatenate(Axis(0), &views).map_err(CoreError::from)?)
            })
            .collect()
    }
}

impl<F: Float> Module<F> for EarlyExitNet<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("stages", |p| self.stages.visit(p, v));
        path.scoped("exits", |p| self.exits.visit(p, v));
    }

    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        self.invalidate();
        path.scoped("stages", |p| self.stages.visit_mut(p, v))?;
        path.scoped("exits", |p| self.exits.visit_mut(p, v))
    }
}

/// The early heads of a network (every exit but the last) as a module, under their own
/// paths `exits.<k>.…`: what the optimizer steps when the backbone is frozen.
pub(super) struct EarlyHeads<'a, F: Float>(pub(super) &'a mut EarlyExitNet<F>);

impl<F: Float> Module<F> for EarlyHeads<'_, F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        let last = self.0.exits.len().saturating_sub(1);
        path.scoped("exits", |p| {
            for (k, head) in self.0.exits[..last].iter().enumerate() {
                p.scoped(&k.to_string(), |p| head.visit(p, v));
            }
        });
    }

    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        self.0.invalidate();
        let last = self.0.exits.len().saturating_sub(1);
        path.scoped("exits", |p| {
            for (k, head) in self.0.exits[..last].iter_mut().enumerate() {
                p.scoped(&k.to_string(), |p| head.visit_mut(p, v))?;
            }
            Ok(())
        })
    }
}

/// The static network: every stage, then the last exit's head (no early head computed).
impl<F: Float> Layer<F> for EarlyExitNet<F> {
    fn name(&self) -> &'static str {
        "EarlyExitNet"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        self.check_structure()
            .map_err(|e| e.into_core("EarlyExitNet"))?;
        // The first stage reads the caller's batch directly, as dynamic inference does.
        let mut h: Option<ArrayD<F>> = None;
        for s in 0..self.stages.len() {
            h = Some(match h.take() {
                Some(prev) => self.stages[s].forward_owned(prev, mode)?,
                None => self.stages[s].forward(x, mode)?,
            });
        }
        let last = self.exits.len() - 1;
        self.exits[last].forward(h.as_deref().unwrap_or(x), mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let last = self
            .exits
            .len()
            .checked_sub(1)
            .ok_or_else(|| CoreError::InvalidState {
                layer: "EarlyExitNet".into(),
                reason: "no exit".into(),
            })?;
        let mut g = self.exits[last].backward(grad)?;
        for s in self.stages.iter_mut().rev() {
            g = s.backward(&g)?;
        }
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        if input_shape != self.input_shape.as_slice() {
            return Err(CoreError::shape(
                "EarlyExitNet input",
                &self.input_shape,
                input_shape,
            ));
        }
        let (stages, heads) = self
            .layer_costs()
            .map_err(|e| e.into_core("EarlyExitNet"))?;
        let last = heads
            .last()
            .cloned()
            .ok_or_else(|| CoreError::InvalidState {
                layer: "EarlyExitNet".into(),
                reason: "no exit".into(),
            })?;
        let trunk = stages
            .into_iter()
            .fold(Cost::passthrough(input_shape), Cost::then);
        let mut c = trunk.then(last);
        // Parameters of every head are stored even if only the last one runs statically.
        for h in &heads[..heads.len() - 1] {
            c.params += h.params;
            c.nonzero_params += h.nonzero_params;
        }
        Ok(c)
    }
}
