//! Multi-head self-attention with a key padding mask.

use compress_core::{
    CoreError, Cost, Float, Layer, LayerSlot, Mode, Module, ParamPath, ParamVisitor,
    ParamVisitorMut, Result,
};
use ndarray::{Array2, Array4, ArrayD, ArrayRef, ArrayView2, ArrayViewMut2, Ix2, IxDyn, s};
use rand::Rng;
use rayon::prelude::*;

use super::{PaddingMask, check_mask, to_tokens, vmath};
use crate::Linear;
use crate::gemm::matmul_into;

/// What a training-mode forward keeps for backward.
#[derive(Debug, Clone)]
struct Cache<F> {
    batch: usize,
    seq: usize,
    q: Array2<F>,
    k: Array2<F>,
    v: Array2<F>,
    /// Attention probabilities `[batch, heads, seq, seq]`.
    probs: Array4<F>,
    /// Per sequence: whether it has at least one valid key.
    any_valid: Vec<bool>,
}

/// Scaled dot-product self-attention over `heads` heads, with BERT's projections.
///
/// Input and output `[batch, seq, hidden]`. `Q = x Wq^T + bq` (and `K`, `V`) are computed
/// as one GEMM each over all `batch * seq` tokens by ordinary [`Linear`] layers; each
/// (sequence, head) pair then runs `softmax(Q_h K_h^T / sqrt(d_head) + mask) V_h` as two
/// matrix products on slices of those matrices (no copies), and the heads' concatenation
/// goes through the output [`Linear`].
///
/// The padding mask (see [`PaddingMask`]) is set with
/// [`set_padding_mask`](Self::set_padding_mask) before `forward`: padded keys get weight
/// exactly zero (as the additive `finfo.min` mask of Hugging Face's BERT gives after the
/// softmax), padded queries are computed like the others (their outputs are ignored by
/// masked pooling). A sequence with no valid key at all attends uniformly to every
/// position, as the additive mask does, instead of dividing by zero.
///
/// Parameter paths follow Hugging Face's BERT: `self.query`, `self.key`, `self.value`,
/// `output.dense` (each `weight` and `bias`).
///
/// The four projections are boxed layers ([`LayerSlot::Boxed`]): they start as
/// [`Linear`]s, and any layer mapping `[tokens, hidden]` to `[tokens, hidden]` (a
/// quantized, int4 or 2:4-sparse linear) can take a projection's place through
/// [`compress_core::surgery::replace_layer`] with the path `self.query`, ... . A replacement with
/// the wrong output width is a typed error at `forward`, not a panic.
#[derive(Debug)]
pub struct MultiHeadAttention<F: Float> {
    /// Query projection (`self.query`).
    pub query: Box<dyn Layer<F>>,
    /// Key projection (`self.key`).
    pub key: Box<dyn Layer<F>>,
    /// Value projection (`self.value`).
    pub value: Box<dyn Layer<F>>,
    /// Output projection (`output.dense`).
    pub output: Box<dyn Layer<F>>,
    hidden: usize,
    heads: usize,
    mask: Option<PaddingMask>,
    cache: Option<Cache<F>>,
}

impl<F: Float> MultiHeadAttention<F> {
    /// Attention over `hidden` features in `heads` heads, with [`Linear::new`] weights.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] when `heads` is zero or does not divide `hidden`.
    pub fn new<R: Rng + ?Sized>(hidden: usize, heads: usize, rng: &mut R) -> Result<Self> {
        check_heads(hidden, heads)?;
        let mut lin = || Linear::new(hidden, hidden, true, rng);
        let (q, k, v, o) = (lin(), lin(), lin(), lin());
        Self::from_linears(q, k, v, o, heads)
    }

    /// Attention from its four projections.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] for a bad head count, [`CoreError::ShapeMismatch`]
    /// when the projections are not all `[hidden, hidden]`.
    pub fn from_linears(
        query: Linear<F>,
        key: Linear<F>,
        value: Linear<F>,
        output: Linear<F>,
        heads: usize,
    ) -> Result<Self> {
        let h = query.in_features();
        check_heads(h, heads)?;
        for (name, l) in [
            ("self.query", &query),
            ("self.key", &key),
            ("self.value", &value),
            ("output.dense", &output),
        ] {
            if l.weight.shape() != [h, h] {
                return Err(CoreError::shape(
                    format!("{name}.weight"),
                    &[h, h],
                    l.weight.shape(),
                ));
            }
        }
        Ok(Self {
            query: Box::new(query),
            key: Box::new(key),
            value: Box::new(value),
            output: Box::new(output),
            hidden: h,
            heads,
            mask: None,
            cache: None,
        })
    }

