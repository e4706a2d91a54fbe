//! Pooling over NCHW batches: max, average and global average.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use std::ops::Range;

use ndarray::{ArrayD, ArrayRef, IxDyn};

use super::conv::IntoHw;
use super::split_batch;

/// Window geometry shared by the two windowed pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
}

impl Window {
    fn new(kernel: (usize, usize)) -> Self {
        Self {
            kernel,
            stride: kernel,
            padding: (0, 0),
        }
    }

    /// Checks the window against a per-sample input `[C, H, W]`; returns `(C, H, W, oh, ow)`.
    fn plan(&self, layer: &str, chw: &[usize]) -> Result<[usize; 5]> {
        let &[c, h, w] = chw else {
            return Err(CoreError::shape(
                format!("{layer} input (per sample)"),
                &[0, 0, 0],
                chw,
            ));
        };
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(CoreError::config(
                format!("{layer} kernel/stride"),
                format!(
                    "must be positive, got kernel {:?}, stride {:?}",
                    self.kernel, self.stride
                ),
            ));
        }
        if 2 * ph > kh || 2 * pw > kw {
            return Err(CoreError::config(
                format!("{layer} padding"),
                format!(
                    "{:?} is more than half the kernel {:?}",
                    self.padding, self.kernel
                ),
            ));
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            return Err(CoreError::config(
                format!("{layer} input"),
                format!(
                    "{h}x{w} with padding {:?} is smaller than the kernel {:?}",
                    self.padding, self.kernel
                ),
            ));
        }
        Ok([
            c,
            h,
            w,
            (h + 2 * ph - kh) / sh + 1,
            (w + 2 * pw - kw) / sw + 1,
        ])
    }

    /// Input rows (or columns) `[lo, hi)` covered by output index `o` on an axis of `n`.
    fn span(o: usize, k: usize, s: usize, p: usize, n: usize) -> (usize, usize) {
        let start = (o * s) as isize - p as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(n);
        (lo, hi.max(lo))
    }

    /// Checks the window against an NCHW batch `shape` and lays out its windows.
    fn walk(&self, layer: &str, shape: &[usize]) -> Result<Walk> {
        let (n, chw) = split_batch(shape);
        let [c, h, w, oh, ow] = self.plan(layer, chw)?;
        let Window {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
        } = *self;
        Ok(Walk {
            planes: n * c,
            shape: [n, c, oh, ow],
            h,
            w,
            // The windows' spans, computed once per axis rather than per output.
            rows: (0..oh).map(|o| Window::span(o, kh, sh, ph, h)).collect(),
            cols: (0..ow).map(|q| Window::span(q, kw, sw, pw, w)).collect(),
        })
    }

    /// A 2x2 window at stride 2 without padding (the common pool, with a fast path).
    fn is_2x2(&self) -> bool {
        self.kernel == (2, 2) && self.stride == (2, 2) && self.padding == (0, 0)
    }

    /// The cost of pooling a per-sample input `[C, H, W]`: none, output `[C, oh, ow]`.
    fn cost(&self, layer: &str, input_shape: &[usize]) -> Result<Cost> {
        let [c, _, _, oh, ow] = self.plan(layer, input_shape)?;
        Ok(Cost::passthrough(&[c, oh, ow]))
    }

    /// `1 / (kh * kw)`: the average pool's divisor (padding included).
    fn inv_area<F: Float>(&self) -> F {
        F::one() / F::lit((self.kernel.0 * self.kernel.1) as f64)
    }
}

/// The windows of one NCHW batch, shared by the pools' forward and backward passes.
struct Walk {
    /// Batch size times channels.
    planes: usize,
    /// Output shape `[N, C, oh, ow]`.
    shape: [usize; 4],
    /// Input height and width.
    h: usize,
    w: usize,
    /// Per output row (column): the input rows (columns) `[lo, hi)` of its windows.
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
}

/// The input of one window, as flat indices into the NCHW batch: `count` runs of `len`
/// elements, `step` apart, the first starting at `start`.
#[derive(Debug, Clone, Copy)]
struct WindowRows {
    start: usize,
    len: usize,
    count: usize,
    step: usize,
}

impl WindowRows {
    /// The flat index ranges of the window's rows, top to bottom.
    #[inline(always)]
    fn ranges(self) -> impl Iterator<Item = Range<usize>> {
        (0..self.count).map(move |r| {
            let s = self.start + r * self.step;
            s..s + self.len
        })
    }
}

impl Walk {
    /// Output elements.
    fn out_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Calls `f` for every output element, in NCHW order, with its flat index and its
    /// window's input rows.
    #[inline(always)]
    fn for_each(&self, mut f: impl FnMut(usize, WindowRows)) {
        let (h, w) = (self.h, self.w);
        let mut i = 0;
        for p in 0..self.planes {
            let base = p * h * w;
            for &(r0, r1) in &self.rows {
                for &(c0, c1) in &self.cols {
                    let rows = WindowRows {
                        start: base + r0 * w + c0,
                        len: c1 - c0,
                        count: r1 - r0,
                        step: w,
                    };
                    f(i, rows);
                    i += 1;
                }
            }
        }
    }
}

