//! A network of slimmable layers switched to one width at a time.

use compress_core::{
    CoreError, Cost, Float, Layer, Mode, Module, ParamPath, ParamVisitor, ParamVisitorMut,
};
use compress_nn::ReLU;
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;

use super::width::{Slimmable, WIDTH_EPS, check_width, width_index};
use super::{SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm};
use crate::Result;

/// One layer of a [`SlimmableNet`].
#[derive(Debug)]
pub enum SlimLayer<F: Float> {
    /// A slimmable fully connected layer.
    Linear(SlimmableLinear<F>),
    /// A slimmable convolution.
    Conv(SlimmableConv2d<F>),
    /// Switchable batch normalisation.
    Norm(SwitchableBatchNorm<F>),
    /// A width-agnostic layer (activation, pooling, flatten): runs on whatever it gets.
    Fixed(Box<dyn Layer<F>>),
}

impl<F: Float> SlimLayer<F> {
    fn layer(&self) -> &dyn Layer<F> {
        match self {
            Self::Linear(l) => l,
            Self::Conv(l) => l,
            Self::Norm(l) => l,
            Self::Fixed(l) => l.as_ref(),
        }
    }

    fn layer_mut(&mut self) -> &mut dyn Layer<F> {
        match self {
            Self::Linear(l) => l,
            Self::Conv(l) => l,
            Self::Norm(l) => l,
            Self::Fixed(l) => l.as_mut(),
        }
    }

    fn set_width(&mut self, w: f64) -> Result<()> {
        match self {
            Self::Linear(l) => l.set_width(w),
            Self::Conv(l) => l.set_width(w),
            Self::Norm(l) => l.set_width(w),
            Self::Fixed(_) => Ok(()),
        }
    }
}

/// A chain of slimmable layers that runs at any of its configured widths
/// (Yu et al., Slimmable Networks). Parameter paths are `0.weight`, `1.bn.0.weight`, ...
/// as in [`compress_nn::Sequential`].
///
/// ```
/// use compress_core::Layer;
/// use compress_dynamic::SlimmableNet;
/// use rand::{SeedableRng, rngs::StdRng};
/// # fn main() -> compress_dynamic::Result<()> {
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = SlimmableNet::<f32>::mlp(&[64, 128, 10], &[0.25, 1.0], true, &mut rng)?;
/// assert_eq!(net.cost(&[64])?.macs, 64 * 128 + 128 + 128 * 10);
/// net.set_width(0.25)?;
/// assert_eq!(net.cost(&[64])?.macs, 64 * 32 + 32 + 32 * 10);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SlimmableNet<F: Float> {
    layers: Vec<SlimLayer<F>>,
    widths: Vec<f64>,
    width: f64,
}

impl<F: Float> SlimmableNet<F> {
    /// An empty network for the configured `widths` (sorted ascending, deduplicated).
    ///
    /// # Errors
    ///
    /// No widths, or a width outside `(0, 1]`.
    pub fn new(widths: &[f64]) -> Result<Self> {
        if widths.is_empty() {
            return Err(CoreError::config("widths", "at least one width is needed").into());
        }
        for &w in widths {
            check_width(w)?;
        }
        let mut ws = widths.to_vec();
        ws.sort_by(f64::total_cmp);
        ws.dedup_by(|a, b| (*a - *b).abs() <= WIDTH_EPS);
        let width = ws[ws.len() - 1];
        Ok(Self {
            layers: Vec::new(),
            widths: ws,
            width,
        })
    }

    /// A slimmable ReLU MLP with layer sizes `dims` (e.g. `[64, 128, 128, 10]`): input and
    /// output fixed, hidden layers slimmable; with `batch_norm`, a switchable batch norm
    /// after every hidden linear layer (before the ReLU).
    ///
    /// # Errors
    ///
    /// Fewer than two sizes, or bad widths.
    pub fn mlp<R: Rng + ?Sized>(
        dims: &[usize],
        widths: &[f64],
        batch_norm: bool,
        rng: &mut R,
    ) -> Result<Self> {
        if dims.len() < 2 {
            return Err(CoreError::config(
                "dims",
                format!("an MLP needs at least 2 sizes, got {dims:?}"),
            )
            .into());
        }
        let mut net = Self::new(widths)?;
        let last = dims.len() - 2;
        for (i, d) in dims.windows(2).enumerate() {
            net.push(SlimLayer::Linear(SlimmableLinear::new(
                d[0],
                d[1],
                i > 0,
                i < last,
                true,
                rng,
            )))?;
            if i < last {
                if batch_norm {
                    net.push(SlimLayer::Norm(SwitchableBatchNorm::new(
                        d[1],
                        &net.widths.clone(),
                    )?))?;
                }
                net.push(SlimLayer::Fixed(Box::new(ReLU::new())))?;
            }
        }
        Ok(net)
    }

