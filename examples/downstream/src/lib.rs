//! A user's crate that depends on the `netcompress` facade only (no sub-crate, no direct
//! ndarray, rand or proptest dependency), as a new user would write it. Its tests keep each
//! point of friction a first user met fixed; its example times a debug build.

use netcompress::core::{Module, Param, ParamPath, ParamVisitor, ParamVisitorMut, Result};
use netcompress::ndarray::{Array2, ArrayD};
use netcompress::rand::Rng;

/// A hand-written dense layer whose parameters are both made with `Param::new` (kind
/// `Weight`): the bias is recognised by its name and rank, not by its kind.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[out, in]`.
    pub weight: Param<f32>,
    /// `[out]`.
    pub bias: Param<f32>,
}

impl Dense {
    /// Uniform weights in `[-1/sqrt(in), 1/sqrt(in)]`, small biases.
    pub fn new(inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        let w = ArrayD::from_shape_fn(vec![outputs, inputs], |_| rng.random_range(-bound..bound));
        let b = ArrayD::from_shape_fn(vec![outputs], |_| rng.random_range(-0.1..0.1));
        Self {
            weight: Param::new(w),
            bias: Param::new(b),
        }
    }

    /// `x [n, in] -> x W^T + b`.
    ///
    /// # Errors
    ///
    /// A shape error if the weight is not a matrix or the bias not a vector.
    pub fn forward(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        Ok(x.dot(&self.weight.effective2()?.t()) + &self.bias.effective1()?)
    }
}

impl Module<f32> for Dense {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
        path.scoped("weight", |p| v.visit(p, &self.weight));
        path.scoped("bias", |p| v.visit(p, &self.bias));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
        path.scoped("weight", |p| v.visit_mut(p, &mut self.weight))?;
        path.scoped("bias", |p| v.visit_mut(p, &mut self.bias))
    }
}

/// Two hand-written dense layers; the walks come from `#[derive(Module)]`.
#[derive(Debug, Clone, netcompress::Module)]
#[module(float = f32)]
pub struct TwoLayer {
    /// First layer.
    pub fc1: Dense,
    /// Second layer.
    pub fc2: Dense,
}

impl TwoLayer {
    /// `inputs -> hidden -> outputs`.
    pub fn new(inputs: usize, hidden: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        Self {
            fc1: Dense::new(inputs, hidden, rng),
            fc2: Dense::new(hidden, outputs, rng),
        }
    }
}