/// Max pooling of 2x2 windows at stride 2 without padding (every window inside the image):
/// the same results and arg-max indices as the general walk (rows top to bottom, left to
/// right, the first maximum kept, NaN propagating), without its per-window bookkeeping.
fn max_2x2<F: Float>(xs: &[F], walk: &Walk, out: &mut Vec<F>, arg: Option<&mut Vec<usize>>) {
    let (h, w) = (walk.h, walk.w);
    let [_, _, oh, ow] = walk.shape;
    out.resize(walk.out_len(), F::zero());
    let rows = out.chunks_exact_mut(ow.max(1)).enumerate();
    let Some(arg) = arg else {
        // Values only: `v > best || v is NaN` keeps the maximum and lets NaN through.
        for (o, dst) in rows {
            let r0 = (o / oh) * h * w + 2 * (o % oh) * w;
            let (top, bottom) = (&xs[r0..r0 + 2 * ow], &xs[r0 + w..r0 + w + 2 * ow]);
            for (j, d) in dst.iter_mut().enumerate() {
                let pick = |best: F, v: F| if v > best || v.is_nan() { v } else { best };
                let t = pick(top[2 * j], top[2 * j + 1]);
                let u = pick(bottom[2 * j], bottom[2 * j + 1]);
                *d = if t.is_nan() { t } else { pick(t, u) };
            }
        }
        return;
    };
    arg.resize(walk.out_len(), 0);
    for ((o, dst), idx) in rows.zip(arg.chunks_exact_mut(ow.max(1))) {
        let r0 = (o / oh) * h * w + 2 * (o % oh) * w;
        let r1 = r0 + w;
        for (j, (d, a)) in dst.iter_mut().zip(idx).enumerate() {
            let (mut best, mut bi) = (F::neg_infinity(), r0 + 2 * j);
            for k in [r0 + 2 * j, r0 + 2 * j + 1, r1 + 2 * j, r1 + 2 * j + 1] {
                let v = xs[k];
                if v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    bi = k;
                }
            }
            *d = best;
            *a = bi;
        }
    }
}

/// Max pooling over `kernel` windows; padding counts as `-inf` (PyTorch semantics).
///
/// Defaults: stride = kernel, no padding.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::MaxPool2d;
/// use ndarray::ArrayD;
/// let mut p = MaxPool2d::new(2);
/// let x = ArrayD::from_shape_vec(vec![1, 1, 2, 2], vec![1.0f32, 4.0, 3.0, 2.0]).unwrap();
/// assert_eq!(p.forward(&x, Mode::Eval).unwrap().into_raw_vec_and_offset().0, vec![4.0]);
/// ```
#[derive(Debug, Clone, Module)]
pub struct MaxPool2d {
    #[module(skip)]
    window: Window,
    /// Input shape and, per output element, the flat input index of its maximum.
    #[module(skip)]
    cache: Option<(Vec<usize>, Vec<usize>)>,
}

/// Average pooling over `kernel` windows; padded zeros count in the divisor
/// (PyTorch's `count_include_pad = True`).
///
/// Defaults: stride = kernel, no padding.
#[derive(Debug, Clone, Module)]
pub struct AvgPool2d {
    #[module(skip)]
    window: Window,
    #[module(skip)]
    shape: Option<Vec<usize>>,
}

/// `new`, `stride` and `padding` of a windowed pool, whose other field `$state` starts
/// empty.
macro_rules! window_builders {
    ($pool:ident, $state:ident, $what:literal) => {
        impl $pool {
            #[doc = concat!($what, " with a `kernel` window (stride = kernel, no padding).")]
            pub fn new(kernel: impl IntoHw) -> Self {
                Self {
                    window: Window::new(kernel.into_hw()),
                    $state: None,
                }
            }

            /// Sets the stride.
            #[must_use]
            pub fn stride(mut self, stride: impl IntoHw) -> Self {
                self.window.stride = stride.into_hw();
                self
            }

            /// Sets the padding (at most half the kernel).
            #[must_use]
            pub fn padding(mut self, padding: impl IntoHw) -> Self {
                self.window.padding = padding.into_hw();
                self
            }
        }
    };
}

window_builders!(MaxPool2d, cache, "Max pooling");
window_builders!(AvgPool2d, shape, "Average pooling");

/// Mean over each channel's whole plane: `[N, C, H, W] -> [N, C]`.
#[derive(Debug, Clone, Default, Module)]
pub struct GlobalAvgPool {
    #[module(skip)]
    shape: Option<Vec<usize>>,
}

