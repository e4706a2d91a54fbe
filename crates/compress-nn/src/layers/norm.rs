//! Batch normalisation with running statistics.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Param, ParamKind, Result, TensorExt};
use ndarray::{ArrayD, ArrayRef, IxDyn};

/// What a training-mode forward keeps for backward.
#[derive(Debug, Clone)]
struct Cache<F> {
    shape: Vec<usize>,
    xhat: Vec<F>,
    inv_std: Vec<F>,
}

/// The shared state and arithmetic of [`BatchNorm1d`] and [`BatchNorm2d`]: inputs are
/// viewed as `[N, C, S]` with statistics per channel over `N * S` values.
#[derive(Debug, Clone, Module)]
struct Bn<F: Float> {
    weight: Param<F>,
    bias: Param<F>,
    running_mean: Param<F>,
    running_var: Param<F>,
    #[module(skip)]
    momentum: f64,
    #[module(skip)]
    eps: f64,
    #[module(skip)]
    cache: Option<Cache<F>>,
}

fn new_bn<F: Float>(c: usize) -> Bn<F> {
    let ones = || ArrayD::from_elem(IxDyn(&[c]), F::one());
    let zeros = || ArrayD::zeros(IxDyn(&[c]));
    Bn {
        weight: Param::with_kind(ones(), ParamKind::Norm),
        bias: Param::with_kind(zeros(), ParamKind::Norm),
        running_mean: Param::with_kind(zeros(), ParamKind::Buffer),
        running_var: Param::with_kind(ones(), ParamKind::Buffer),
        momentum: 0.1,
        eps: 1e-5,
        cache: None,
    }
}

impl<F: Float> Bn<F> {
    fn channels(&self) -> usize {
        self.weight.len()
    }

    fn check(&self, layer: &str, shape: &[usize], ndims: &[usize]) -> Result<(usize, usize)> {
        let c = self.channels();
        if !ndims.contains(&shape.len()) || shape[1] != c {
            let mut expected = shape.to_vec();
            expected.resize(ndims[0], 1);
            if expected.len() > 1 {
                expected[1] = c;
            }
            return Err(CoreError::shape(format!("{layer} input"), &expected, shape));
        }
        for (name, p) in [
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            if p.shape() != [c] {
                return Err(CoreError::shape(format!("{layer} {name}"), &[c], p.shape()));
            }
        }
        Ok((shape[0], shape[2..].iter().product()))
    }

    /// Eval mode on `xs` (`n` samples of `channels x s` values) in place: the running
    /// statistics fold into one multiply-add per element,
    /// `y = x * (gamma / std) + (beta - mean * gamma / std)`.
    fn eval_in_place(&mut self, xs: &mut [F], n: usize, s: usize) {
        let c = self.channels();
        let gamma = self.weight.effective().into_owned();
        let beta = self.bias.effective().into_owned();
        let eps = F::lit(self.eps);
        let rm = self.running_mean.value();
        let rv = self.running_var.value();
        let (scale, shift): (Vec<F>, Vec<F>) = (0..c)
            .map(|ch| {
                let sc = gamma[ch] / (rv[ch] + eps).sqrt();
                (sc, beta[ch] - rm[ch] * sc)
            })
            .unzip();
        for (k, plane) in xs.chunks_exact_mut(s.max(1)).take(n * c).enumerate() {
            let (sc, sh) = (scale[k % c], shift[k % c]);
            plane.iter_mut().for_each(|v| *v = *v * sc + sh);
        }
        self.cache = None;
    }

    /// [`Layer::forward_owned`]: eval mode reuses the input's buffer.
    fn forward_owned(
        &mut self,
        layer: &str,
        mut x: ArrayD<F>,
        mode: Mode,
        ndims: &[usize],
    ) -> Result<ArrayD<F>> {
        if mode == Mode::Train || !x.is_standard_layout() {
            return self.forward(layer, &x, mode, ndims);
        }
        let (n, s) = self.check(layer, x.shape(), ndims)?;
        let xs = x.as_slice_mut().expect("standard layout is contiguous");
        self.eval_in_place(xs, n, s);
        Ok(x)
    }

