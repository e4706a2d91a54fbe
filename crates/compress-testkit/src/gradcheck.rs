//! Finite-difference gradient checks (central differences, in `f64`).
//!
//! - [`GradCheck`] checks a [`Layer`]: the input gradient and the gradient of every
//!   parameter (found with the [`Module`] visitor) of the scalar `sum(forward(x) * R)` for a
//!   seeded random `R`, or of any scalar objective of a [`Module`]'s parameters
//!   ([`GradCheck::params`]). It returns a [`GradReport`] of analytic/numeric pairs.
//! - [`fd_grad`] is the numeric gradient of a plain function of an array (losses);
//!   [`assert_grad_close`] compares it with the analytic one.
//!
//! Both criteria used by the tests are available: [`GradReport::max_error`] is
//! `max |a - n| / max(1, |n|)`, and [`GradReport::assert_close`] / [`assert_grad_close`]
//! require `|a - n| <= atol + rtol * max(|a|, |n|)` elementwise.

use std::fmt;

use compress_core::{Layer, Mode, Module, Param, ParamKind, ParamPath};
use ndarray::{Array, ArrayD, ArrayRef, Dimension, IxDyn};
use rand::{SeedableRng, rngs::StdRng};

use crate::arrays::seeded_tensor;

/// Mixed into the seed for choosing sampled indices, so they do not correlate with `R`.
const SAMPLE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// `|a - n| <= atol + rtol * max(|a|, |n|)` (false when either is NaN).
fn within(analytic: f64, numeric: f64, atol: f64, rtol: f64) -> bool {
    (analytic - numeric).abs() <= atol + rtol * analytic.abs().max(numeric.abs())
}

/// What one checked gradient element is taken with respect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wrt {
    /// The layer's input.
    Input,
    /// The stored value of the parameter at this path.
    Param(String),
}

impl fmt::Display for Wrt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wrt::Input => f.write_str("input"),
            Wrt::Param(path) => write!(f, "`{path}`"),
        }
    }
}

/// One checked element: the analytic gradient (from `backward`) and the central difference.
#[derive(Debug, Clone, PartialEq)]
pub struct GradSample {
    /// The tensor the element belongs to.
    pub wrt: Wrt,
    /// Flat index of the element in logical (row-major) order.
    pub index: usize,
    /// Gradient from the code under test.
    pub analytic: f64,
    /// Central finite difference.
    pub numeric: f64,
}

impl GradSample {
    /// `|analytic - numeric| / max(1, |numeric|)`: absolute for small gradients, relative
    /// for large ones (NaN if either is NaN).
    pub fn error(&self) -> f64 {
        (self.analytic - self.numeric).abs() / self.numeric.abs().max(1.0)
    }
}

/// The outcome of a [`GradCheck`]: every checked element, in checking order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GradReport {
    /// Name of the checked layer (empty for [`GradCheck::params`]).
    pub layer: String,
    /// The checked elements.
    pub samples: Vec<GradSample>,
    /// Paths of the parameters that were checked.
    pub params: Vec<String>,
    /// Paths of trainable parameters skipped because they had no gradient (only with
    /// [`GradCheck::allow_missing_grads`]).
    pub skipped: Vec<String>,
}

/// Largest [`GradSample::error`] of `samples`; NaN wins, 0 when there are none.
fn worst<'a>(samples: impl Iterator<Item = &'a GradSample>) -> f64 {
    samples.map(GradSample::error).fold(0.0, |m, e| {
        if e.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(e)
        }
    })
}

impl GradReport {
    /// Largest [`GradSample::error`] over every checked element (0 when nothing was checked,
    /// NaN if any gradient is NaN, so `max_error() < tol` fails).
    pub fn max_error(&self) -> f64 {
        worst(self.samples.iter())
    }

    /// [`max_error`](Self::max_error) over the input gradient only.
    pub fn input_error(&self) -> f64 {
        worst(self.samples.iter().filter(|s| s.wrt == Wrt::Input))
    }

    /// [`max_error`](Self::max_error) over the parameter gradients only.
    pub fn param_error(&self) -> f64 {
        worst(self.samples.iter().filter(|s| s.wrt != Wrt::Input))
    }

