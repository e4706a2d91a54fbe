//! Inverted dropout.

use compress_core::derive::Module;
use compress_core::{CoreError, Cost, Float, Layer, Mode, Result};
use ndarray::{ArrayD, ArrayRef, IxDyn, Zip};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Inverted dropout: in training each element is zeroed with probability `p` and the rest
/// are scaled by `1 / (1 - p)`; in eval mode it is the identity.
///
/// The mask comes from a generator seeded at construction (reseed with
/// [`Dropout::reseed`]), so runs are reproducible.
///
/// ```
/// use compress_core::{Layer, Mode};
/// use compress_nn::layers::Dropout;
/// use ndarray::ArrayD;
/// let mut d = Dropout::new(0.5, 7).unwrap();
/// let x = ArrayD::<f32>::ones(vec![4, 100]);
/// assert_eq!(d.forward(&x, Mode::Eval).unwrap(), x);
/// let y = d.forward(&x, Mode::Train).unwrap();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// ```
#[derive(Debug, Clone, Module)]
pub struct Dropout<F: Float> {
    #[module(skip)]
    p: f64,
    #[module(skip)]
    rng: StdRng,
    #[module(skip)]
    mask: Option<ArrayD<F>>,
}

impl<F: Float> Dropout<F> {
    /// Dropout with drop probability `p`, masks drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] unless `0 <= p <= 1`.
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(CoreError::config("p", format!("{p} is not in [0, 1]")));
        }
        Ok(Self {
            p,
            rng: StdRng::seed_from_u64(seed),
            mask: None,
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Restarts the mask generator from `seed` (the next training forward draws the same
    /// mask as right after construction with that seed).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }
}

impl<F: Float> Layer<F> for Dropout<F> {
    fn name(&self) -> &'static str {
        "Dropout"
    }

    fn forward(&mut self, x: &ArrayRef<F, IxDyn>, mode: Mode) -> Result<ArrayD<F>> {
        if mode == Mode::Eval || self.p == 0.0 {
            self.mask = (mode == Mode::Train).then(|| ArrayD::ones(x.raw_dim()));
            return Ok(x.to_owned());
        }
        let keep = 1.0 - self.p;
        let scale = if keep > 0.0 {
            F::lit(1.0 / keep)
        } else {
            F::zero()
        };
        let rng = &mut self.rng;
        let mask = ArrayD::from_shape_simple_fn(x.raw_dim(), || {
            if rng.random::<f64>() < keep {
                scale
            } else {
                F::zero()
            }
        });
        let mut y = x.to_owned();
        y *= &mask;
        self.mask = Some(mask);
        Ok(y)
    }

    fn backward(&mut self, grad: &ArrayRef<F, IxDyn>) -> Result<ArrayD<F>> {
        let mask = self
            .mask
            .as_ref()
            .ok_or_else(|| CoreError::no_forward("Dropout"))?;
        if mask.shape() != grad.shape() {
            return Err(CoreError::shape("Dropout grad", mask.shape(), grad.shape()));
        }
        let mut g = grad.to_owned();
        Zip::from(&mut g).and(mask).for_each(|g, &m| *g *= m);
        Ok(g)
    }

    fn cost(&self, input_shape: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(input_shape))
    }
}
