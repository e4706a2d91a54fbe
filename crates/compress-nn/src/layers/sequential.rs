//! A chain of layers, each under a name (its index unless given one).

use super::{backward_chain, forward_chain};
use compress_core::{
    CoreError, Cost, CouplingGroup, Float, Layer, LayerSlot, Mode, Module, ParamPath, ParamVisitor,
    ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};

/// Layers applied in order, each under a name that is its parameter-path and layer-path
/// segment: its index for [`push`](Self::push) / [`with`](Self::with) (`0.weight`,
/// `1.bias`, ...), or the name given to [`push_named`](Self::push_named) /
/// [`with_named`](Self::with_named) (`depthwise.weight`, `bn1.running_mean`, ...).
#[derive(Debug, Default)]
pub struct Sequential<F: Float> {
    layers: Vec<Box<dyn Layer<F>>>,
    /// `None` for a layer named by its (current) index.
    names: Vec<Option<String>>,
}

impl<F: Float> Sequential<F> {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self {
            layers: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Appends a layer named by its index (builder style).
    #[must_use]
    pub fn with(mut self, layer: impl Layer<F> + 'static) -> Self {
        self.push(layer);
        self
    }

    /// Appends a named layer (builder style).
    ///
    /// # Errors
    ///
    /// As [`push_named`](Self::push_named).
    pub fn with_named(
        mut self,
        name: impl Into<String>,
        layer: impl Layer<F> + 'static,
    ) -> Result<Self> {
        self.push_named(name, layer)?;
        Ok(self)
    }

    /// Appends a layer named by its index.
    pub fn push(&mut self, layer: impl Layer<F> + 'static) {
        self.push_boxed(Box::new(layer));
    }

    /// Appends an already boxed layer named by its index.
    pub fn push_boxed(&mut self, layer: Box<dyn Layer<F>>) {
        self.names.push(None);
        self.layers.push(layer);
    }

    /// Inserts a layer named by its index at position `index` (layers named by their
    /// index after it are renamed with their new index).
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (parameter `index`) when `index > len()`.
    pub fn insert_boxed(&mut self, index: usize, layer: Box<dyn Layer<F>>) -> Result<()> {
        if index > self.layers.len() {
            return Err(CoreError::config(
                "index",
                format!("{index} > {} layers", self.layers.len()),
            ));
        }
        self.names.insert(index, None);
        self.layers.insert(index, layer);
        Ok(())
    }

    /// Appends a layer under `name`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] (parameter `name`) when the name is empty, contains a
    /// `.` (the path separator) or is already taken.
    pub fn push_named(
        &mut self,
        name: impl Into<String>,
        layer: impl Layer<F> + 'static,
    ) -> Result<()> {
        self.push_named_boxed(name, Box::new(layer))
    }

    /// Appends an already boxed layer under `name`.
    ///
    /// # Errors
    ///
    /// As [`push_named`](Self::push_named).
    pub fn push_named_boxed(
        &mut self,
        name: impl Into<String>,
        layer: Box<dyn Layer<F>>,
    ) -> Result<()> {
        let name = name.into();
        let index_like = name.bytes().all(|b| b.is_ascii_digit());
        if index_like || name.contains('.') || self.names.iter().flatten().any(|n| *n == name) {
            return Err(CoreError::config(
                "name",
                format!(
                    "layer name {name:?} must be non-empty, not a number (those name layers by \
                     index), without '.', and unique (taken: {:?})",
                    self.names()
                ),
            ));
        }
        self.names.push(Some(name));
        self.layers.push(layer);
        Ok(())
    }

    /// The layers' names, in order (a layer without a name is named by its index).
    pub fn names(&self) -> Vec<String> {
        (0..self.names.len()).map(|i| self.name_of(i)).collect()
    }

    /// The name of layer `i` (its index when it has none).
    fn name_of(&self, i: usize) -> String {
        match &self.names[i] {
            Some(n) => n.clone(),
            None => i.to_string(),
        }
    }

    /// The layer called `name` as concrete type `T`, if there is one of that type.
    pub fn get_named<T: Layer<F>>(&self, name: &str) -> Option<&T> {
        let i = (0..self.names.len()).find(|&i| self.name_of(i) == name)?;
        self.get(i)
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer<F>>] {
        &self.layers
    }

    /// The layers, mutably (replace one with `layers_mut()[i] = Box::new(..)`; the names
    /// stay).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<F>>] {
        &mut self.layers
    }

    /// Layer `i` as concrete type `T`, if it is one.
    pub fn get<T: Layer<F>>(&self, i: usize) -> Option<&T> {
        self.layers.get(i)?.as_ref().as_any().downcast_ref::<T>()
    }

    /// Layer `i` as concrete type `T`, mutably.
    pub fn get_mut<T: Layer<F>>(&mut self, i: usize) -> Option<&mut T> {
        self.layers
            .get_mut(i)?
            .as_mut()
            .as_any_mut()
            .downcast_mut::<T>()
    }

    /// Per-layer costs for one sample of `input_shape`, in order.
    ///
    /// # Errors
    ///
    /// The first layer that cannot take its input shape.
    pub fn layer_costs(&self, input_shape: &[usize]) -> Result<Vec<Cost>> {
        let mut shape = input_shape.to_vec();
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let c = l.cost(&shape)?;
            shape.clone_from(&c.output_shape);
            out.push(c);
        }
        Ok(out)
    }
}

impl<F: Float> Sequential<F> {
    /// Per-layer `(name, cost)` for one sample of `input_shape`, in order.
    ///
    /// # Errors
    ///
    /// The first layer that cannot take its input shape.
    pub fn named_costs(&self, input_shape: &[usize]) -> Result<Vec<(String, Cost)>> {
        Ok(self
            .names()
            .into_iter()
            .zip(self.layer_costs(input_shape)?)
            .collect())
    }
}

impl<F: Float> Module<F> for Sequential<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        for (i, l) in self.layers.iter().enumerate() {
            path.scoped(&self.name_of(i), |p| l.visit(p, v));
        }
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        let names = self.names();
        for (n, l) in names.iter().zip(&mut self.layers) {
            path.scoped(n, |p| l.visit_mut(p, v))?;
        }
        Ok(())
    }
}

impl<F: Float> Layer<F> for Sequential<F> {
    fn name(&self) -> &'static str {
        "Sequential"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let mut it = self.layers.iter_mut();
        let Some(first) = it.next() else {
            return Ok(x.to_owned());
        };
        let h = first.forward(x, mode)?;
        forward_chain(it, h, mode)
    }

    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        forward_chain(&mut self.layers, x, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        backward_chain(&mut self.layers, grad)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(self
            .layer_costs(input_shape)?
            .into_iter()
            .fold(Cost::passthrough(input_shape), Cost::then))
    }

    /// One group per `Linear` or dense `Conv2d` whose output units reach a later `Linear`
    /// or dense `Conv2d` through activations, dropout, pools, batch norms (which follow),
    /// a flatten (a channel becomes a block of columns) and depthwise convs (a channel
    /// becomes its `mult` filters). The group is named by the producer's index.
    fn coupling_groups(&self, input_shape: &[usize]) -> Result<Vec<CouplingGroup>> {
        super::coupling::sequential_groups(self, input_shape)
    }

    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        self.names()
            .into_iter()
            .zip(&self.layers)
            .map(|(n, l)| (n, l.as_ref()))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        self.names()
            .into_iter()
            .zip(&mut self.layers)
            .map(|(n, l)| (n, LayerSlot::Boxed(l)))
            .collect()
    }
}
