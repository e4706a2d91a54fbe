//! Input jitter: random translations of each image in training (Hinton et al. 2015 train
//! their MNIST teacher on inputs "jittered by up to two pixels in any direction").

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use ndarray::{ArrayD, ArrayRef, IxDyn};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The input shape of the last training forward and each image's `(dy, dx)`.
type Drawn = (Vec<usize>, Vec<(isize, isize)>);

/// Shifts each image of a training batch by a random whole number of pixels, `dy` and `dx`
/// each drawn uniformly from `-max_shift..=max_shift`, filling the uncovered border with
/// zeros; in eval mode it is the identity. Place it first in a network to train on jittered
/// inputs (data augmentation as a layer, like Keras' `RandomTranslation`).
///
/// Inputs are `[N, C, H, W]` or flattened `[N, C*H*W]` (row-major `C, H, W`). The shifts
/// come from a generator seeded at construction, so runs are reproducible. The backward pass
/// moves the gradient back by the same shifts (the adjoint of the forward translation).
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::layers::RandomShift;
/// use ndarray::ArrayD;
/// let mut jitter = RandomShift::new(1, 3, 3, 1, 0).unwrap();
/// let x = ArrayD::<f32>::from_shape_vec(vec![1, 9], (1..=9).map(|v| v as f32).collect()).unwrap();
/// assert_eq!(jitter.forward(&x, Mode::Eval).unwrap(), x);
/// let y = jitter.forward(&x, Mode::Train).unwrap();
/// // The centre pixel (5) moves to a neighbour or stays.
/// assert!(y.iter().any(|&v| v == 5.0));
/// ```
#[derive(Debug, Clone, Module)]
pub struct RandomShift<F: Float> {
    #[module(skip)]
    dims: [usize; 3],
    #[module(skip)]
    max_shift: usize,
    #[module(skip)]
    rng: StdRng,
    #[module(skip)]
    shifts: Option<Drawn>,
    #[module(skip)]
    _f: std::marker::PhantomData<F>,
}

impl<F: Float> RandomShift<F> {
    /// Jitter of images with `channels`, `height` and `width`, by up to `max_shift` pixels,
    /// shifts drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] naming `channels`, `height`, `width` or `max_shift`
    /// when a size is zero or the shift is not smaller than the image.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        max_shift: usize,
        seed: u64,
    ) -> Result<Self> {
        for (name, v) in [("channels", channels), ("height", height), ("width", width)] {
            if v == 0 {
                return Err(CoreError::config(name, "must be at least 1, got 0"));
            }
        }
        if max_shift >= height.min(width) {
            return Err(CoreError::config(
                "max_shift",
                format!("{max_shift} must be smaller than the image {height}x{width}"),
            ));
        }
        Ok(Self {
            dims: [channels, height, width],
            max_shift,
            rng: StdRng::seed_from_u64(seed),
            shifts: None,
            _f: std::marker::PhantomData,
        })
    }

    /// Restarts the shift generator from `seed` (the next training forward draws the same
    /// shifts as right after construction with that seed).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// The largest shift in pixels.
    pub fn max_shift(&self) -> usize {
        self.max_shift
    }

    /// Checks `shape` is a batch of this layer's images.
    fn check(&self, shape: &[usize]) -> Result<()> {
        let [c, h, w] = self.dims;
        let ok = match shape {
            [_, f] => *f == c * h * w,
            [_, sc, sh, sw] => [*sc, *sh, *sw] == self.dims,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            let n = shape.first().copied().unwrap_or(0);
            Err(CoreError::shape("RandomShift input", &[n, c, h, w], shape))
        }
    }

    /// Translates every image of `x` (as `[N, C*H*W]` rows) by its shift; `sign = -1`
    /// applies the inverse translation (the backward pass).
    fn translate(
        &self,
        x: &ArrayRef<F, IxDyn>,
        shifts: &[(isize, isize)],
        sign: isize,
    ) -> ArrayD<F> {
        let [c, h, w] = self.dims;
        let (h, w) = (h as isize, w as isize);
        let mut out = ArrayD::zeros(x.raw_dim());
        let src = x.as_standard_layout();
        let (src, dst) = (
            src.as_slice().unwrap_or(&[]),
            out.as_slice_mut().unwrap_or(&mut []),
        );
        let plane = (h * w) as usize;
        for (n, &(dy, dx)) in shifts.iter().enumerate() {
            let (dy, dx) = (sign * dy, sign * dx);
            for ch in 0..c {
                let base = (n * c + ch) * plane;
                // Output row i reads input row i - dy; column j reads j - dx.
                for i in dy.max(0)..(h + dy).min(h) {
                    let (oi, ii) = (i as usize, (i - dy) as usize);
                    let (j0, j1) = (dx.max(0), (w + dx).min(w));
                    let o = base + oi * w as usize;
                    let s = base + ii * w as usize;
                    dst[o + j0 as usize..o + j1 as usize]
                        .copy_from_slice(&src[s + (j0 - dx) as usize..s + (j1 - dx) as usize]);
                }
            }
        }
        out
    }
}

impl<F: Float> Layer<F> for RandomShift<F> {
    fn name(&self) -> &'static str {
        "RandomShift"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        self.check(x.shape())?;
        let n = x.shape()[0];
        let m = self.max_shift as i64;
        let rng = &mut self.rng;
        let shifts: Vec<(isize, isize)> = if mode == Mode::Train {
            (0..n)
                .map(|_| {
                    let dy = rng.random_range(-m..=m) as isize;
                    (dy, rng.random_range(-m..=m) as isize)
                })
                .collect()
        } else {
            vec![(0, 0); n]
        };
        let y = if mode == Mode::Train && m > 0 {
            self.translate(x, &shifts, 1)
        } else {
            x.to_owned()
        };
        self.shifts = (mode == Mode::Train).then(|| (x.shape().to_vec(), shifts));
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let (shape, shifts) = self
            .shifts
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("RandomShift"))?;
        if grad.shape() != shape.as_slice() {
            return Err(CoreError::shape("RandomShift grad", shape, grad.shape()));
        }
        Ok(self.translate(grad, shifts, -1))
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        let mut batched = vec![1];
        batched.extend_from_slice(input_shape);
        self.check(&batched)?;
        Ok(Cost::passthrough(input_shape))
    }
}
