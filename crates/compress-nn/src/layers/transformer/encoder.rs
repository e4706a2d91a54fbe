//! Transformer encoder layer (post-LN as BERT, or pre-LN) and a stack of them.

use compress_core::{
    CoreError, Cost, Float, Layer, LayerSlot, Mode, Module, ParamPath, ParamVisitor,
    ParamVisitorMut, Result,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::{Gelu, GeluKind, LayerNorm, MultiHeadAttention, PaddingMask, check_mask, to_tokens};
use crate::Linear;

/// Shape and options of a transformer encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    /// Model width (`hidden_size`).
    pub hidden: usize,
    /// Attention heads (`num_attention_heads`); must divide `hidden`.
    pub heads: usize,
    /// Feed-forward width (`intermediate_size`).
    pub intermediate: usize,
    /// Number of encoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// LayerNorm epsilon (`layer_norm_eps`; BERT `1e-12`).
    pub layer_norm_eps: f64,
    /// Feed-forward activation (`hidden_act`).
    pub activation: GeluKind,
    /// `false`: post-LN, `LN(x + f(x))`, as BERT. `true`: pre-LN, `x + f(LN(x))`, as ViT and
    /// CLIP.
    pub norm_first: bool,
    /// Standard deviation of the normal initialisation of weights (`initializer_range`;
    /// biases start at zero, LayerNorms at ones and zeros).
    pub init_std: f64,
}

