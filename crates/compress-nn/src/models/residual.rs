//! A residual MLP written the way a user writes their own model: plain fields, hand-written
//! `Module` and `Layer` impls, children for surgery and declared coupling groups.

use compress_core::{
    Cost, Coupled, CouplingGroup, CouplingRole, Float, Layer, LayerSlot, Mode, Module, ParamPath,
    ParamVisitor, ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use crate::{Linear, ReLU};

/// `h + fc2(relu(fc1(h)))`: one residual block of a [`ResidualMlp`]. The two `Linear`s are
/// boxed so that surgery can replace them (CSR, quantized, low-rank layers).
#[derive(Debug)]
pub struct ResidualBlock<F: Float> {
    /// `[hidden, width]` expansion.
    pub fc1: Box<dyn Layer<F>>,
    /// The activation between them (a fixed field: it never changes type).
    pub act: ReLU<F>,
    /// `[width, hidden]` projection back into the residual stream.
    pub fc2: Box<dyn Layer<F>>,
}

impl<F: Float> ResidualBlock<F> {
    /// A block on a stream of `width` features with `hidden` inner units.
    pub fn new<R: Rng + ?Sized>(width: usize, hidden: usize, rng: &mut R) -> Self {
        Self {
            fc1: Box::new(Linear::new(width, hidden, true, rng)),
            act: ReLU::new(),
            fc2: Box::new(Linear::new(hidden, width, true, rng)),
        }
    }
}

impl<F: Float> Module<F> for ResidualBlock<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("fc1", |p| self.fc1.visit(p, v));
        path.scoped("fc2", |p| self.fc2.visit(p, v));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("fc1", |p| self.fc1.visit_mut(p, v))?;
        path.scoped("fc2", |p| self.fc2.visit_mut(p, v))
    }
}

impl<F: Float> Layer<F> for ResidualBlock<F> {
    fn name(&self) -> &'static str {
        "ResidualBlock"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let h = self.fc1.forward(x, mode)?;
        let h = self.act.forward_owned(h, mode)?;
        let mut y = self.fc2.forward_owned(h, mode)?;
        y.zip_mut_with(x, |a, &b| *a += b);
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let g = self.fc2.backward(grad)?;
        let g = self.act.backward(&g)?;
        let mut g = self.fc1.backward(&g)?;
        g.zip_mut_with(grad, |a, &b| *a += b);
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let c1 = self.fc1.cost(input_shape)?;
        let ca = self.act.cost(&c1.output_shape)?;
        let c2 = self.fc2.cost(&ca.output_shape)?;
        Ok(Cost::passthrough(input_shape).then(c1).then(ca).then(c2))
    }

    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        vec![
            ("fc1".into(), self.fc1.as_ref()),
            ("act".into(), &self.act),
            ("fc2".into(), self.fc2.as_ref()),
        ]
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        vec![
            ("fc1".into(), LayerSlot::Boxed(&mut self.fc1)),
            ("act".into(), LayerSlot::Fixed(&mut self.act)),
            ("fc2".into(), LayerSlot::Boxed(&mut self.fc2)),
        ]
    }

    /// The hidden units: `fc1` rows and bias, `fc2` columns.
    fn coupling_groups(&self, _input_shape: &[usize]) -> Result<Vec<CouplingGroup>> {
        Ok(vec![
            CouplingGroup::new("hidden")
                .with(Coupled::new("fc1.weight", 0, CouplingRole::Produce))
                .with(Coupled::new("fc1.bias", 0, CouplingRole::Follow))
                .with(Coupled::new("fc2.weight", 1, CouplingRole::Consume)),
        ])
    }
}

