//! A chain of layers.

use compress_core::{
    Cost, CouplingGroup, Float, Layer, LayerSlot, Mode, Module, ParamPath, ParamVisitor,
    ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};

/// Layers applied in order; parameter paths are `0.weight`, `1.bias`, ...
#[derive(Debug, Default)]
pub struct Sequential<F: Float> {
    layers: Vec<Box<dyn Layer<F>>>,
}

impl<F: Float> Sequential<F> {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self { layers: Vec::new() }
    }

    /// Appends a layer (builder style).
    #[must_use]
    pub fn with(mut self, layer: impl Layer<F> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Layer<F> + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Appends an already boxed layer.
    pub fn push_boxed(&mut self, layer: Box<dyn Layer<F>>) {
        self.layers.push(layer);
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

    /// The layers, mutably (replace one with `layers_mut()[i] = Box::new(..)`).
    pub fn layers_mut(&mut self) -> &mut Vec<Box<dyn Layer<F>>> {
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

impl<F: Float> Module<F> for Sequential<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        for (i, l) in self.layers.iter().enumerate() {
            path.scoped(&i.to_string(), |p| l.visit(p, v));
        }
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            path.scoped(&i.to_string(), |p| l.visit_mut(p, v))?;
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
        let mut h = first.forward(x, mode)?;
        for l in it {
            h = l.forward_owned(h, mode)?;
        }
        Ok(h)
    }

    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let mut h = x;
        for l in &mut self.layers {
            h = l.forward_owned(h, mode)?;
        }
        Ok(h)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mut g = grad.to_owned();
        for l in self.layers.iter_mut().rev() {
            g = l.backward(&g)?;
        }
        Ok(g)
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
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.as_ref()))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        self.layers
            .iter_mut()
            .enumerate()
            .map(|(i, l)| (i.to_string(), LayerSlot::Boxed(l)))
            .collect()
    }
}
