//! Named trainable tensors.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayD, IxDyn};

use crate::{CoreError, Float, ParamPath, ParamVisitor, ParamVisitorMut, Parametrization, Result};

/// What role a parameter plays; techniques use it to choose defaults
/// (biases and normalisation parameters are skipped unless asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ParamKind {
    /// A weight matrix or kernel.
    #[default]
    Weight,
    /// An additive bias.
    Bias,
    /// A normalisation scale or shift (BatchNorm gamma/beta).
    Norm,
    /// Non-trainable state that is saved with the model (running statistics).
    Buffer,
    /// A parametrization's own trainable tensor (an LSQ scale, cluster centroids), nested
    /// under the parameter it is attached to.
    Parametrization,
}

/// Source of [`Param::version`] stamps: unique across every parameter of the process.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// A named, trainable tensor: stored value, accumulated gradient and a stack of
/// [`Parametrization`]s that turn the stored value into the effective one.
#[derive(Debug, Clone)]
pub struct Param<F: Float> {
    value: ArrayD<F>,
    grad: Option<ArrayD<F>>,
    kind: ParamKind,
    chain: Vec<Box<dyn Parametrization<F>>>,
    version: u64,
}

impl<F: Float> Param<F> {
    /// A weight parameter holding `value`.
    pub fn new(value: ArrayD<F>) -> Self {
        Self::with_kind(value, ParamKind::Weight)
    }

    /// A parameter of the given kind.
    pub fn with_kind(value: ArrayD<F>, kind: ParamKind) -> Self {
        Self {
            value,
            grad: None,
            kind,
            chain: Vec::new(),
            version: next_version(),
        }
    }