    fn forward(
        &mut self,
        layer: &str,
        x: &ArrayRef<F, IxDyn>,
        mode: Mode,
        ndims: &[usize],
    ) -> Result<ArrayD<F>> {
        let (n, s) = self.check(layer, x.shape(), ndims)?;
        let c = self.channels();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let gamma = self.weight.effective().into_owned();
        let beta = self.bias.effective().into_owned();
        let eps = F::lit(self.eps);
        let m = n * s;
        if mode != Mode::Train {
            let mut y = xs.to_vec();
            self.eval_in_place(&mut y, n, s);
            return Ok(ArrayD::from_shape_vec(IxDyn(x.shape()), y)?);
        }
        if m < 2 {
            return Err(CoreError::InvalidState {
                layer: layer.to_string(),
                reason: format!(
                    "training needs more than one value per channel, got input {:?}",
                    x.shape()
                ),
            });
        }
        let (mean, var) = channel_stats(xs, n, c, s);
        let mom = F::lit(self.momentum);
        let unbias = F::lit(m as f64 / (m - 1) as f64);
        let rm = self.running_mean.value_mut();
        for (r, &v) in rm.iter_mut().zip(&mean) {
            *r = (F::one() - mom) * *r + mom * v;
        }
        let rv = self.running_var.value_mut();
        for (r, &v) in rv.iter_mut().zip(&var) {
            *r = (F::one() - mom) * *r + mom * v * unbias;
        }
        let inv_std: Vec<F> = var.iter().map(|&v| F::one() / (v + eps).sqrt()).collect();
        // One pass writes both the normalised input (kept for backward) and the output.
        let mut xhat = Vec::with_capacity(xs.len());
        let mut y = Vec::with_capacity(xs.len());
        for (k, plane) in xs.chunks_exact(s.max(1)).take(n * c).enumerate() {
            let ch = k % c;
            let (mu, is, g, bt) = (mean[ch], inv_std[ch], gamma[ch], beta[ch]);
            let start = xhat.len();
            xhat.extend(plane.iter().map(|&v| (v - mu) * is));
            y.extend(xhat[start..].iter().map(|&h| g * h + bt));
        }
        self.cache = Some(Cache {
            shape: x.shape().to_vec(),
            xhat,
            inv_std,
        });
        Ok(ArrayD::from_shape_vec(IxDyn(x.shape()), y)?)
    }

    fn backward(&mut self, layer: &str, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward(layer))?;
        if grad.shape() != cache.shape.as_slice() {
            return Err(CoreError::shape(
                format!("{layer} grad"),
                &cache.shape,
                grad.shape(),
            ));
        }
        let c = self.channels();
        let n = cache.shape[0];
        let s: usize = cache.shape[2..].iter().product();
        let m = F::lit((n * s) as f64);
        let gs = grad.as_standard_layout();
        let gs = gs.as_slice().expect("standard layout is contiguous");
        let gamma = self.weight.effective().into_owned();
        let (mut dgamma, mut dbeta) = (vec![F::zero(); c], vec![F::zero(); c]);
        for b in 0..n {
            for ch in 0..c {
                let k = (b * c + ch) * s;
                let (g, xh) = (&gs[k..k + s], &cache.xhat[k..k + s]);
                dgamma[ch] += lane_sum(g, |i| g[i] * xh[i]);
                dbeta[ch] += lane_sum(g, |i| g[i]);
            }
        }
        let mut dx = Vec::with_capacity(gs.len());
        for b in 0..n {
            for ch in 0..c {
                let k = (b * c + ch) * s;
                let scale = gamma[ch] * cache.inv_std[ch] / m;
                let (dg, db) = (dgamma[ch], dbeta[ch]);
                dx.extend(
                    gs[k..k + s]
                        .iter()
                        .zip(&cache.xhat[k..k + s])
                        .map(|(&g, &xh)| scale * (m * g - db - xh * dg)),
                );
            }
        }
        let shape = cache.shape.clone();
        self.weight
            .accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[c]), dgamma)?)?;
        self.bias
            .accumulate_grad(ArrayD::from_shape_vec(IxDyn(&[c]), dbeta)?)?;
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), dx)?)
    }

    fn cost(&self, layer: &str, input_shape: &[usize], ndims: &[usize]) -> Result<Cost> {
        let mut shape = vec![1];
        shape.extend_from_slice(input_shape);
        self.check(layer, &shape, ndims)?;
        Ok(Cost {
            output_shape: input_shape.to_vec(),
            params: self.weight.len() + self.bias.len(),
            nonzero_params: self.weight.effective().count_nonzero()
                + self.bias.effective().count_nonzero(),
            // One multiply-add per element once the statistics are folded in.
            macs: input_shape.iter().product::<usize>() as u64,
        })
    }
}

/// Per-channel mean and biased variance of `[n, c, s]` data (two passes).
fn channel_stats<F: Float>(xs: &[F], n: usize, c: usize, s: usize) -> (Vec<F>, Vec<F>) {
    let inv_m = F::one() / F::lit((n * s) as f64);
    let mut mean = vec![F::zero(); c];
    let mut var = vec![F::zero(); c];
    for (k, plane) in xs.chunks_exact(s.max(1)).take(n * c).enumerate() {
        mean[k % c] += lane_sum(plane, |i| plane[i]);
    }
    mean.iter_mut().for_each(|m| *m *= inv_m);
    for (k, plane) in xs.chunks_exact(s.max(1)).take(n * c).enumerate() {
        let mu = mean[k % c];
        var[k % c] += lane_sum(plane, |i| (plane[i] - mu) * (plane[i] - mu));
    }
    var.iter_mut().for_each(|v| *v *= inv_m);
    (mean, var)
}