    /// Appends a layer (switched to the network's current width).
    ///
    /// # Errors
    ///
    /// A batch norm that lacks one of the network's widths.
    pub fn push(&mut self, mut layer: SlimLayer<F>) -> Result<()> {
        if let SlimLayer::Norm(bn) = &layer {
            for &w in &self.widths {
                width_index("SwitchableBatchNorm", bn.widths(), w)?;
            }
        }
        layer.set_width(self.width)?;
        self.layers.push(layer);
        Ok(())
    }

    /// The configured widths, ascending.
    pub fn widths(&self) -> &[f64] {
        &self.widths
    }

    /// The current width.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// The layers.
    pub fn layers(&self) -> &[SlimLayer<F>] {
        &self.layers
    }

    /// The layers, mutably.
    pub fn layers_mut(&mut self) -> &mut [SlimLayer<F>] {
        &mut self.layers
    }

    /// Switches every layer to width `w` (one of [`SlimmableNet::widths`]).
    ///
    /// # Errors
    ///
    /// [`DynamicError::UnknownWidth`](crate::DynamicError::UnknownWidth) for a width not configured.
    pub fn set_width(&mut self, w: f64) -> Result<()> {
        let i = width_index("SlimmableNet", &self.widths, w)?;
        let w = self.widths[i];
        for l in &mut self.layers {
            l.set_width(w)?;
        }
        self.width = w;
        Ok(())
    }

    /// Adds a new width (universally slimmable use): every switchable batch norm gets a
    /// fresh entry for it (recalibrate it with [`recalibrate_bn`](crate::recalibrate_bn)
    /// before use).
    ///
    /// # Errors
    ///
    /// A width outside `(0, 1]`.
    pub fn add_width(&mut self, w: f64) -> Result<()> {
        check_width(w)?;
        if width_index("", &self.widths, w).is_ok() {
            return Ok(());
        }
        for l in &mut self.layers {
            if let SlimLayer::Norm(bn) = l {
                bn.add_width(w)?;
            }
        }
        self.widths.push(w);
        self.widths.sort_by(f64::total_cmp);
        Ok(())
    }

    /// MACs per sample of `input_shape` at width `w` (the current width is restored).
    ///
    /// # Errors
    ///
    /// An unknown width or a shape that does not fit.
    pub fn macs_at(&mut self, w: f64, input_shape: &[usize]) -> Result<u64> {
        let before = self.width;
        self.set_width(w)?;
        let c = self.cost(input_shape);
        self.set_width(before)?;
        Ok(c?.macs)
    }

    /// Sets the momentum of every switchable batch norm (`None` = cumulative average).
    ///
    /// # Errors
    ///
    /// A momentum outside `(0, 1]`.
    pub fn set_bn_momentum(&mut self, momentum: Option<f64>) -> Result<()> {
        for l in &mut self.layers {
            if let SlimLayer::Norm(bn) = l {
                bn.set_momentum(momentum)?;
            }
        }
        Ok(())
    }

    /// Resets the running statistics of every switchable batch norm at the current width.
    pub fn reset_bn_stats(&mut self) {
        for l in &mut self.layers {
            if let SlimLayer::Norm(bn) = l {
                bn.reset_running_stats();
            }
        }
    }

    /// Whether the network has any switchable batch norm.
    pub fn has_bn(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, SlimLayer::Norm(_)))
    }
}

impl<F: Float> Module<F> for SlimmableNet<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        for (i, l) in self.layers.iter().enumerate() {
            path.scoped(&i.to_string(), |p| l.layer().visit(p, v));
        }
    }

    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            path.scoped(&i.to_string(), |p| l.layer_mut().visit_mut(p, v))?;
        }
        Ok(())
    }
}

/// The network at its current width.
impl<F: Float> Layer<F> for SlimmableNet<F> {
    fn name(&self) -> &'static str {
        "SlimmableNet"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        let mut h = x.to_owned();
        for l in &mut self.layers {
            h = l.layer_mut().forward(&h, mode)?;
        }
        Ok(h)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let mut g = grad.to_owned();
        for l in self.layers.iter_mut().rev() {
            g = l.layer_mut().backward(&g)?;
        }
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let mut c = Cost::passthrough(input_shape);
        for l in &self.layers {
            c = c.clone().then(l.layer().cost(&c.output_shape)?);
        }
        Ok(c)
    }
}