    /// Asserts `|a - n| <= atol + rtol * max(|a|, |n|)` for every checked element.
    ///
    /// # Panics
    ///
    /// At the first element outside the tolerance, naming the layer, the tensor, the index
    /// and both values.
    #[track_caller]
    pub fn assert_close(&self, atol: f64, rtol: f64) {
        for s in &self.samples {
            assert!(
                within(s.analytic, s.numeric, atol, rtol),
                "{}: d/d {}[{}]: analytic {}, numeric {} (atol {atol}, rtol {rtol})",
                self.layer,
                s.wrt,
                s.index,
                s.analytic,
                s.numeric
            );
        }
    }
}

/// Central-difference gradient check of layers and of module objectives (in `f64`).
///
/// Defaults: step `eps = 1e-6`, seed 99 (for `R`), every element checked, every trainable
/// (non-[`Buffer`](ParamKind::Buffer)) parameter must have a gradient. The layer runs in
/// [`Mode::Train`]. Parameters are perturbed in their *stored* value, so with
/// parametrizations attached the check covers the gradient that reaches the stored value.
///
/// ```
/// use compress_core::{Layer, Mode, Module};
/// use compress_nn::{Linear, ReLU, Sequential};
/// use compress_testkit::{GradCheck, seeded_tensor};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let mut rng = StdRng::seed_from_u64(0);
/// let mut net = Sequential::<f64>::new()
///     .with(Linear::new(3, 4, true, &mut rng))
///     .with(ReLU::new())
///     .with(Linear::new(4, 2, true, &mut rng));
/// let x = seeded_tensor::<f64>(&[5, 3], 1);
/// let report = GradCheck::new().layer(&mut net, &x);
/// assert_eq!(report.params, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// assert!(report.max_error() < 1e-6);
/// report.assert_close(1e-6, 1e-5);
///
/// // Any scalar objective of the parameters; the caller accumulates the gradients first.
/// net.zero_grad();
/// let y = net.forward(&x, Mode::Train).unwrap();
/// net.backward(&y).unwrap(); // d(|y|^2 / 2) / dy = y
/// let report = GradCheck::new().params(&mut net, &mut |n: &mut Sequential<f64>| {
///     n.forward(&x, Mode::Train).unwrap().mapv(|v| v * v).sum() / 2.0
/// });
/// assert!(report.max_error() < 1e-6);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    eps: f64,
    seed: u64,
    samples: Option<usize>,
    allow_missing: bool,
}

impl Default for GradCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl GradCheck {
    /// The defaults (see the type documentation).
    pub fn new() -> Self {
        Self {
            eps: 1e-6,
            seed: 99,
            samples: None,
            allow_missing: false,
        }
    }

    /// Finite-difference step.
    #[must_use]
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Seed of `R` (uniform in `[-1, 1)`, [`seeded_tensor`]) and of the sampled indices.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks at most `n` distinct elements of each tensor, chosen at random (seeded);
    /// tensors with at most `n` elements are checked in full.
    #[must_use]
    pub fn samples(mut self, n: usize) -> Self {
        self.samples = Some(n);
        self
    }

    /// Skips trainable parameters that received no gradient (e.g. the inactive widths of a
    /// slimmable layer) instead of panicking; they are listed in [`GradReport::skipped`].
    /// At least one parameter must still have a gradient if the layer has any.
    #[must_use]
    pub fn allow_missing_grads(mut self) -> Self {
        self.allow_missing = true;
        self
    }

    /// Checks `d sum(forward(x) * R) / d x` and `/ d p` for every trainable parameter `p`.
    ///
    /// # Panics
    ///
    /// If `forward` or `backward` errors (a fixture bug), if the input gradient's shape is
    /// not the input's, or on a missing gradient (see
    /// [`allow_missing_grads`](Self::allow_missing_grads)).
    #[track_caller]
    pub fn layer<L: Layer<f64> + ?Sized>(
        &self,
        layer: &mut L,
        x: &ArrayRef<f64, IxDyn>,
    ) -> GradReport {
        self.layer_with(layer, x, &mut |l: &mut L, x: &ArrayD<f64>| {
            l.forward(x, Mode::Train).expect("forward")
        })
    }

