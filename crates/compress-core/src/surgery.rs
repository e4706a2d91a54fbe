//! Layer surgery: reaching, reading and replacing the layers of any model by path, and the
//! coupling groups a model declares for structured shrinking.
//!
//! A container layer lists its direct children with [`Layer::children`] and
//! [`Layer::children_mut`]; the free functions here walk that tree and supply dotted paths
//! (`encoder.0`), the same paths under which the children's parameters are visited
//! (`encoder.0.weight`). A child stored as `Box<dyn Layer<F>>` is [`LayerSlot::Boxed`] and can be
//! replaced by a layer of another type (a `Linear` by a CSR or quantized layer, by two
//! low-rank factors, by an observing wrapper); a child stored as a concrete type is
//! [`LayerSlot::Fixed`] and can be changed in place only.
//!
//! ```
//! use compress_core::surgery::{LayerSlot, find_layer, layer_paths, replace_layer};
//! use compress_core::{Cost, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut, Result};
//! use ndarray::{ArrayD, ArrayRef, IxDyn};
//!
//! /// An identity layer, to keep the example short.
//! #[derive(Debug)]
//! struct Id;
//! impl Module<f32> for Id {
//!     fn visit(&self, _: &mut ParamPath, _: &mut dyn ParamVisitor<f32>) {}
//!     fn visit_mut(&mut self, _: &mut ParamPath, _: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
//!         Ok(())
//!     }
//! }
//! impl Layer<f32> for Id {
//!     fn name(&self) -> &'static str { "Id" }
//!     fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, _: Mode) -> Result<ArrayD<f32>> {
//!         Ok(x.to_owned())
//!     }
//!     fn backward(&mut self, g: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> { Ok(g.to_owned()) }
//!     fn cost(&self, s: &[usize]) -> Result<Cost> { Ok(Cost::passthrough(s)) }
//! }
//!
//! /// A user's model: one replaceable child, one fixed child.
//! #[derive(Debug)]
//! struct Net { body: Box<dyn Layer<f32>>, head: Id }
//! impl Module<f32> for Net {
//!     fn visit(&self, p: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
//!         p.scoped("body", |p| self.body.visit(p, v));
//!         p.scoped("head", |p| self.head.visit(p, v));
//!     }
//!     fn visit_mut(&mut self, p: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
//!         p.scoped("body", |p| self.body.visit_mut(p, v))?;
//!         p.scoped("head", |p| self.head.visit_mut(p, v))
//!     }
//! }
//! impl Layer<f32> for Net {
//!     fn name(&self) -> &'static str { "Net" }
//!     fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, m: Mode) -> Result<ArrayD<f32>> {
//!         let h = self.body.forward(x, m)?;
//!         self.head.forward(&h, m)
//!     }
//!     fn backward(&mut self, g: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
//!         let g = self.head.backward(g)?;
//!         self.body.backward(&g)
//!     }
//!     fn cost(&self, s: &[usize]) -> Result<Cost> { Ok(Cost::passthrough(s)) }
//!     fn children(&self) -> Vec<(String, &dyn Layer<f32>)> {
//!         vec![("body".into(), self.body.as_ref()), ("head".into(), &self.head)]
//!     }
//!     fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, f32>)> {
//!         vec![
//!             ("body".into(), LayerSlot::Boxed(&mut self.body)),
//!             ("head".into(), LayerSlot::Fixed(&mut self.head)),
//!         ]
//!     }
//! }
//!
//! let mut net = Net { body: Box::new(Id), head: Id };
//! let names: Vec<String> = layer_paths(&net).into_iter().map(|(p, _)| p).collect();
//! assert_eq!(names, ["body", "head"]);
//! assert_eq!(find_layer(&net, "head").unwrap().name(), "Id");
//! assert!(replace_layer(&mut net, "body", Box::new(Id)).is_ok());
//! assert!(replace_layer(&mut net, "head", Box::new(Id)).is_err()); // a fixed field
//! ```