    /// Model width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden() / self.heads
    }

    /// Sets (or clears, with `None`) the padding mask used by the following forwards.
    pub fn set_padding_mask(&mut self, mask: Option<PaddingMask>) {
        self.mask = mask;
    }

    /// The padding mask in use.
    pub fn padding_mask(&self) -> Option<&PaddingMask> {
        self.mask.as_ref()
    }

    /// `x` `[tokens, hidden]` through projection `name`, checked to give `[tokens, hidden]`.
    fn project(
        lin: &mut dyn Layer<F>,
        name: &str,
        x: &ArrayD<F>,
        hidden: usize,
        mode: Mode,
    ) -> Result<Array2<F>> {
        let y = lin.forward(x, mode)?;
        let want = [x.shape()[0], hidden];
        if y.shape() != want {
            return Err(CoreError::shape(format!("{name} output"), &want, y.shape()));
        }
        Ok(y.into_dimensionality::<Ix2>()?)
    }
}

fn check_heads(hidden: usize, heads: usize) -> Result<()> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(CoreError::config(
            "num_attention_heads",
            format!("{heads} heads do not divide hidden size {hidden}"),
        ));
    }
    Ok(())
}

/// One (sequence, head) pair: `p = softmax(scale q k^T + mask)` (`[seq, seq]`, row-major in
/// `p`) and `c = p v` (`[seq, d_head]`, row-major in `c`).
fn attend<F: Float>(
    q: &ArrayView2<'_, F>,
    k: &ArrayView2<'_, F>,
    v: &ArrayView2<'_, F>,
    scale: F,
    valid: Option<&[bool]>,
    p: &mut [F],
    c: &mut [F],
) {
    let (seq, dh) = v.dim();
    let mut pm = ArrayViewMut2::from_shape((seq, seq), p).expect("seq * seq scratch");
    matmul_into(scale, q, &k.t(), F::zero(), &mut pm);
    if let Some(ps) = pm.as_slice_mut().and_then(F::as_f32_slice_mut) {
        if let Some(m) = valid {
            for row in ps.chunks_exact_mut(seq) {
                for (x, &ok) in row.iter_mut().zip(m) {
                    if !ok {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
        vmath::softmax_rows(ps, seq);
    } else {
        masked_softmax(&mut pm, valid);
    }
    let mut cm = ArrayViewMut2::from_shape((seq, dh), c).expect("seq * d_head block");
    matmul_into(F::one(), &pm.view(), v, F::zero(), &mut cm);
}

/// Masked, numerically stable softmax of each row of `scores` in place; `valid[j]` says
/// whether key `j` may be attended to. Rows with no valid key become uniform.
fn masked_softmax<F: Float>(scores: &mut ArrayViewMut2<'_, F>, valid: Option<&[bool]>) {
    let n = scores.ncols();
    for mut row in scores.rows_mut() {
        let mut max = F::neg_infinity();
        for (j, &v) in row.iter().enumerate() {
            if valid.is_none_or(|m| m[j]) && v > max {
                max = v;
            }
        }
        if max == F::neg_infinity() {
            row.fill(F::one() / F::lit(n as f64));
            continue;
        }
        let mut sum = F::zero();
        for (j, v) in row.iter_mut().enumerate() {
            *v = if valid.is_none_or(|m| m[j]) {
                (*v - max).exp()
            } else {
                F::zero()
            };
            sum += *v;
        }
        let inv = F::one() / sum;
        row.mapv_inplace(|v| v * inv);
    }
}

impl<F: Float> Module<F> for MultiHeadAttention<F> {
    fn visit(&self, path: &mut ParamPath, v: &mut dyn ParamVisitor<F>) {
        path.scoped("self", |p| {
            p.scoped("query", |p| self.query.visit(p, v));
            p.scoped("key", |p| self.key.visit(p, v));
            p.scoped("value", |p| self.value.visit(p, v));
        });
        path.scoped("output", |p| p.scoped("dense", |p| self.output.visit(p, v)));
    }
    fn visit_mut(&mut self, path: &mut ParamPath, v: &mut dyn ParamVisitorMut<F>) -> Result<()> {
        path.scoped("self", |p| {
            p.scoped("query", |p| self.query.visit_mut(p, v))?;
            p.scoped("key", |p| self.key.visit_mut(p, v))?;
            p.scoped("value", |p| self.value.visit_mut(p, v))
        })?;
        path.scoped("output", |p| {
            p.scoped("dense", |p| self.output.visit_mut(p, v))
        })
    }
}

impl<F: Float> Layer<F> for MultiHeadAttention<F> {
    fn name(&self) -> &'static str {
        "MultiHeadAttention"
    }

    /// The four projections, named as their parameter paths (`self.query`, `self.key`,
    /// `self.value`, `output.dense`); boxed, so [`LayerSlot::Boxed`] (replaceable).
    fn children(&self) -> Vec<(String, &dyn Layer<F>)> {
        vec![
            ("self.query".into(), self.query.as_ref()),
            ("self.key".into(), self.key.as_ref()),
            ("self.value".into(), self.value.as_ref()),
            ("output.dense".into(), self.output.as_ref()),
        ]
    }

    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, F>)> {
        vec![
            ("self.query".into(), LayerSlot::Boxed(&mut self.query)),
            ("self.key".into(), LayerSlot::Boxed(&mut self.key)),
            ("self.value".into(), LayerSlot::Boxed(&mut self.value)),
            ("output.dense".into(), LayerSlot::Boxed(&mut self.output)),
        ]
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let (batch, seq, x2) = to_tokens(x, self.hidden(), "MultiHeadAttention input")?;
        check_mask(self.mask.as_ref(), batch, seq)?;
        let (nh, dh, h) = (self.heads, self.head_dim(), self.hidden());
        let q = Self::project(self.query.as_mut(), "self.query", &x2, h, mode)?;
        let k = Self::project(self.key.as_mut(), "self.key", &x2, h, mode)?;
        let v = Self::project(self.value.as_mut(), "self.value", &x2, h, mode)?;
        let scale = F::lit(1.0 / (dh as f64).sqrt());
        let train = mode == Mode::Train;
        let any_valid: Vec<bool> = (0..batch)
            .map(|b| {
                let valid = self.mask.as_ref().map(|m| m.row(b));
                valid.is_none_or(|m| m.iter().any(|&x| x))
            })
            .collect();
        // Each (sequence, head) pair writes its own contiguous blocks: the probabilities
        // `[seq, seq]` (kept for backward in training) and the context `[seq, d_head]` in a
        // head-major buffer, so the pairs run in parallel on the current rayon pool.
        let (ss, sd) = (seq * seq, seq * dh);
        let mut ctx4 = vec![F::zero(); batch * nh * sd];
        let mut probs_buf = vec![F::zero(); if train { batch * nh * ss } else { 0 }];
        let mask = self.mask.as_ref();
        let work = |t: usize, p: &mut [F], c: &mut [F]| {
            let (b, head) = (t / nh, t % nh);
            let rows = b * seq..(b + 1) * seq;
            let cols = head * dh..(head + 1) * dh;
            let qh = q.slice(s![rows.clone(), cols.clone()]);
            let kh = k.slice(s![rows.clone(), cols.clone()]);
            let vh = v.slice(s![rows, cols]);
            let valid = mask.map(|m| m.row(b));
            attend(&qh, &kh, &vh, scale, valid, p, c);
        };
        if train {
            probs_buf
                .par_chunks_mut(ss)
                .zip(ctx4.par_chunks_mut(sd))
                .enumerate()
                .for_each(|(t, (p, c))| work(t, p, c));
        } else {
            ctx4.par_chunks_mut(sd)
                .enumerate()
                .for_each_init(|| vec![F::zero(); ss], |p, (t, c)| work(t, p, c));
        }
        let ctx = Array4::from_shape_vec((batch, nh, seq, dh), ctx4)?
            .permuted_axes([0, 2, 1, 3])
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[batch * seq, h]))?;
        let y = Self::project(self.output.as_mut(), "output.dense", &ctx, h, mode)?;
        let probs = if train {
            Array4::from_shape_vec((batch, nh, seq, seq), probs_buf)?
        } else {
            Array4::zeros((0, 0, 0, 0))
        };
        self.cache = train.then(|| Cache {
            batch,
            seq,
            q,
            k,
            v,
            probs,
            any_valid,
        });
        Ok(y.into_shape_with_order(IxDyn(&[batch, seq, h]))?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("MultiHeadAttention"))?;
        let (batch, seq, h) = (cache.batch, cache.seq, self.hidden());
        if grad.shape() != [batch, seq, h] {
            return Err(CoreError::shape(
                "MultiHeadAttention grad",
                &[batch, seq, h],
                grad.shape(),
            ));
        }
        let g2 = grad
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&[batch * seq, h]))?;
        let dctx = self.output.backward(&g2)?.into_dimensionality::<Ix2>()?;
        let (nh, dh) = (self.heads, self.head_dim());
        let scale = F::lit(1.0 / (dh as f64).sqrt());
        let mut dq = Array2::<F>::zeros((batch * seq, h));
        let mut dk = Array2::<F>::zeros((batch * seq, h));
        let mut dv = Array2::<F>::zeros((batch * seq, h));
        let mut ds = Array2::<F>::zeros((seq, seq));
        for b in 0..batch {
            let rows = b * seq..(b + 1) * seq;
            for head in 0..nh {
                let cols = head * dh..(head + 1) * dh;
                let p = cache.probs.slice(s![b, head, .., ..]);
                let dc = dctx.slice(s![rows.clone(), cols.clone()]);
                let qh = cache.q.slice(s![rows.clone(), cols.clone()]);
                let kh = cache.k.slice(s![rows.clone(), cols.clone()]);
                let vh = cache.v.slice(s![rows.clone(), cols.clone()]);
                let mut dvh = dv.slice_mut(s![rows.clone(), cols.clone()]);
                matmul_into(F::one(), &p.t(), &dc, F::zero(), &mut dvh);
                if !cache.any_valid[b] {
                    // Uniform rows do not depend on the scores.
                    continue;
                }
                matmul_into(F::one(), &dc, &vh.t(), F::zero(), &mut ds.view_mut());
                softmax_backward(&p, &mut ds.view_mut(), scale);
                let mut dqh = dq.slice_mut(s![rows.clone(), cols.clone()]);
                matmul_into(F::one(), &ds.view(), &kh, F::zero(), &mut dqh);
                let mut dkh = dk.slice_mut(s![rows.clone(), cols]);
                matmul_into(F::one(), &ds.t(), &qh, F::zero(), &mut dkh);
            }
        }
        let mut dx = self.query.backward(&dq.into_dyn())?;
        dx += &self.key.backward(&dk.into_dyn())?;
        dx += &self.value.backward(&dv.into_dyn())?;
        Ok(dx.into_shape_with_order(IxDyn(&[batch, seq, h]))?)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let h = self.hidden();
        let [seq, hh] = input_shape else {
            return Err(CoreError::shape(
                "MultiHeadAttention input",
                &[0, h],
                input_shape,
            ));
        };
        if *hh != h {
            return Err(CoreError::shape(
                "MultiHeadAttention input",
                &[*seq, h],
                input_shape,
            ));
        }
        let per_token = [&self.query, &self.key, &self.value, &self.output]
            .iter()
            .map(|l| l.cost(&[h]))
            .collect::<Result<Vec<_>>>()?;
        let mut cost = Cost::passthrough(input_shape);
        for c in per_token {
            cost.params += c.params;
            cost.nonzero_params += c.nonzero_params;
            cost.macs += c.macs * *seq as u64;
        }
        // Scores and context: two [seq, seq, hidden] products.
        cost.macs += 2 * (*seq * *seq * h) as u64;
        Ok(cost)
    }
}

/// `ds := p * (ds - rowsum(p * ds)) * scale` in place: the gradient of the scores from the
/// gradient `ds` of the probabilities `p` of a row softmax (masked entries have `p = 0`).
fn softmax_backward<F: Float>(p: &ArrayView2<'_, F>, ds: &mut ArrayViewMut2<'_, F>, scale: F) {
    for (pr, mut dr) in p.rows().into_iter().zip(ds.rows_mut()) {
        let dot = pr
            .iter()
            .zip(dr.iter())
            .fold(F::zero(), |s, (&a, &b)| s + a * b);
        for (d, &pv) in dr.iter_mut().zip(pr.iter()) {
            *d = pv * (*d - dot) * scale;
        }
    }
}
