//! `BertModel`: embeddings, encoder stack and optional pooler.

use compress_core::{
    CoreError, Cost, Float, Layer, LayerSlot, Mode, Module, ParamPath, ParamVisitor,
    ParamVisitorMut,
};
use compress_nn::{Linear, PaddingMask, TransformerEncoder};
use ndarray::{Array2, Array3, ArrayD, ArrayRef, Ix3, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

use crate::{BertConfig, BertEmbeddings, Result};

/// A BERT encoder: [`BertEmbeddings`], a post-LN [`TransformerEncoder`] and, when the
/// checkpoint has one, the pooler `tanh(W h_CLS + b)` (kept so that `state_dict`
/// round-trips with the file; sentence embeddings do not use it).
///
/// Parameter paths are Hugging Face's (`embeddings.word_embeddings.weight`,
/// `encoder.layer.0.attention.self.query.weight`, ..., `pooler.dense.weight`), so a
/// checkpoint loads by name and every technique that works on a [`Module`] works here.
///
/// # Token ids and masks
///
/// [`BertModel::forward`] takes `ids [batch, seq]` and a [`PaddingMask`] and returns the
/// last hidden states `[batch, seq, hidden]`; it sets the mask on every layer. As a
/// [`Layer`] (for code that only knows that trait), the input is `[batch, seq]` token ids
/// stored as floats with **negative values marking padding** (id 0, mask 0): the mask is
/// derived from the input, so nothing has to be set beforehand.
#[derive(Debug)]
pub struct BertModel<F: Float> {
    /// The configuration (kept in sync with the layers by the constructors).
    pub config: BertConfig,
    /// Input embeddings (`embeddings.*`).
    pub embeddings: BertEmbeddings<F>,
    /// The encoder stack (`encoder.layer.N.*`).
    pub encoder: TransformerEncoder<F>,
    /// The pooler's dense layer (`pooler.dense`), if any.
    pub pooler: Option<Linear<F>>,
    layer_batch: Option<(usize, usize)>,
}

impl<F: Float> BertModel<F> {
    /// A randomly initialised model (BERT's scheme: `N(0, initializer_range^2)` weights,
    /// zero biases, unit LayerNorms), with a pooler when `pooler`.
    ///
    /// # Errors
    ///
    /// [`crate::TransformerError::Unsupported`] when the sizes do not fit together.
    pub fn new<R: Rng + ?Sized>(cfg: &BertConfig, pooler: bool, rng: &mut R) -> Result<Self> {
        cfg.validate()?;
        let embeddings = BertEmbeddings::new(cfg, rng);
        let encoder = TransformerEncoder::new(&cfg.encoder_config(), rng)?;
        let pooler = pooler.then(|| {
            let h = cfg.hidden_size;
            // `validate` checked that the range is finite and >= 0.
            let std = cfg.initializer_range;
            let w = ArrayD::from_shape_simple_fn(IxDyn(&[h, h]), || {
                let z: f64 = StandardNormal.sample(rng);
                F::lit(z * std)
            });
            Linear::from_arrays(w, Some(ArrayD::zeros(IxDyn(&[h]))))
        });
        Ok(Self {
            config: cfg.clone(),
            embeddings,
            encoder,
            pooler,
            layer_batch: None,
        })
    }

    /// [`BertModel::new`] seeded, without a pooler: the model benches and tests use
    /// (e.g. `BertModel::<f32>::random(&BertConfig::minilm_l6(), 0)` for MiniLM's shapes).
    ///
    /// # Errors
    ///
    /// As [`BertModel::new`].
    pub fn random(cfg: &BertConfig, seed: u64) -> Result<Self> {
        Self::new(cfg, false, &mut StdRng::seed_from_u64(seed))
    }

    /// Model width.
    pub fn hidden(&self) -> usize {
        self.config.hidden_size
    }

    /// Last hidden states `[batch, seq, hidden]` of `ids [batch, seq]` (token types zero).
    /// `mask` marks the real tokens; `None` means every token is real.
    ///
    /// # Errors
    ///
    /// A token id outside the vocabulary, more tokens than position embeddings, or a mask
    /// whose shape is not `ids`'.
    pub fn forward(
        &mut self,
        ids: &Array2<usize>,
        mask: Option<&PaddingMask>,
        mode: Mode,
    ) -> Result<Array3<F>> {
        self.forward_with_types(ids, None, mask, mode)
    }

    /// [`forward`](Self::forward) with token type ids (segment A/B).
    ///
    /// # Errors
    ///
    /// As [`forward`](Self::forward); also a type id outside `type_vocab_size`.
    pub fn forward_with_types(
        &mut self,
        ids: &Array2<usize>,
        type_ids: Option<&Array2<usize>>,
        mask: Option<&PaddingMask>,
        mode: Mode,
    ) -> Result<Array3<F>> {
        let (batch, seq) = ids.dim();
        if let Some(m) = mask
            && (m.batch(), m.seq()) != (batch, seq)
        {
            return Err(
                CoreError::shape("padding mask", &[batch, seq], &[m.batch(), m.seq()]).into(),
            );
        }
        let x = self.embeddings.forward(ids, type_ids, mode)?;
        self.encoder.set_padding_mask(mask.cloned());
        let y = self.encoder.forward_owned(x.into_dyn(), mode)?;
        Ok(y.into_dimensionality::<Ix3>()?)
    }

    /// Back-propagates the gradient of the last hidden states `[batch, seq, hidden]`
    /// through the encoder and the embeddings (parameter gradients accumulate).
    ///
    /// # Errors
    ///
    /// Without a training-mode forward, or for a gradient of the wrong shape.
    pub fn backward(&mut self, grad: &Array3<F>) -> Result<()> {
        let g = self.encoder.backward(&grad.view().into_dyn())?;
        self.embeddings.backward(&g.into_dimensionality::<Ix3>()?)
    }

    /// Keeps only the encoder layers at `indices` (strictly increasing), e.g. every other
    /// layer for a DistilBERT-style student; updates the configuration.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for an index out of range or indices that are not
    /// strictly increasing.
    pub fn keep_layers(&mut self, indices: &[usize]) -> Result<()> {
        let n = self.encoder.layers.len();
        if let Some(&i) = indices.iter().find(|&&i| i >= n) {
            return Err(CoreError::config("layers", format!("index {i} >= {n} layers")).into());
        }
        if indices.windows(2).any(|w| w[0] >= w[1]) {
            return Err(CoreError::config(
                "layers",
                format!("indices {indices:?} must be strictly increasing"),
            )
            .into());
        }
        let mut keep = indices.iter().copied().peekable();
        self.encoder.layers = std::mem::take(&mut self.encoder.layers)
            .into_iter()
            .enumerate()
            .filter_map(|(i, l)| keep.next_if_eq(&i).map(|_| l))
            .collect();
        self.config.num_hidden_layers = indices.len();
        Ok(())
    }
}

/// Float ids with negative padding -> `(ids, mask)`.
fn split_ids<F: Float>(x: &ArrayRef<F, IxDyn>) -> Result<(Array2<usize>, PaddingMask)> {
    let &[batch, seq] = x.shape() else {
        return Err(CoreError::shape("BertModel input", &[0, 0], x.shape()).into());
    };
    let mut ids = Array2::<usize>::zeros((batch, seq));
    let mut valid = Array2::<bool>::from_elem((batch, seq), false);
    for (((b, t), &v), id) in x
        .view()
        .into_shape_with_order((batch, seq))?
        .indexed_iter()
        .zip(ids.iter_mut())
    {
        let f = v.as_f64();
        if f < 0.0 {
            continue;
        }
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(CoreError::config(
                "token id",
                format!("{f} at [{b}, {t}] is not an integer"),
            )
            .into());
        }
        *id = f as usize;
        valid[[b, t]] = true;
    }
    Ok((ids, PaddingMask::new(&valid)))
}