use ndarray::{ArrayD, ArrayRef, IxDyn};

use crate::{CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, Result};
use crate::{Param, ParamVisitorMut};

/// A child layer reached mutably through [`Layer::children_mut`].
pub enum LayerSlot<'a, F: Float> {
    /// A child stored as `Box<dyn Layer<F>>`: it can be replaced by any layer.
    Boxed(&'a mut Box<dyn Layer<F>>),
    /// A child stored as a concrete type: it can be changed in place, not replaced.
    Fixed(&'a mut dyn Layer<F>),
}

impl<F: Float> std::fmt::Debug for LayerSlot<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_replaceable() {
            "Boxed"
        } else {
            "Fixed"
        };
        write!(f, "LayerSlot::{kind}({})", self.layer().name())
    }
}

impl<'a, F: Float> LayerSlot<'a, F> {
    /// The layer in the slot.
    pub fn layer(&self) -> &dyn Layer<F> {
        match self {
            Self::Boxed(b) => b.as_ref(),
            Self::Fixed(l) => &**l,
        }
    }

    /// The layer in the slot, mutably.
    pub fn layer_mut(&mut self) -> &mut dyn Layer<F> {
        match self {
            Self::Boxed(b) => b.as_mut(),
            Self::Fixed(l) => &mut **l,
        }
    }

    /// The layer with the slot's full lifetime (used by the walkers to descend).
    fn into_layer_mut(self) -> &'a mut dyn Layer<F> {
        match self {
            Self::Boxed(b) => b.as_mut(),
            Self::Fixed(l) => l,
        }
    }

    /// The layer as concrete type `T`, if it is one.
    pub fn downcast_ref<T: Layer<F>>(&self) -> Option<&T> {
        self.layer().as_any().downcast_ref::<T>()
    }

    /// The layer as concrete type `T`, mutably.
    pub fn downcast_mut<T: Layer<F>>(&mut self) -> Option<&mut T> {
        self.layer_mut().as_any_mut().downcast_mut::<T>()
    }

    /// Whether [`LayerSlot::replace`] can succeed (the child is boxed).
    pub fn is_replaceable(&self) -> bool {
        matches!(self, Self::Boxed(_))
    }

    /// Puts `layer` in the slot and returns the previous layer.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidState`] naming the layer when the slot is [`LayerSlot::Fixed`].
    pub fn replace(&mut self, layer: Box<dyn Layer<F>>) -> Result<Box<dyn Layer<F>>> {
        match self {
            Self::Boxed(b) => Ok(std::mem::replace(*b, layer)),
            Self::Fixed(l) => Err(fixed_error(l.name())),
        }
    }

    /// Replaces the layer by `f(layer)`, e.g. to wrap it.
    ///
    /// # Errors
    ///
    /// As [`LayerSlot::replace`].
    pub fn map(&mut self, f: impl FnOnce(Box<dyn Layer<F>>) -> Box<dyn Layer<F>>) -> Result<()> {
        match self {
            Self::Boxed(b) => {
                let old = std::mem::replace(*b, Box::new(Placeholder));
                **b = f(old);
                Ok(())
            }
            Self::Fixed(l) => Err(fixed_error(l.name())),
        }
    }
}

fn fixed_error(name: &str) -> CoreError {
    CoreError::InvalidState {
        layer: name.to_string(),
        reason: "is stored as a concrete type and cannot be replaced (store it as \
                 Box<dyn Layer<F>> to allow surgery)"
            .to_string(),
    }
}

/// What a mutable walk does after its callback returned for a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Walk {
    /// Visit the (possibly replaced) layer's children next.
    #[default]
    Descend,
    /// Do not enter the layer (e.g. it was just replaced or wrapped).
    Skip,
}