/// `sum over i < xs.len() of f(i)` in eight interleaved lanes (an element-wise update
/// LLVM vectorises, unlike a sequential fold), then the lanes and the tail in order.
#[inline(always)]
fn lane_sum<F: Float>(xs: &[F], f: impl Fn(usize) -> F) -> F {
    let mut lanes = [F::zero(); 8];
    let full = xs.len() / 8 * 8;
    for base in (0..full).step_by(8) {
        for (l, a) in lanes.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    let head = lanes.iter().fold(F::zero(), |a, &v| a + v);
    (full..xs.len()).fold(head, |a, i| a + f(i))
}

macro_rules! batch_norm {
    ($(#[$doc:meta])* $name:ident, $label:literal, $ndims:expr) => {
        $(#[$doc])*
        ///
        /// Parameters: `weight` (scale, init 1) and `bias` (shift, init 0), both
        /// [`ParamKind::Norm`]; `running_mean` (init 0) and `running_var` (init 1), both
        /// [`ParamKind::Buffer`] (saved with the model, never trained).
        ///
        /// Training mode normalises with the batch statistics (biased variance) and updates
        /// the running ones with `momentum` (0.1; unbiased variance, as PyTorch); eval mode
        /// uses the running statistics. `eps` is 1e-5.
        #[derive(Debug, Clone, Module)]
        pub struct $name<F: Float> {
            #[module(flatten)]
            inner: Bn<F>,
        }

        impl<F: Float> $name<F> {
            /// Batch normalisation over `channels` channels.
            pub fn new(channels: usize) -> Self {
                Self { inner: new_bn(channels) }
            }

            /// Sets the running-statistics momentum (builder style).
            #[must_use]
            pub fn with_momentum(mut self, momentum: f64) -> Self {
                self.inner.momentum = momentum;
                self
            }

            /// Sets the variance epsilon (builder style).
            #[must_use]
            pub fn with_eps(mut self, eps: f64) -> Self {
                self.inner.eps = eps;
                self
            }

            /// Number of channels.
            pub fn channels(&self) -> usize {
                self.inner.channels()
            }

            /// The running-statistics momentum.
            pub fn momentum(&self) -> f64 {
                self.inner.momentum
            }

            /// The variance epsilon.
            pub fn eps(&self) -> f64 {
                self.inner.eps
            }

            /// The scale (`gamma`).
            pub fn weight(&self) -> &Param<F> {
                &self.inner.weight
            }

            /// The scale, mutably.
            pub fn weight_mut(&mut self) -> &mut Param<F> {
                &mut self.inner.weight
            }

            /// The shift (`beta`).
            pub fn bias(&self) -> &Param<F> {
                &self.inner.bias
            }

            /// The shift, mutably.
            pub fn bias_mut(&mut self) -> &mut Param<F> {
                &mut self.inner.bias
            }

            /// The running mean buffer.
            pub fn running_mean(&self) -> &Param<F> {
                &self.inner.running_mean
            }

            /// The running mean buffer, mutably.
            pub fn running_mean_mut(&mut self) -> &mut Param<F> {
                &mut self.inner.running_mean
            }

            /// The running variance buffer.
            pub fn running_var(&self) -> &Param<F> {
                &self.inner.running_var
            }

            /// The running variance buffer, mutably.
            pub fn running_var_mut(&mut self) -> &mut Param<F> {
                &mut self.inner.running_var
            }

            /// Resets the running statistics to mean 0 and variance 1.
            pub fn reset_running_stats(&mut self) {
                self.inner.running_mean.value_mut().fill(F::zero());
                self.inner.running_var.value_mut().fill(F::one());
            }

            /// Replaces all four tensors (e.g. after removing channels).
            ///
            /// # Errors
            ///
            /// [`CoreError::ShapeMismatch`] unless all four are 1-D of the same length.
            pub fn set_tensors(
                &mut self,
                weight: ArrayD<F>,
                bias: ArrayD<F>,
                running_mean: ArrayD<F>,
                running_var: ArrayD<F>,
            ) -> Result<()> {
                let c = weight.len();
                for (name, a) in [
                    ("weight", &weight),
                    ("bias", &bias),
                    ("running_mean", &running_mean),
                    ("running_var", &running_var),
                ] {
                    if a.shape() != [c] {
                        return Err(CoreError::shape(format!("{} {name}", $label), &[c], a.shape()));
                    }
                }
                self.inner.weight.reset(weight);
                self.inner.bias.reset(bias);
                self.inner.running_mean.reset(running_mean);
                self.inner.running_var.reset(running_var);
                self.inner.cache = None;
                Ok(())
            }
        }

        impl<F: Float> Layer<F> for $name<F> {
            fn name(&self) -> &'static str {
                $label
            }
            fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
                self.inner.forward($label, x, mode, &$ndims)
            }
            fn forward_owned(&mut self, x: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
                self.inner.forward_owned($label, x, mode, &$ndims)
            }
            fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
                self.inner.backward($label, grad)
            }
            fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
                self.inner.cost($label, input_shape, &$ndims)
            }
        }
    };
}

batch_norm!(
    /// Batch normalisation of `[N, C]` (or `[N, C, L]`) inputs, per channel `C`.
    BatchNorm1d, "BatchNorm1d", [2, 3]
);

batch_norm!(
    /// Batch normalisation of NCHW inputs, per channel over `N * H * W` values.
    BatchNorm2d, "BatchNorm2d", [4]
);