impl<F: Float> Module<F> for BertModel<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("embeddings", |p| self.embeddings.visit(p, v));
        path.scoped("encoder", |p| self.encoder.visit(p, v));
        path.scoped("pooler", |p| {
            p.scoped("dense", |p| self.pooler.visit(p, v));
        });
    }
    fn visit_mut(
        &mut self,
        path: &mut ParamPath,
        v: &mut dyn ParamVisitorMut<F>,
    ) -> compress_core::Result<()> {
        path.scoped("embeddings", |p| self.embeddings.visit_mut(p, v))?;
        path.scoped("encoder", |p| self.encoder.visit_mut(p, v))?;
        path.scoped("pooler", |p| {
            p.scoped("dense", |p| self.pooler.visit_mut(p, v))
        })
    }
}

/// A transformer error as a [`CoreError`] (for the `Layer`-style interfaces).
pub(crate) fn core(e: crate::TransformerError) -> CoreError {
    match e {
        crate::TransformerError::Core(c) => c,
        other => CoreError::InvalidState {
            layer: "BertModel".into(),
            reason: other.to_string(),
        },
    }
}

impl<F: Float> Layer<F> for BertModel<F> {
    fn name(&self) -> &'static str {
        "BertModel"
    }

    /// The embedding tables and LayerNorm (`embeddings.word_embeddings`, ...,
    /// `embeddings.LayerNorm`), `encoder` and, if present, `pooler.dense`, named as their
    /// parameter paths ([`LayerSlot::Fixed`]).
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        let e = &self.embeddings;
        let mut v: Vec<(String, &dyn Layer<F>)> = vec![
            ("embeddings.word_embeddings".into(), &e.word),
            ("embeddings.position_embeddings".into(), &e.position),
            ("embeddings.token_type_embeddings".into(), &e.token_type),
            ("embeddings.LayerNorm".into(), &e.norm),
            ("encoder".into(), &self.encoder),
        ];
        if let Some(p) = &self.pooler {
            v.push(("pooler.dense".into(), p));
        }
        v
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        let e = &mut self.embeddings;
        let mut v = vec![
            (
                "embeddings.word_embeddings".into(),
                LayerSlot::Fixed(&mut e.word),
            ),
            (
                "embeddings.position_embeddings".into(),
                LayerSlot::Fixed(&mut e.position),
            ),
            (
                "embeddings.token_type_embeddings".into(),
                LayerSlot::Fixed(&mut e.token_type),
            ),
            ("embeddings.LayerNorm".into(), LayerSlot::Fixed(&mut e.norm)),
            ("encoder".into(), LayerSlot::Fixed(&mut self.encoder)),
        ];
        if let Some(p) = &mut self.pooler {
            v.push(("pooler.dense".into(), LayerSlot::Fixed(p)));
        }
        v
    }

    /// `[batch, seq]` float ids, negative for padding -> `[batch, seq, hidden]`.
    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> compress_core::Result<ArrayD<F>> {
        let (ids, mask) = split_ids(x).map_err(core)?;
        let y = BertModel::forward(self, &ids, Some(&mask), mode).map_err(core)?;
        self.layer_batch = (mode == Mode::Train).then_some(ids.dim());
        Ok(y.into_dyn())
    }

    /// Returns zeros `[batch, seq]` (ids are not differentiable).
    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> compress_core::Result<ArrayD<F>> {
        let (batch, seq) = self
            .layer_batch
            .ok_or_else(|| CoreError::no_forward("BertModel"))?;
        let g = grad.to_owned().into_dimensionality::<Ix3>()?;
        BertModel::backward(self, &g).map_err(core)?;
        Ok(ArrayD::zeros(IxDyn(&[batch, seq])))
    }

    fn cost(&self, input_shape: &[usize]) -> compress_core::Result<Cost> {
        let &[seq] = input_shape else {
            return Err(CoreError::shape("BertModel input", &[0], input_shape));
        };
        let h = self.hidden();
        let emb = self.embeddings.word.cost(&[seq])?;
        let pos = self.embeddings.position.cost(&[seq])?;
        let typ = self.embeddings.token_type.cost(&[seq])?;
        let norm = self.embeddings.norm.cost(&[seq, h])?;
        let mut cost = self.encoder.cost(&[seq, h])?;
        for c in [emb, pos, typ, norm] {
            cost.params += c.params;
            cost.nonzero_params += c.nonzero_params;
            cost.macs += c.macs;
        }
        if let Some(p) = &self.pooler {
            let c = p.cost(&[h])?;
            cost.params += c.params;
            cost.nonzero_params += c.nonzero_params;
        }
        Ok(cost)
    }
}