impl GlobalAvgPool {
    /// A new global average pool.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<F: Float> Layer<F> for MaxPool2d {
    fn name(&self) -> &'static str {
        "MaxPool2d"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let walk = self.window.walk("MaxPool2d", x.shape())?;
        let train = mode == Mode::Train;
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let mut out = Vec::with_capacity(walk.out_len());
        let mut arg = Vec::with_capacity(if train { walk.out_len() } else { 0 });
        if self.window.is_2x2() {
            max_2x2(xs, &walk, &mut out, train.then_some(&mut arg));
            self.cache = train.then(|| (x.shape().to_vec(), arg));
            return Ok(ArrayD::from_shape_vec(IxDyn(&walk.shape), out)?);
        }
        walk.for_each(|_, win| {
            let (mut best, mut bi) = (F::neg_infinity(), win.start);
            for run in win.ranges() {
                for (k, &v) in xs[run.clone()].iter().enumerate() {
                    // NaN propagates, as in PyTorch.
                    if v > best || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        bi = run.start + k;
                    }
                }
            }
            out.push(best);
            if train {
                arg.push(bi);
            }
        });
        self.cache = train.then(|| (x.shape().to_vec(), arg));
        Ok(ArrayD::from_shape_vec(IxDyn(&walk.shape), out)?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let (shape, arg) = self
            .cache
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("MaxPool2d"))?;
        if grad.len() != arg.len() || grad.shape().first() != shape.first() {
            let mut expected = shape[..2].to_vec();
            expected.push(arg.len() / (shape[0] * shape[1]).max(1));
            return Err(CoreError::shape("MaxPool2d grad", &expected, grad.shape()));
        }
        let mut dx = ArrayD::zeros(IxDyn(shape));
        let d = dx.as_slice_mut().expect("fresh array is contiguous");
        for (&i, &g) in arg.iter().zip(grad.as_standard_layout().iter()) {
            d[i] += g;
        }
        Ok(dx)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.window.cost("MaxPool2d", input_shape)
    }
}

impl<F: Float> Layer<F> for AvgPool2d {
    fn name(&self) -> &'static str {
        "AvgPool2d"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let walk = self.window.walk("AvgPool2d", x.shape())?;
        let inv = self.window.inv_area::<F>();
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let mut out = Vec::with_capacity(walk.out_len());
        walk.for_each(|_, win| {
            let s = win
                .ranges()
                .fold(F::zero(), |a, run| xs[run].iter().fold(a, |a, &v| a + v));
            out.push(s * inv);
        });
        self.shape = (mode == Mode::Train).then(|| x.shape().to_vec());
        Ok(ArrayD::from_shape_vec(IxDyn(&walk.shape), out)?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let shape = self
            .shape
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("AvgPool2d"))?;
        let walk = self.window.walk("AvgPool2d", shape)?;
        if grad.shape() != walk.shape {
            return Err(CoreError::shape(
                "AvgPool2d grad",
                &walk.shape,
                grad.shape(),
            ));
        }
        let inv = self.window.inv_area::<F>();
        let gs = grad.as_standard_layout();
        let gs = gs.as_slice().expect("standard layout is contiguous");
        let mut dx = ArrayD::zeros(IxDyn(shape));
        let d = dx.as_slice_mut().expect("fresh array is contiguous");
        walk.for_each(|i, win| {
            let g = gs[i] * inv;
            for run in win.ranges() {
                for v in &mut d[run] {
                    *v += g;
                }
            }
        });
        Ok(dx)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        self.window.cost("AvgPool2d", input_shape)
    }
}

impl<F: Float> Layer<F> for GlobalAvgPool {
    fn name(&self) -> &'static str {
        "GlobalAvgPool"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        let (n, chw) = split_batch(x.shape());
        let &[c, h, w] = chw else {
            return Err(CoreError::shape(
                "GlobalAvgPool input (per sample)",
                &[0, 0, 0],
                chw,
            ));
        };
        let l = h * w;
        let inv = F::one() / F::lit(l.max(1) as f64);
        let xs = x.as_standard_layout();
        let xs = xs.as_slice().expect("standard layout is contiguous");
        let out: Vec<F> = (0..n * c)
            .map(|p| xs[p * l..(p + 1) * l].iter().fold(F::zero(), |a, &v| a + v) * inv)
            .collect();
        self.shape = (mode == Mode::Train).then(|| x.shape().to_vec());
        Ok(ArrayD::from_shape_vec(IxDyn(&[n, c]), out)?)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let shape = self
            .shape
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("GlobalAvgPool"))?;
        let (n, c, l) = (shape[0], shape[1], shape[2] * shape[3]);
        if grad.shape() != [n, c] {
            return Err(CoreError::shape(
                "GlobalAvgPool grad",
                &[n, c],
                grad.shape(),
            ));
        }
        let inv = F::one() / F::lit(l.max(1) as f64);
        let gs = grad.as_standard_layout();
        let mut dx = Vec::with_capacity(n * c * l);
        for &g in gs.iter() {
            dx.extend(std::iter::repeat_n(g * inv, l));
        }
        Ok(ArrayD::from_shape_vec(IxDyn(shape), dx)?)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        match input_shape {
            &[c, _, _] => Ok(Cost::passthrough(&[c])),
            _ => Err(CoreError::shape(
                "GlobalAvgPool input (per sample)",
                &[0, 0, 0],
                input_shape,
            )),
        }
    }
}
