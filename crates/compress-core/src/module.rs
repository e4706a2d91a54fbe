//! Anything with named parameters, and the visitors that walk it.

use ndarray::ArrayD;

use crate::{CoreError, Float, Param, ParamKind, ParamPath, Result};

/// Reads parameters during a [`Module::visit`] walk.
pub trait ParamVisitor<F: Float> {
    /// Called once per parameter with its full path.
    fn visit(&mut self, path: &ParamPath, param: &Param<F>);
}

/// Changes parameters during a [`Module::visit_mut`] walk.
pub trait ParamVisitorMut<F: Float> {
    /// Called once per parameter with its full path.
    ///
    /// # Errors
    ///
    /// Whatever the technique reports for this parameter; the walk stops at the first error.
    fn visit_mut(&mut self, path: &ParamPath, param: &mut Param<F>) -> Result<()>;
}

/// A closure visits each parameter, then the parameter's nested parametrization tensors
/// ([`Param::visit_nested`]).
impl<F: Float, T: FnMut(&ParamPath, &Param<F>)> ParamVisitor<F> for T {
    fn visit(&mut self, path: &ParamPath, param: &Param<F>) {
        self(path, param);
        param.visit_nested(path, self);
    }
}

/// A closure visits each parameter, then the parameter's nested parametrization tensors
/// ([`Param::visit_nested_mut`]).
impl<F: Float, T: FnMut(&ParamPath, &mut Param<F>) -> Result<()>> ParamVisitorMut<F> for T {
    fn visit_mut(&mut self, path: &ParamPath, param: &mut Param<F>) -> Result<()> {
        self(path, param)?;
        param.visit_nested_mut(path, self)
    }
}

/// Summary of one parameter, as listed by [`Module::named_params`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Dotted path.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role.
    pub kind: ParamKind,
    /// Number of scalars.
    pub len: usize,
    /// Non-zero scalars of the effective value.
    pub nonzero: usize,
}

/// Anything with named parameters. Object safe: `Box<dyn Module<F>>` works.
///
/// Implement the two walks by hand; every technique and statistic builds on them.
///
/// ```
/// use compress_core::{Module, Param, ParamPath, ParamVisitor, ParamVisitorMut, Result};
/// use ndarray::ArrayD;
///
/// struct Dense { weight: Param<f32>, bias: Option<Param<f32>> }
///
/// impl Module<f32> for Dense {
///     fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
///         path.scoped("weight", |p| v.visit(p, &self.weight));
///         if let Some(b) = &self.bias { path.scoped("bias", |p| v.visit(p, b)); }
///     }
///     fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
///         path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
///         if let Some(b) = &mut self.bias { path.scoped("bias", |p| v.visit_mut(p, b))?; }
///         Ok(())
///     }
/// }
///
/// let d = Dense { weight: Param::new(ArrayD::zeros(vec![4, 3])), bias: None };
/// assert_eq!(d.num_params(), 12);
/// assert_eq!(d.named_params()[0].path, "weight");
/// ```
pub trait Module<F: Float> {
    /// Visits every parameter once, in a stable order.
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>);

    /// Visits every parameter mutably; stops at the first error.
    ///
    /// # Errors
    ///
    /// Returns the first error the visitor returns.
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()>;

    /// Total number of scalars.
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit(
            &mut ParamPath::root(),
            &mut |_: &ParamPath, p: &Param<F>| {
                n += p.len();
            },
        );
        n
    }

    /// Path, shape, kind and counts of every parameter, in visiting order.
    fn named_params(&self) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        self.visit(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &Param<F>| {
                out.push(ParamInfo {
                    path: path.to_string(),
                    shape: p.shape().to_vec(),
                    kind: p.kind(),
                    len: p.len(),
                    nonzero: p.effective().iter().filter(|&&x| x != F::zero()).count(),
                });
            },
        );
        out
    }

    /// Copies of every parameter's effective value, by path (for saving or rewinding).
    fn state_dict(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out = Vec::new();
        self.visit(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &Param<F>| {
                out.push((path.to_string(), p.effective().into_owned()));
            },
        );
        out
    }

    /// Copies of every parameter's stored value, by path (parametrizations not applied).
    fn stored_dict(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out = Vec::new();
        self.visit(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &Param<F>| {
                out.push((path.to_string(), p.value().clone()));
            },
        );
        out
    }

    /// Sets stored values from `(path, value)` pairs; every parameter must be present.
    /// Parametrizations stay attached (so a pruning mask survives a rewind).
    ///
    /// # Errors
    ///
    /// [`CoreError::MissingParam`] for a parameter with no entry, and
    /// [`CoreError::ShapeMismatch`] naming the path when shapes differ.
    fn load_state(&mut self, state: &[(String, ArrayD<F>)]) -> Result<()> {
        assign_state(self, state, true).map(|_| ())
    }

    /// Sets the stored values of the parameters that have an entry in `state` and leaves the
    /// others alone; returns how many were set. Parametrizations stay attached.
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] naming the path when shapes differ.
    fn load_state_partial(&mut self, state: &[(String, ArrayD<F>)]) -> Result<usize> {
        assign_state(self, state, false)
    }

    /// Clears every gradient.
    fn zero_grad(&mut self) {
        // The closure never fails.
        let _ = self.visit_mut(
            &mut ParamPath::root(),
            &mut |_: &ParamPath, p: &mut Param<F>| {
                p.zero_grad();
                Ok(())
            },
        );
    }

    /// Bakes every parametrization into its parameter's stored value.
    fn bake(&mut self) {
        let _ = self.visit_mut(
            &mut ParamPath::root(),
            &mut |_: &ParamPath, p: &mut Param<F>| {
                p.bake();
                Ok(())
            },
        );
    }
}