/// Visits every layer below `root` in pre-order (parents before children, children in the
/// order their container lists them) with its dotted path. `root` itself is not visited.
pub fn walk_layers<F: Float>(root: &dyn Layer<F>, f: &mut dyn FnMut(&ParamPath, &dyn Layer<F>)) {
    fn go<F: Float>(
        l: &dyn Layer<F>,
        path: &mut ParamPath,
        f: &mut dyn FnMut(&ParamPath, &dyn Layer<F>),
    ) {
        for (name, child) in l.children() {
            path.scoped(&name, |p| {
                f(p, child);
                go(child, p, f);
            });
        }
    }
    go(root, &mut ParamPath::root(), f);
}

/// Visits every layer below `root` mutably in pre-order; the callback may change or replace
/// the layer through its [`LayerSlot`] and says whether to enter it afterwards. Stops at the
/// first error.
///
/// # Errors
///
/// The first error the callback returns.
pub fn walk_layers_mut<F: Float>(
    root: &mut dyn Layer<F>,
    f: &mut dyn FnMut(&ParamPath, &mut LayerSlot<'_, F>) -> Result<Walk>,
) -> Result<()> {
    fn go<F: Float>(
        l: &mut dyn Layer<F>,
        path: &mut ParamPath,
        f: &mut dyn FnMut(&ParamPath, &mut LayerSlot<'_, F>) -> Result<Walk>,
    ) -> Result<()> {
        for (name, mut slot) in l.children_mut() {
            path.scoped(&name, |p| {
                if f(p, &mut slot)? == Walk::Descend {
                    go(slot.into_layer_mut(), p, f)?;
                }
                Ok::<(), CoreError>(())
            })?;
        }
        Ok(())
    }
    go(root, &mut ParamPath::root(), f)
}

/// Path and type name of every layer below `root`, in [`walk_layers`] order.
pub fn layer_paths<F: Float>(root: &dyn Layer<F>) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    walk_layers(root, &mut |p, l| out.push((p.to_string(), l.name())));
    out
}

/// How many leading segments of `segs` the child name `name` covers (names may contain dots,
/// as `blocks.0`), if it is their prefix.
fn covers(name: &str, segs: &[&str]) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').filter(|s| !s.is_empty()).collect();
    (!parts.is_empty() && segs.starts_with(&parts)).then_some(parts.len())
}

/// The layer at `path` below `root` (`""` is `root` itself).
pub fn find_layer<'a, F: Float>(root: &'a dyn Layer<F>, path: &str) -> Option<&'a dyn Layer<F>> {
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let mut rest = &segs[..];
    let mut cur = root;
    while !rest.is_empty() {
        let (n, child) = cur
            .children()
            .into_iter()
            .find_map(|(name, c)| covers(&name, rest).map(|n| (n, c)))?;
        rest = &rest[n..];
        cur = child;
    }
    Some(cur)
}