/// `head(blocks(input(x)))` with residual blocks: a model that is not a `Sequential`.
/// Parameter and layer paths: `input`, `blocks.0.fc1`, `blocks.0.fc2`, ..., `head`.
///
/// It declares one coupling group per block's hidden units and one for the residual
/// stream: every layer writing into the stream (`input`, each `fc2`) must lose the same
/// features as every layer reading it (each `fc1`, `head`).
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::models::ResidualMlp;
/// use ndarray::ArrayD;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut net = ResidualMlp::<f32>::new(8, 16, 32, 2, 3, &mut StdRng::seed_from_u64(0));
/// assert_eq!(net.forward(&ArrayD::zeros(vec![4, 8]), Mode::Eval).unwrap().shape(), &[4, 3]);
/// assert_eq!(net.coupling_groups(&[8]).unwrap().len(), 3);
/// ```
#[derive(Debug)]
pub struct ResidualMlp<F: Float> {
    /// `[width, in]`: input projection into the stream.
    pub input: Box<dyn Layer<F>>,
    /// The residual blocks.
    pub blocks: Vec<ResidualBlock<F>>,
    /// `[classes, width]`: the classifier reading the stream.
    pub head: Box<dyn Layer<F>>,
}

impl<F: Float> ResidualMlp<F> {
    /// `in_features -> width`, `depth` blocks with `hidden` units, `width -> classes`.
    pub fn new<R: Rng + ?Sized>(
        in_features: usize,
        width: usize,
        hidden: usize,
        depth: usize,
        classes: usize,
        rng: &mut R,
    ) -> Self {
        Self {
            input: Box::new(Linear::new(in_features, width, true, rng)),
            blocks: (0..depth)
                .map(|_| ResidualBlock::new(width, hidden, rng))
                .collect(),
            head: Box::new(Linear::new(width, classes, true, rng)),
        }
    }
}

impl<F: Float> Module<F> for ResidualMlp<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("input", |p| self.input.visit(p, v));
        path.scoped("blocks", |p| self.blocks.visit(p, v));
        path.scoped("head", |p| self.head.visit(p, v));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("input", |p| self.input.visit_mut(p, v))?;
        path.scoped("blocks", |p| self.blocks.visit_mut(p, v))?;
        path.scoped("head", |p| self.head.visit_mut(p, v))
    }
}

impl<F: Float> Layer<F> for ResidualMlp<F> {
    fn name(&self) -> &'static str {
        "ResidualMlp"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let mut h = self.input.forward(x, mode)?;
        for b in &mut self.blocks {
            h = b.forward(&h, mode)?;
        }
        self.head.forward_owned(h, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mut g = self.head.backward(grad)?;
        for b in self.blocks.iter_mut().rev() {
            g = b.backward(&g)?;
        }
        self.input.backward(&g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let mut c = Cost::passthrough(input_shape).then(self.input.cost(input_shape)?);
        for b in &self.blocks {
            let next = b.cost(&c.output_shape)?;
            c = c.then(next);
        }
        let head = self.head.cost(&c.output_shape)?;
        Ok(c.then(head))
    }

    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        let mut out: Vec<(String, &dyn Layer<F>)> = vec![("input".into(), self.input.as_ref())];
        for (i, b) in self.blocks.iter().enumerate() {
            out.push((format!("blocks.{i}"), b));
        }
        out.push(("head".into(), self.head.as_ref()));
        out
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        let mut out = vec![("input".into(), LayerSlot::Boxed(&mut self.input))];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            out.push((format!("blocks.{i}"), LayerSlot::Fixed(b)));
        }
        out.push(("head".into(), LayerSlot::Boxed(&mut self.head)));
        out
    }

    fn coupling_groups(&self, input_shape: &[usize]) -> Result<Vec<CouplingGroup>> {
        let mut groups = Vec::new();
        let mut stream = CouplingGroup::new("stream")
            .with(Coupled::new("input.weight", 0, CouplingRole::Produce))
            .with(Coupled::new("input.bias", 0, CouplingRole::Follow));
        for (i, b) in self.blocks.iter().enumerate() {
            let prefix = format!("blocks.{i}");
            for g in b.coupling_groups(input_shape)? {
                groups.push(g.prefixed(&prefix));
            }
            stream.members.extend([
                Coupled::new(format!("{prefix}.fc1.weight"), 1, CouplingRole::Consume),
                Coupled::new(format!("{prefix}.fc2.weight"), 0, CouplingRole::Produce),
                Coupled::new(format!("{prefix}.fc2.bias"), 0, CouplingRole::Follow),
            ]);
        }
        stream
            .members
            .push(Coupled::new("head.weight", 1, CouplingRole::Consume));
        groups.push(stream);
        Ok(groups)
    }
}