impl<F: Float, M: Module<F> + ?Sized> Module<F> for Box<M> {
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>) {
        (**self).visit(path, visitor);
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        (**self).visit_mut(path, visitor)
    }
}

impl<F: Float, M: Module<F>> Module<F> for Vec<M> {
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>) {
        for (i, m) in self.iter().enumerate() {
            path.scoped(&i.to_string(), |p| m.visit(p, visitor));
        }
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        for (i, m) in self.iter_mut().enumerate() {
            path.scoped(&i.to_string(), |p| m.visit_mut(p, visitor))?;
        }
        Ok(())
    }
}

/// `None` has no parameters; `Some(m)` adds no path segment (`bias`, not `bias.Some`).
impl<F: Float, M: Module<F>> Module<F> for Option<M> {
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>) {
        if let Some(m) = self {
            m.visit(path, visitor);
        }
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        match self {
            Some(m) => m.visit_mut(path, visitor),
            None => Ok(()),
        }
    }
}

/// A bare parameter is a module with one parameter at the current path.
impl<F: Float> Module<F> for Param<F> {
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>) {
        visitor.visit(path, self);
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        visitor.visit_mut(path, self)
    }
}

/// An ordered list of named parameters: the simplest [`Module`], for checkpoints and tests.
///
/// Names may contain dots; they become the visited paths as given.
#[derive(Debug, Clone, Default)]
pub struct ParamDict<F: Float> {
    entries: Vec<(String, Param<F>)>,
}

impl<F: Float> ParamDict<F> {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Appends a parameter (replacing one of the same name).
    pub fn insert(&mut self, name: impl Into<String>, param: Param<F>) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = param,
            None => self.entries.push((name, param)),
        }
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Param<F>> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// Mutable access to the parameter called `name`.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Param<F>> {
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates `(name, param)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param<F>)> {
        self.entries.iter().map(|(n, p)| (n.as_str(), p))
    }
}

impl<F: Float> Module<F> for ParamDict<F> {
    fn visit(&self, path: &mut ParamPath, visitor: &mut dyn ParamVisitor<F>) {
        for (name, p) in &self.entries {
            path.scoped(name, |path| visitor.visit(path, p));
        }
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        visitor: &mut dyn ParamVisitorMut<F>,
    ) -> Result<()> {
        for (name, p) in &mut self.entries {
            path.scoped(name, |path| visitor.visit_mut(path, p))?;
        }
        Ok(())
    }
}

/// Assigns `state`'s values to `module`'s parameters by path (every parameter needs an entry
/// when `require_all`); returns how many were assigned.
fn assign_state<F: Float, M: Module<F> + ?Sized>(
    module: &mut M,
    state: &[(String, ArrayD<F>)],
    require_all: bool,
) -> Result<usize> {
    let map: std::collections::HashMap<&str, &ArrayD<F>> =
        state.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut set = 0;
    module.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            let key = path.to_string();
            let Some(v) = map.get(key.as_str()) else {
                return if require_all {
                    Err(CoreError::MissingParam { path: key })
                } else {
                    Ok(())
                };
            };
            if v.shape() != p.shape() {
                return Err(CoreError::shape(key, p.shape(), v.shape()));
            }
            p.value_mut().assign(*v);
            set += 1;
            Ok(())
        },
    )?;
    Ok(set)
}