/// Runs `f` on the slot of the layer at `path` below `root`.
///
/// # Errors
///
/// [`CoreError::MissingParam`] naming `path` when no layer is there (or `path` is empty:
/// the root has no slot); otherwise what `f` returns.
pub fn with_layer_mut<F: Float, R>(
    root: &mut dyn Layer<F>,
    path: &str,
    f: impl FnOnce(&mut LayerSlot<'_, F>) -> Result<R>,
) -> Result<R> {
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let missing = || CoreError::MissingParam {
        path: path.to_string(),
    };
    let mut rest = &segs[..];
    let mut cur = root;
    loop {
        let (n, mut slot) = cur
            .children_mut()
            .into_iter()
            .find_map(|(name, slot)| covers(&name, rest).map(|n| (n, slot)))
            .ok_or_else(missing)?;
        rest = &rest[n..];
        if rest.is_empty() {
            return f(&mut slot);
        }
        cur = slot.into_layer_mut();
    }
}

/// Replaces the layer at `path` below `root` and returns the old one.
///
/// # Errors
///
/// As [`with_layer_mut`] and [`LayerSlot::replace`].
pub fn replace_layer<F: Float>(
    root: &mut dyn Layer<F>,
    path: &str,
    layer: Box<dyn Layer<F>>,
) -> Result<Box<dyn Layer<F>>> {
    with_layer_mut(root, path, |slot| slot.replace(layer))
}

/// Replaces every layer below `model` for which `build(path, layer)` returns a new layer
/// (`None` leaves it alone), in replaceable slots only, and returns the replaced paths in
/// walk order. Every replacement is built before the first one is made, so when `build`
/// fails (its first error is returned) the model is unchanged. Technique crates use it with
/// their own error type `E`.
///
/// # Errors
///
/// The first error `build` returns; a slot's replacement error (as [`LayerSlot::replace`]).
pub fn replace_layers<F: Float, E: From<CoreError>>(
    model: &mut dyn Layer<F>,
    mut build: impl FnMut(&str, &dyn Layer<F>) -> Option<Result<Box<dyn Layer<F>>, E>>,
) -> Result<Vec<String>, E> {
    let mut built: Vec<(String, Box<dyn Layer<F>>)> = Vec::new();
    let mut failed = None;
    walk_layers(&*model, &mut |path, l| {
        if failed.is_some() {
            return;
        }
        let path = path.to_string();
        match build(&path, l) {
            None => {}
            Some(Ok(layer)) => built.push((path, layer)),
            Some(Err(e)) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut replaced = Vec::new();
    for (path, layer) in built {
        let done = with_layer_mut(&mut *model, &path, |slot| {
            if !slot.is_replaceable() {
                return Ok(false);
            }
            slot.replace(layer)?;
            Ok(true)
        })?;
        if done {
            replaced.push(path);
        }
    }
    Ok(replaced)
}

/// Parameter `path` of `root` (the module's own visiting paths), mutably, through `f`.
///
/// # Errors
///
/// [`CoreError::MissingParam`] when no parameter has that path; otherwise what `f` returns.
pub fn with_param_mut<F: Float, M: Module<F> + ?Sized, R>(
    root: &mut M,
    path: &str,
    f: impl FnOnce(&mut Param<F>) -> Result<R>,
) -> Result<R> {
    let mut f = Some(f);
    let mut out = None;
    root.visit_mut(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &mut Param<F>| {
            if out.is_none()
                && p.to_string() == path
                && let Some(f) = f.take()
            {
                out = Some(f(param));
            }
            Ok(())
        },
    )?;
    out.unwrap_or_else(|| {
        Err(CoreError::MissingParam {
            path: path.to_string(),
        })
    })
}

/// What a member of a [`CouplingGroup`] does with the group's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CouplingRole {
    /// The unit's incoming weights (a `Linear` row, a conv filter): scored when ranking units.
    Produce,
    /// Indexed by the unit but not scored (a bias, a norm's scale, shift and statistics, a
    /// depthwise filter the channel passes through).
    Follow,
    /// The unit's outgoing weights (a `Linear` column, a conv input channel).
    Consume,
}

/// One parameter axis of a [`CouplingGroup`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coupled {
    /// Parameter path relative to the layer that declared the group.
    pub path: String,
    /// Axis of the parameter indexed by the group's units.
    pub axis: usize,
    /// Consecutive indices per unit along `axis` (1; `H * W` for the input of a `Linear`
    /// after a flatten of `[C, H, W]`; the multiplier of a depthwise conv).
    pub block: usize,
    /// What the parameter does with the units.
    pub role: CouplingRole,
}

impl Coupled {
    /// A member with `block = 1`.
    pub fn new(path: impl Into<String>, axis: usize, role: CouplingRole) -> Self {
        Self {
            path: path.into(),
            axis,
            block: 1,
            role,
        }
    }

    /// Sets the block (builder style).
    #[must_use]
    pub fn block(mut self, block: usize) -> Self {
        self.block = block;
        self
    }
}

/// Parameter axes that must lose the same units together, declared by the model (the
/// simple form of Torch-Pruning's dependency groups): removing unit `u` of the group removes
/// indices `u * block .. (u + 1) * block` along `axis` of every member.
///
/// A hidden layer of an MLP is one group: the rows of its weight and its bias
/// ([`CouplingRole::Produce`], [`CouplingRole::Follow`]) and the columns of the next weight
/// ([`CouplingRole::Consume`]). A residual stream is one group spanning every layer that
/// writes into it (all `Produce`) and every layer that reads it (all `Consume`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CouplingGroup {
    /// A name for reports (usually the path of the first producer's layer).
    pub name: String,
    /// The coupled parameter axes.
    pub members: Vec<Coupled>,
}

impl CouplingGroup {
    /// An empty group called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            members: Vec::new(),
        }
    }

    /// Adds a member (builder style).
    #[must_use]
    pub fn with(mut self, member: Coupled) -> Self {
        self.members.push(member);
        self
    }

    /// The group with every member path prefixed by `prefix.` (for containers that pass on
    /// the groups of their children).
    #[must_use]
    pub fn prefixed(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            for m in &mut self.members {
                m.path = format!("{prefix}.{}", m.path);
            }
            self.name = if self.name.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", self.name)
            };
        }
        self
    }

    /// Number of units in the group as seen by `model`'s parameters: the size along `axis`
    /// divided by `block` for every member.
    ///
    /// # Errors
    ///
    /// [`CoreError::MissingParam`] for a member path with no parameter,
    /// [`CoreError::InvalidConfig`] for an axis out of range, a block that does not divide,
    /// members that disagree or an empty group.
    pub fn width<M: Module<F> + ?Sized, F: Float>(&self, model: &M) -> Result<usize> {
        let shapes = shapes_by_path(model);
        let mut width = None;
        for m in &self.members {
            let shape = shapes
                .iter()
                .find(|(p, _)| *p == m.path)
                .map(|(_, s)| s)
                .ok_or_else(|| CoreError::MissingParam {
                    path: m.path.clone(),
                })?;
            let len = *shape.get(m.axis).ok_or_else(|| {
                CoreError::config(
                    format!("coupling `{}`", self.name),
                    format!("axis {} out of range for `{}` {shape:?}", m.axis, m.path),
                )
            })?;
            if m.block == 0 || !len.is_multiple_of(m.block) {
                return Err(CoreError::config(
                    format!("coupling `{}`", self.name),
                    format!(
                        "block {} does not divide axis {} of `{}` {shape:?}",
                        m.block, m.axis, m.path
                    ),
                ));
            }
            let w = len / m.block;
            match width {
                None => width = Some(w),
                Some(prev) if prev != w => {
                    return Err(CoreError::config(
                        format!("coupling `{}`", self.name),
                        format!(
                            "`{}` has {w} units on axis {}, others {prev}",
                            m.path, m.axis
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        width.ok_or_else(|| CoreError::config(format!("coupling `{}`", self.name), "is empty"))
    }
}

fn shapes_by_path<F: Float, M: Module<F> + ?Sized>(model: &M) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    model.visit(
        &mut ParamPath::root(),
        &mut |p: &ParamPath, param: &Param<F>| out.push((p.to_string(), param.shape().to_vec())),
    );
    out
}

/// Occupies a slot for the duration of [`LayerSlot::map`].
#[derive(Debug)]
struct Placeholder;

impl<F: Float> Module<F> for Placeholder {
    fn visit(&self, _: &mut ParamPath, _: &mut dyn ParamVisitor<F>) {}
    fn visit_mut(&mut self, _: &mut ParamPath, _: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        Ok(())
    }
}

impl<F: Float> Layer<F> for Placeholder {
    fn name(&self) -> &'static str {
        "Placeholder"
    }
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, _: Mode) -> Result<ArrayD<F>> {
        Ok(x.to_owned())
    }
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        Ok(grad.to_owned())
    }
    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}