impl TransformerConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming the field: a zero width, heads that do not
    /// divide `hidden`, a negative or non-finite eps or std.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("hidden_size", self.hidden),
            ("num_attention_heads", self.heads),
            ("intermediate_size", self.intermediate),
        ] {
            if v == 0 {
                return Err(CoreError::config(name, "must be at least 1, got 0"));
            }
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(CoreError::config(
                "num_attention_heads",
                format!(
                    "{} heads do not divide hidden size {}",
                    self.heads, self.hidden
                ),
            ));
        }
        for (name, v) in [
            ("layer_norm_eps", self.layer_norm_eps),
            ("initializer_range", self.init_std),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(CoreError::config(
                    name,
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// A `[out, in]` Linear with `N(0, std^2)` weights and zero bias (BERT's initialisation).
fn normal_linear<F: Float, R: Rng + ?Sized>(
    inp: usize,
    out: usize,
    std: f64,
    rng: &mut R,
) -> Result<Linear<F>> {
    let normal = Normal::new(0.0, std)
        .map_err(|e| CoreError::config("initializer_range", format!("{std}: {e}")))?;
    let w = ArrayD::from_shape_simple_fn(IxDyn(&[out, inp]), || F::lit(normal.sample(rng)));
    Ok(Linear::from_arrays(w, Some(ArrayD::zeros(IxDyn(&[out])))))
}

/// One encoder layer: self-attention and a feed-forward block, each with a residual
/// connection and a LayerNorm.
///
/// - post-LN (BERT): `h = LN1(x + Attn(x))`, `y = LN2(h + W2 act(W1 h))`;
/// - pre-LN: `h = x + Attn(LN1(x))`, `y = h + W2 act(W1 LN2(h))`.
///
/// Input and output `[batch, seq, hidden]`; the padding mask is set with
/// [`set_padding_mask`](Self::set_padding_mask). Parameter paths follow Hugging Face's
/// `BertLayer`: `attention.self.{query,key,value}`, `attention.output.dense`,
/// `attention.output.LayerNorm` (LN1), `intermediate.dense` (W1), `output.dense` (W2),
/// `output.LayerNorm` (LN2).
///
/// W1 and W2 are boxed layers ([`LayerSlot::Boxed`], as the attention's projections):
/// they start as [`Linear`]s and any layer with the same input and output widths can take
/// their place through [`compress_core::surgery::replace_layer`] (`intermediate.dense`,
/// `output.dense`).
#[derive(Debug)]
pub struct TransformerEncoderLayer<F: Float> {
    /// Self-attention with its output projection.
    pub attention: MultiHeadAttention<F>,
    /// LN1 (`attention.output.LayerNorm`).
    pub attention_norm: LayerNorm<F>,
    /// W1 (`intermediate.dense`).
    pub intermediate: Box<dyn Layer<F>>,
    /// The feed-forward activation.
    pub activation: Gelu<F>,
    /// W2 (`output.dense`).
    pub output: Box<dyn Layer<F>>,
    /// LN2 (`output.LayerNorm`).
    pub output_norm: LayerNorm<F>,
    intermediate_size: usize,
    norm_first: bool,
    batch_seq: Option<(usize, usize)>,
}

impl<F: Float> TransformerEncoderLayer<F> {
    /// A layer with BERT's initialisation (see [`TransformerConfig::init_std`]).
    ///
    /// # Errors
    ///
    /// As [`TransformerConfig::validate`].
    pub fn new<R: Rng + ?Sized>(cfg: &TransformerConfig, rng: &mut R) -> Result<Self> {
        cfg.validate()?;
        let (h, i, std) = (cfg.hidden, cfg.intermediate, cfg.init_std);
        let q = normal_linear(h, h, std, rng)?;
        let k = normal_linear(h, h, std, rng)?;
        let v = normal_linear(h, h, std, rng)?;
        let o = normal_linear(h, h, std, rng)?;
        Ok(Self {
            attention: MultiHeadAttention::from_linears(q, k, v, o, cfg.heads)?,
            attention_norm: LayerNorm::new(h, cfg.layer_norm_eps),
            intermediate: Box::new(normal_linear::<F, _>(h, i, std, rng)?),
            activation: Gelu::new(cfg.activation),
            output: Box::new(normal_linear::<F, _>(i, h, std, rng)?),
            output_norm: LayerNorm::new(h, cfg.layer_norm_eps),
            intermediate_size: i,
            norm_first: cfg.norm_first,
            batch_seq: None,
        })
    }

    /// Width of the feed-forward block (W1's outputs).
    pub fn intermediate_size(&self) -> usize {
        self.intermediate_size
    }

    /// Model width.
    pub fn hidden(&self) -> usize {
        self.attention.hidden()
    }

    /// Whether the layer is pre-LN.
    pub fn norm_first(&self) -> bool {
        self.norm_first
    }

    /// Sets (or clears) the padding mask used by the following forwards.
    pub fn set_padding_mask(&mut self, mask: Option<PaddingMask>) {
        self.attention.set_padding_mask(mask);
    }

    /// The feed-forward block `W2 act(W1 x)` on tokens `[n, hidden]`.
    fn ffn(&mut self, x: &ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let n = x.shape()[0];
        let i = self.intermediate.forward(x, mode)?;
        check_width("intermediate.dense", &i, n, self.intermediate_size)?;
        let a = self.activation.forward_owned(i, mode)?;
        let y = self.output.forward(&a, mode)?;
        check_width("output.dense", &y, n, self.hidden())?;
        Ok(y)
    }

    fn ffn_backward(&mut self, g: &ArrayD<F>) -> Result<ArrayD<F>> {
        let g = self.output.backward(g)?;
        let g = self.activation.backward(&g)?;
        self.intermediate.backward(&g)
    }
}

impl<F: Float> Module<F> for TransformerEncoderLayer<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("attention", |p| {
            self.attention.visit(p, v);
            p.scoped("output", |p| {
                p.scoped("LayerNorm", |p| self.attention_norm.visit(p, v));
            });
        });
        path.scoped("intermediate", |p| {
            p.scoped("dense", |p| self.intermediate.visit(p, v));
        });
        path.scoped("output", |p| {
            p.scoped("dense", |p| self.output.visit(p, v));
            p.scoped("LayerNorm", |p| self.output_norm.visit(p, v));
        });
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("attention", |p| {
            self.attention.visit_mut(p, v)?;
            p.scoped("output", |p| {
                p.scoped("LayerNorm", |p| self.attention_norm.visit_mut(p, v))
            })
        })?;
        path.scoped("intermediate", |p| {
            p.scoped("dense", |p| self.intermediate.visit_mut(p, v))
        })?;
        path.scoped("output", |p| {
            p.scoped("dense", |p| self.output.visit_mut(p, v))?;
            p.scoped("LayerNorm", |p| self.output_norm.visit_mut(p, v))
        })
    }
}

impl<F: Float> Layer<F> for TransformerEncoderLayer<F> {
    fn name(&self) -> &'static str {
        "TransformerEncoderLayer"
    }

    /// The sub-layers, named as their parameter paths (`attention`,
    /// `attention.output.LayerNorm`, `intermediate.dense`, `intermediate.act` (the GELU),
    /// `output.dense`, `output.LayerNorm`); the two dense layers are [`LayerSlot::Boxed`]
    /// (replaceable), the others [`LayerSlot::Fixed`].
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        vec![
            ("attention".into(), &self.attention as &dyn Layer<F>),
            ("attention.output.LayerNorm".into(), &self.attention_norm),
            ("intermediate.dense".into(), self.intermediate.as_ref()),
            ("intermediate.act".into(), &self.activation),
            ("output.dense".into(), self.output.as_ref()),
            ("output.LayerNorm".into(), &self.output_norm),
        ]
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        vec![
            ("attention".into(), LayerSlot::Fixed(&mut self.attention)),
            (
                "attention.output.LayerNorm".into(),
                LayerSlot::Fixed(&mut self.attention_norm),
            ),
            (
                "intermediate.dense".into(),
                LayerSlot::Boxed(&mut self.intermediate),
            ),
            (
                "intermediate.act".into(),
                LayerSlot::Fixed(&mut self.activation),
            ),
            ("output.dense".into(), LayerSlot::Boxed(&mut self.output)),
            (
                "output.LayerNorm".into(),
                LayerSlot::Fixed(&mut self.output_norm),
            ),
        ]
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let h = self.hidden();
        let (batch, seq, x2) = to_tokens(x, h, "TransformerEncoderLayer input")?;
        check_mask(self.attention.padding_mask(), batch, seq)?;
        let x3 = x2.into_shape_with_order(IxDyn(&[batch, seq, h]))?;
        let tokens = IxDyn(&[batch * seq, h]);
        let y = if self.norm_first {
            let n1 = self.attention_norm.forward(&x3, mode)?;
            let mut h1 = self.attention.forward(&n1, mode)?;
            h1 += &x3;
            let h1 = h1.into_shape_with_order(tokens)?;
            let n2 = self.output_norm.forward(&h1, mode)?;
            let mut y = self.ffn(&n2, mode)?;
            y += &h1;
            y
        } else {
            let mut a = self.attention.forward(&x3, mode)?;
            a += &x3;
            let h1 = self
                .attention_norm
                .forward_owned(a, mode)?
                .into_shape_with_order(tokens)?;
            let mut o = self.ffn(&h1, mode)?;
            o += &h1;
            self.output_norm.forward_owned(o, mode)?
        };
        self.batch_seq = (mode == Mode::Train).then_some((batch, seq));
        Ok(y.into_shape_with_order(IxDyn(&[batch, seq, h]))?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let h = self.hidden();
        let (batch, seq) = self
            .batch_seq
            .ok_or_else(|| CoreError::no_forward("TransformerEncoderLayer"))?;
        if grad.shape() != [batch, seq, h] {
            return Err(CoreError::shape(
                "TransformerEncoderLayer grad",
                &[batch, seq, h],
                grad.shape(),
            ));
        }
        let g = grad
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[batch * seq, h]))?;
        let seq3 = IxDyn(&[batch, seq, h]);
        let dx = if self.norm_first {
            let gn2 = self.ffn_backward(&g)?;
            let mut gh1 = self.output_norm.backward(&gn2)?;
            gh1 += &g;
            let gh1 = gh1.into_shape_with_order(seq3)?;
            let ga = self.attention.backward(&gh1)?;
            let mut dx = self.attention_norm.backward(&ga)?;
            dx += &gh1;
            dx
        } else {
            let gs = self.output_norm.backward(&g)?;
            let mut gh1 = self.ffn_backward(&gs)?;
            gh1 += &gs;
            let gh1 = gh1.into_shape_with_order(seq3)?;
            let ga = self.attention_norm.backward(&gh1)?;
            let mut dx = self.attention.backward(&ga)?;
            dx += &ga;
            dx
        };
        Ok(dx)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let seq = input_shape.first().copied().unwrap_or(0);
        let mut cost = self.attention.cost(input_shape)?;
        let n1 = self.attention_norm.cost(input_shape)?;
        let ffn = self
            .intermediate
            .cost(&[self.hidden()])?
            .then(self.output.cost(&[self.intermediate_size])?);
        let n2 = self.output_norm.cost(input_shape)?;
        cost.params += n1.params + ffn.params + n2.params;
        cost.nonzero_params += n1.nonzero_params + ffn.nonzero_params + n2.nonzero_params;
        cost.macs += n1.macs + ffn.macs * seq as u64 + n2.macs;
        Ok(cost)
    }
}