    /// [`layer`](Self::layer) with `forward` producing the output (e.g. to reseed a
    /// dropout mask before every call, so every evaluation sees the same function).
    ///
    /// # Panics
    ///
    /// As [`layer`](Self::layer); also if `forward` changes the output shape.
    #[track_caller]
    pub fn layer_with<L: Layer<f64> + ?Sized>(
        &self,
        layer: &mut L,
        x: &ArrayRef<f64, IxDyn>,
        forward: &mut dyn FnMut(&mut L, &ArrayD<f64>) -> ArrayD<f64>,
    ) -> GradReport {
        let mut rng = StdRng::seed_from_u64(self.seed ^ SAMPLE_SALT);
        let mut xp = x.as_standard_layout().into_owned();
        let y = forward(layer, &xp);
        let r = seeded_tensor::<f64>(y.shape(), self.seed);
        layer.zero_grad();
        let dx = layer.backward(&r).expect("backward");
        assert_eq!(
            dx.shape(),
            x.shape(),
            "{}: input gradient shape",
            layer.name()
        );
        let dx: Vec<f64> = dx.iter().copied().collect();
        let mut objective = |l: &mut L, x: &ArrayD<f64>| -> f64 {
            let y = forward(l, x);
            assert_eq!(y.shape(), r.shape(), "output shape changed between calls");
            (y * &r).sum()
        };
        let mut report = GradReport {
            layer: layer.name().to_string(),
            ..GradReport::default()
        };
        for i in self.indices(xp.len(), &mut rng) {
            let orig = xp.as_slice().expect("standard layout")[i];
            xp.as_slice_mut().expect("standard layout")[i] = orig + self.eps;
            let fp = objective(layer, &xp);
            xp.as_slice_mut().expect("standard layout")[i] = orig - self.eps;
            let fm = objective(layer, &xp);
            xp.as_slice_mut().expect("standard layout")[i] = orig;
            report.samples.push(GradSample {
                wrt: Wrt::Input,
                index: i,
                analytic: dx[i],
                numeric: (fp - fm) / (2.0 * self.eps),
            });
        }
        let x = xp;
        self.check_params(
            layer,
            &mut |l: &mut L| objective(l, &x),
            &mut rng,
            &mut report,
        );
        report
    }

    /// Checks the gradients already accumulated in `module` (the caller ran `zero_grad`
    /// and its own backward) against central differences of `objective` over the stored
    /// value of every trainable parameter.
    ///
    /// # Panics
    ///
    /// On a missing gradient (see [`allow_missing_grads`](Self::allow_missing_grads)), or if
    /// `objective` panics.
    #[track_caller]
    pub fn params<M: Module<f64> + ?Sized>(
        &self,
        module: &mut M,
        objective: &mut dyn FnMut(&mut M) -> f64,
    ) -> GradReport {
        let mut rng = StdRng::seed_from_u64(self.seed ^ SAMPLE_SALT);
        let mut report = GradReport::default();
        self.check_params(module, objective, &mut rng, &mut report);
        report
    }

    /// Indices to check in a tensor of `n` elements.
    fn indices(&self, n: usize, rng: &mut StdRng) -> Vec<usize> {
        match self.samples {
            Some(k) if k < n => {
                let mut v = rand::seq::index::sample(rng, n, k).into_vec();
                v.sort_unstable();
                v
            }
            _ => (0..n).collect(),
        }
    }