    /// A stamp of the effective value: it changes (to a value no parameter of this process
    /// has had) whenever the stored value or the parametrizations may have changed, that is
    /// on every `&mut self` method except [`zero_grad`](Self::zero_grad) and
    /// [`scale_grad`](Self::scale_grad). A clone keeps the
    /// stamp, being equal. Layers use it to cache data derived from the effective value
    /// (e.g. a repacked weight) without ever reading a stale cache; it relies on
    /// [`Parametrization::forward`] depending only on state behind `&mut` access.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn touch(&mut self) {
        self.version = next_version();
    }

    /// The parameter's kind.
    pub fn kind(&self) -> ParamKind {
        self.kind
    }

    /// Changes the parameter's kind (e.g. marks a parameter made with [`Param::new`] as a
    /// bias, so that default filters skip it).
    pub fn set_kind(&mut self, kind: ParamKind) {
        self.kind = kind;
    }

    /// The stored value (before parametrizations).
    pub fn value(&self) -> &ArrayD<F> {
        &self.value
    }

    /// Mutable stored value.
    pub fn value_mut(&mut self) -> &mut ArrayD<F> {
        self.touch();
        &mut self.value
    }

    /// Replaces the stored value.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] if `value` has a different shape (path `"value"`).
    pub fn set_value(&mut self, value: ArrayD<F>) -> Result<()> {
        self.touch();
        if value.shape() != self.value.shape() {
            return Err(CoreError::shape("value", self.value.shape(), value.shape()));
        }
        self.value = value;
        Ok(())
    }

    /// Replaces the stored value with one of any shape, dropping gradient and
    /// parametrizations (used by structured shrinking and factorization).
    pub fn reset(&mut self, value: ArrayD<F>) {
        self.touch();
        self.value = value;
        self.grad = None;
        self.chain.clear();
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the parameter holds no scalars.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The value used in forward: the stored value passed through every parametrization.
    /// Borrowed when there are none.
    pub fn effective(&self) -> Cow<'_, ArrayD<F>> {
        let mut it = self.chain.iter();
        match it.next() {
            None => Cow::Borrowed(&self.value),
            Some(first) => {
                let mut w = first.forward(&self.value);
                for p in it {
                    w = p.forward(&w);
                }
                Cow::Owned(w)
            }
        }
    }

    /// Adds `grad` (the gradient with respect to the effective value) to this parameter's
    /// gradient, passing it back through the parametrizations in reverse order.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] if `grad` does not have the parameter's shape.
    pub fn accumulate_grad(&mut self, grad: ArrayD<F>) -> Result<()> {
        self.touch();
        if grad.shape() != self.value.shape() {
            return Err(CoreError::shape("grad", self.value.shape(), grad.shape()));
        }
        let mut g = grad;
        if !self.chain.is_empty() {
            // Inputs of each parametrization, recomputed (forward is cheap next to the GEMMs).
            let mut inputs: Vec<ArrayD<F>> = Vec::with_capacity(self.chain.len());
            let mut w = self.value.clone();
            for p in &self.chain {
                let next = p.forward(&w);
                inputs.push(w);
                w = next;
            }
            for (p, input) in self.chain.iter_mut().zip(inputs.iter()).rev() {
                p.accumulate_own_grad(input, &g);
                g = p.backward(input, g);
            }
        }
        match &mut self.grad {
            Some(acc) => {
                if let (Some(a), Some(x)) = (acc.as_slice_mut(), g.as_slice()) {
                    crate::concrete::add_assign(a, x);
                } else {
                    *acc += &g;
                }
            }
            None => self.grad = Some(g),
        }
        Ok(())
    }

    /// The accumulated gradient with respect to the stored value, if any.
    pub fn grad(&self) -> Option<&ArrayD<F>> {
        self.grad.as_ref()
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&mut self) {
        if let Some(g) = &mut self.grad {
            g.fill(F::zero());
        }
    }

    /// Multiplies the accumulated gradient by `factor` (gradient clipping); like
    /// [`zero_grad`](Self::zero_grad) it leaves [`version`](Self::version) alone, since the
    /// effective value does not change.
    pub fn scale_grad(&mut self, factor: F) {
        if let Some(g) = &mut self.grad {
            g.mapv_inplace(|v| v * factor);
        }
    }

    /// Applies an optimizer update `f(stored, grad)` when there is a gradient, then lets
    /// every parametrization know ([`Parametrization::after_update`]) and project the
    /// stored value. A parametrization's own tensors are nested parameters, updated by the
    /// optimizer on their own (see [`Param::visit_nested`]).
    pub fn update(&mut self, f: impl FnOnce(&mut ArrayD<F>, &ArrayD<F>)) {
        self.touch();
        if let Some(g) = &self.grad {
            f(&mut self.value, g);
        }
        for p in &mut self.chain {
            p.after_update();
            p.project(&mut self.value);
        }
    }

    /// Whether an attached parametrization has tensors of its own.
    fn has_nested(&self) -> bool {
        self.chain.iter().any(|p| !p.params().is_empty())
    }

    /// Visits the attached parametrizations' own tensors as parameters at
    /// `path.<parametrization name>.<tensor name>` (`0.weight.fake_quant.scale`).
    /// The closure visitors of [`Module::visit`](crate::Module::visit) call it after the
    /// parameter itself, so every walk sees them.
    pub fn visit_nested(&self, path: &ParamPath, v: &mut dyn ParamVisitor<F>) {
        if !self.has_nested() {
            return;
        }
        let mut path = path.clone();
        for pz in &self.chain {
            for (name, p) in pz.params() {
                path.scoped(pz.name(), |path| path.scoped(name, |path| v.visit(path, p)));
            }
        }
    }

    /// Mutable [`Param::visit_nested`]; stops at the first error.
    ///
    /// # Errors
    ///
    /// The first error the visitor returns.
    pub fn visit_nested_mut(
        &mut self,
        path: &ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        if !self.has_nested() {
            return Ok(());
        }
        self.touch();
        let mut path = path.clone();
        for pz in &mut self.chain {
            let name = pz.name();
            for (tensor, p) in pz.params_mut() {
                path.scoped(name, |path| {
                    path.scoped(tensor, |path| v.visit_mut(path, p))
                })?;
            }
        }
        Ok(())
    }

    /// Attaches a parametrization on top of the existing ones.
    ///
    /// # Errors
    ///
    /// Whatever [`Parametrization::validate`] reports for this parameter's shape.
    pub fn push_parametrization(&mut self, p: Box<dyn Parametrization<F>>) -> Result<()> {
        self.touch();
        p.validate(self.value.shape())?;
        p.project(&mut self.value);
        self.chain.push(p);
        Ok(())
    }

    /// The attached parametrizations, in application order.
    pub fn parametrizations(&self) -> &[Box<dyn Parametrization<F>>] {
        &self.chain
    }

    /// Mutable access to the attached parametrizations.
    pub fn parametrizations_mut(&mut self) -> &mut [Box<dyn Parametrization<F>>] {
        self.touch();
        &mut self.chain
    }

    /// The first attached parametrization of concrete type `P`.
    pub fn find_parametrization<P: Parametrization<F>>(&self) -> Option<&P> {
        self.chain
            .iter()
            .find_map(|p| (**p).as_any().downcast_ref::<P>())
    }

    /// Mutable access to the first attached parametrization of type `P`.
    pub fn find_parametrization_mut<P: Parametrization<F>>(&mut self) -> Option<&mut P> {
        self.touch();
        self.chain
            .iter_mut()
            .find_map(|p| (**p).as_any_mut().downcast_mut::<P>())
    }

    /// Removes every parametrization of type `P`, keeping the stored value as it is.
    /// Returns how many were removed.
    pub fn remove_parametrizations<P: Parametrization<F>>(&mut self) -> usize {
        self.touch();
        let before = self.chain.len();
        self.chain.retain(|p| !(**p).as_any().is::<P>());
        before - self.chain.len()
    }

    /// Makes the parametrizations permanent: the stored value becomes the effective value
    /// and the stack is cleared.
    pub fn bake(&mut self) {
        self.touch();
        if !self.chain.is_empty() {
            self.value = self.effective().into_owned();
            self.chain.clear();
            self.grad = None;
        }
    }

    /// An all-zero array of this parameter's shape.
    pub fn zeros_like(&self) -> ArrayD<F> {
        ArrayD::zeros(IxDyn(self.value.shape()))
    }
}