/// `y` must be `[n, width]`: a replaced projection with other widths is a typed error.
fn check_width<F: Float>(name: &str, y: &ArrayD<F>, n: usize, width: usize) -> Result<()> {
    if y.shape() != [n, width] {
        return Err(CoreError::shape(
            format!("{name} output"),
            &[n, width],
            y.shape(),
        ));
    }
    Ok(())
}

/// A stack of [`TransformerEncoderLayer`]s, visited as `layer.0`, `layer.1`, ... (Hugging
/// Face's `BertEncoder`).
#[derive(Debug, compress_core::derive::Module)]
pub struct TransformerEncoder<F: Float> {
    /// The layers, first to last.
    #[module(rename = "layer")]
    pub layers: Vec<TransformerEncoderLayer<F>>,
}

impl<F: Float> TransformerEncoder<F> {
    /// `cfg.layers` freshly initialised layers.
    ///
    /// # Errors
    ///
    /// As [`TransformerConfig::validate`].
    pub fn new<R: Rng + ?Sized>(cfg: &TransformerConfig, rng: &mut R) -> Result<Self> {
        let layers = (0..cfg.layers)
            .map(|_| TransformerEncoderLayer::new(cfg, rng))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Sets (or clears) the padding mask of every layer.
    pub fn set_padding_mask(&mut self, mask: Option<PaddingMask>) {
        for l in &mut self.layers {
            l.set_padding_mask(mask.clone());
        }
    }
}

impl<F: Float> Layer<F> for TransformerEncoder<F> {
    fn name(&self) -> &'static str {
        "TransformerEncoder"
    }

    /// `layer.0`, `layer.1`, ... ([`LayerSlot::Fixed`]).
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("layer.{i}"), l as &dyn Layer<F>))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        self.layers
            .iter_mut()
            .enumerate()
            .map(|(i, l)| (format!("layer.{i}"), LayerSlot::Fixed(l)))
            .collect()
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        self.forward_owned(x.to_owned(), mode)
    }

    fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        crate::layers::forward_chain(&mut self.layers, x, mode)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        crate::layers::backward_chain(&mut self.layers, grad)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let mut cost = Cost::passthrough(input_shape);
        for l in &self.layers {
            cost = cost.then(l.cost(input_shape)?);
        }
        Ok(cost)
    }
}