    #[track_caller]
    fn check_params<M: Module<f64> + ?Sized>(
        &self,
        module: &mut M,
        objective: &mut dyn FnMut(&mut M) -> f64,
        rng: &mut StdRng,
        report: &mut GradReport,
    ) {
        // (visiting ordinal, path, gradient) of every trainable parameter with a gradient.
        let mut targets: Vec<(usize, String, Vec<f64>)> = Vec::new();
        let mut missing = Vec::new();
        let mut ordinal = 0;
        module.visit(
            &mut ParamPath::root(),
            &mut |path: &ParamPath, p: &Param<f64>| {
                if p.kind() != ParamKind::Buffer {
                    match p.grad() {
                        Some(g) => {
                            targets.push((ordinal, path.to_string(), g.iter().copied().collect()))
                        }
                        None => missing.push(path.to_string()),
                    }
                }
                ordinal += 1;
            },
        );
        assert!(
            self.allow_missing || missing.is_empty(),
            "{}: no gradient for {missing:?}",
            report.layer
        );
        assert!(
            !targets.is_empty() || missing.is_empty(),
            "{}: no trainable parameter received a gradient ({missing:?})",
            report.layer
        );
        report.skipped = missing;
        for (ordinal, path, grad) in targets {
            for i in self.indices(grad.len(), rng) {
                let orig = set_element(module, ordinal, i, |_| 0.0);
                set_element(module, ordinal, i, |_| orig + self.eps);
                let fp = objective(module);
                set_element(module, ordinal, i, |_| orig - self.eps);
                let fm = objective(module);
                set_element(module, ordinal, i, |_| orig);
                report.samples.push(GradSample {
                    wrt: Wrt::Param(path.clone()),
                    index: i,
                    analytic: grad[i],
                    numeric: (fp - fm) / (2.0 * self.eps),
                });
            }
            report.params.push(path);
        }
    }
}

/// Sets element `index` (logical order) of the stored value of the `ordinal`-th visited
/// parameter to `f(old)`; returns the old value.
fn set_element<M: Module<f64> + ?Sized>(
    module: &mut M,
    ordinal: usize,
    index: usize,
    f: impl Fn(f64) -> f64,
) -> f64 {
    let mut k = 0;
    let mut old = f64::NAN;
    let _ = module.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<f64>| {
            if k == ordinal {
                let v = p.value_mut();
                let e = match v.as_slice_mut() {
                    Some(s) => &mut s[index],
                    None => v.iter_mut().nth(index).expect("index within the parameter"),
                };
                old = *e;
                *e = f(old);
            }
            k += 1;
            Ok(())
        },
    );
    old
}

/// Central-difference gradient of a scalar function of an array:
/// `g[i] = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`, same shape as `x`.
///
/// ```
/// use compress_testkit::{assert_grad_close, fd_grad};
/// use ndarray::array;
///
/// let x = array![[1.0, -2.0], [0.5, 3.0]];
/// let numeric = fd_grad(|x| x.mapv(|v| v * v).sum(), &x, 1e-6);
/// assert_grad_close(&(&x * 2.0), &numeric, 1e-8, 1e-8);
/// ```
///
/// # Panics
///
/// Never: the perturbed copy is in standard layout.
pub fn fd_grad<D: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
    eps: f64,
) -> Array<f64, D> {
    let mut xp = x.as_standard_layout().into_owned();
    let mut g = Array::<f64, D>::zeros(x.raw_dim());
    for i in 0..xp.len() {
        let orig = xp.as_slice().expect("standard layout")[i];
        xp.as_slice_mut().expect("standard layout")[i] = orig + eps;
        let fp = f(&xp);
        xp.as_slice_mut().expect("standard layout")[i] = orig - eps;
        let fm = f(&xp);
        xp.as_slice_mut().expect("standard layout")[i] = orig;
        g.as_slice_mut().expect("standard layout")[i] = (fp - fm) / (2.0 * eps);
    }
    g
}

/// Asserts `|a - n| <= atol + rtol * max(|a|, |n|)` elementwise (`rtol = 0`: absolute).
///
/// ```
/// use compress_testkit::assert_grad_close;
/// use ndarray::array;
///
/// assert_grad_close(&array![1.0, 100.0], &array![1.0 + 1e-9, 100.0 + 1e-6], 1e-8, 1e-7);
/// ```
///
/// # Panics
///
/// If the shapes differ or at the first element outside the tolerance (naming its index
/// and both values).
#[track_caller]
pub fn assert_grad_close<D: Dimension>(
    analytic: &Array<f64, D>,
    numeric: &Array<f64, D>,
    atol: f64,
    rtol: f64,
) {
    assert_eq!(analytic.shape(), numeric.shape(), "gradient shapes differ");
    for ((idx, &a), &n) in analytic.indexed_iter().zip(numeric.iter()) {
        assert!(
            within(a, n, atol, rtol),
            "element {idx:?}: analytic {a}, numeric {n} (atol {atol}, rtol {rtol})\n\
             analytic {analytic}\nnumeric {numeric}"
        );
    }
}
