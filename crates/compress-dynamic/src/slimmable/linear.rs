//! A fully connected layer that runs on its first `ceil(w * C)` channels.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Param, TensorExt};
use ndarray::{Array2, ArrayD, ArrayRef, Axis, Ix1, Ix2, IxDyn, s};
use rand::Rng;

use super::width::{SlimSides, Slimmable};
use crate::Result;

/// `y = x W[:o, :i]^T + b[:o]`, with `o = ceil(w * out)` when the output is slimmable and
/// `i = ceil(w * in)` when the input is (it follows the previous layer's active width).
///
/// The first layer of a network keeps its input fixed (`slim_in = false`) and the
/// classifier keeps its output fixed (`slim_out = false`). Parameter paths as
/// [`compress_nn::Linear`]: `weight` `[out, in]`, `bias` `[out]`.
///
/// # Shapes
///
/// - input: `[batch, active_in]`
/// - output: `[batch, active_out]`
///
/// ```
/// use compress_core::Layer;
/// use compress_dynamic::{Slimmable, SlimmableLinear};
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut l = SlimmableLinear::<f32>::new(64, 128, false, true, true, &mut rng);
/// l.set_width(0.25)?;
/// assert_eq!(l.active_out(), 32);
/// assert_eq!(l.cost(&[64])?.macs, 64 * 32);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Module)]
pub struct SlimmableLinear<F: Float> {
    /// Weight `[out, in]` at full width.
    pub weight: Param<F>,
    /// Optional bias `[out]` at full width.
    pub bias: Option<Param<F>>,
    #[module(skip)]
    slim: SlimSides,
    #[module(skip)]
    input: Option<Array2<F>>,
}

impl<F: Float> SlimmableLinear<F> {
    /// A layer with PyTorch's default initialisation (uniform in `±1/sqrt(in)`).
    pub fn new<R: Rng + ?Sized>(
        in_features: usize,
        out_features: usize,
        slim_in: bool,
        slim_out: bool,
        bias: bool,
        rng: &mut R,
    ) -> Self {
        let l = compress_nn::Linear::new(in_features, out_features, bias, rng);
        Self {
            weight: l.weight,
            bias: l.bias,
            slim: SlimSides::new(slim_in, slim_out),
            input: None,
        }
    }

    /// Input features at full width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output features at full width.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Input features at the current width.
    pub fn active_in(&self) -> usize {
        self.slim.active_in(self.in_features())
    }

    /// Output features at the current width.
    pub fn active_out(&self) -> usize {
        self.slim.active_out(self.out_features())
    }

    fn check_input(&self, shape: &[usize]) -> Result<()> {
        if shape.len() != 2 || shape[1] != self.active_in() {
            let n = shape.first().copied().unwrap_or(0);
            return Err(
                CoreError::shape("SlimmableLinear input", &[n, self.active_in()], shape).into(),
            );
        }
        Ok(())
    }
}

impl<F: Float> Slimmable for SlimmableLinear<F> {
    fn set_width(&mut self, w: f64) -> Result<()> {
        self.slim.set_width(w)?;
        self.input = None;
        Ok(())
    }

    fn width(&self) -> f64 {
        self.slim.width()
    }
}

impl<F: Float> Layer<F> for SlimmableLinear<F> {
    fn name(&self) -> &'static str {
        "SlimmableLinear"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        self.check_input(x.shape())
            .map_err(|e| e.into_core("SlimmableLinear"))?;
        let (i, o) = (self.active_in(), self.active_out());
        let x2 = x.view().into_dimensionality::<Ix2>()?;
        let w = self.weight.effective();
        let w = w.view().into_dimensionality::<Ix2>()?;
        let mut y = x2.dot(&w.slice(s![..o, ..i]).t());
        if let Some(b) = &self.bias {
            let b = b.effective();
            y += &b.view().into_dimensionality::<Ix1>()?.slice(s![..o]);
        }
        self.input = (mode == Mode::Train).then(|| x2.to_owned());
        Ok(y.into_dyn())
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let x = self
            .input
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("SlimmableLinear"))?;
        let (i, o) = (self.active_in(), self.active_out());
        if grad.shape() != [x.nrows(), o] {
            return Err(CoreError::shape(
                "SlimmableLinear grad",
                &[x.nrows(), o],
                grad.shape(),
            ));
        }
        let g = grad.view().into_dimensionality::<Ix2>()?;
        let w = self
            .weight
            .effective()
            .into_owned()
            .into_dimensionality::<Ix2>()?;
        let dx = g.dot(&w.slice(s![..o, ..i]));
        let mut gw = self.weight.zeros_like();
        gw.slice_mut(s![..o, ..i]).assign(&g.t().dot(x));
        self.weight.accumulate_grad(gw)?;
        if let Some(b) = &mut self.bias {
            let mut gb = b.zeros_like();
            gb.slice_mut(s![..o]).assign(&g.sum_axis(Axis(0)));
            b.accumulate_grad(gb)?;
        }
        Ok(dx.into_dyn())
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let (i, o) = (self.active_in(), self.active_out());
        if input_shape != [i] {
            return Err(CoreError::shape("SlimmableLinear input", &[i], input_shape));
        }
        let w = self.weight.effective();
        let nz_w = w.slice(s![..o, ..i]).count_nonzero();
        let (nb, nz_b) = self.bias.as_ref().map_or((0, 0), |b| {
            let e = b.effective();
            (o, e.slice(s![..o]).count_nonzero())
        });
        Ok(Cost {
            output_shape: vec![o],
            params: o * i + nb,
            nonzero_params: nz_w + nz_b,
            macs: (o * i) as u64,
        })
    }
}
