//! Simple parametrizations for tests: a fixed 0/1 mask and an affine map `k w + b`.

use compress_core::{CoreError, Float, Parametrization, Result};
use ndarray::ArrayD;

/// Multiplies by a fixed mask (usually 0/1): forward `w * m`, backward `g * m`, and
/// [`project`](Parametrization::project) re-zeroes masked entries after an optimizer step,
/// as a pruning mask does. Named `"mask"`; rejects a parameter of another shape.
///
/// ```
/// use compress_core::Param;
/// use compress_testkit::FixedMask;
/// use ndarray::{ArrayD, array};
///
/// let mut p = Param::new(array![[1.0, 2.0], [3.0, 4.0]].into_dyn());
/// let mask = FixedMask::new(array![[1.0, 0.0], [0.0, 1.0]].into_dyn());
/// p.push_parametrization(Box::new(mask)).unwrap();
/// assert_eq!(p.effective().into_owned(), array![[1.0, 0.0], [0.0, 4.0]].into_dyn());
/// p.accumulate_grad(ArrayD::ones(vec![2, 2])).unwrap();
/// assert_eq!(p.grad().unwrap(), &array![[1.0, 0.0], [0.0, 1.0]].into_dyn());
/// assert!(Param::new(ArrayD::<f64>::zeros(vec![3]))
///     .push_parametrization(Box::new(FixedMask::new(ArrayD::ones(vec![2]))))
///     .is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FixedMask<F: Float> {
    mask: ArrayD<F>,
}

impl<F: Float> FixedMask<F> {
    /// A mask with these values.
    pub fn new(mask: ArrayD<F>) -> Self {
        Self { mask }
    }

    /// A mask of `shape` from booleans in logical order (`true` keeps the entry).
    ///
    /// # Panics
    ///
    /// If `keep.len()` is not the shape's product.
    #[track_caller]
    pub fn from_bools(shape: &[usize], keep: &[bool]) -> Self {
        let v = keep
            .iter()
            .map(|&k| if k { F::one() } else { F::zero() })
            .collect();
        Self::new(ArrayD::from_shape_vec(shape.to_vec(), v).expect("one flag per element"))
    }

    /// The mask.
    pub fn mask(&self) -> &ArrayD<F> {
        &self.mask
    }
}

impl<F: Float> Parametrization<F> for FixedMask<F> {
    fn name(&self) -> &'static str {
        "mask"
    }
    fn validate(&self, shape: &[usize]) -> Result<()> {
        if shape != self.mask.shape() {
            return Err(CoreError::shape("mask", self.mask.shape(), shape));
        }
        Ok(())
    }
    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        input * &self.mask
    }
    fn backward(&self, _input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        grad_output * &self.mask
    }
    fn project(&self, stored: &mut ArrayD<F>) {
        *stored *= &self.mask;
    }
}

/// The affine map `k w + b`: backward `k g`. [`Affine::scale`] (`b = 0`) and
/// [`Affine::shift`] (`k = 1`) are the usual test cases (a scale of 0 zeroes the weight).
/// Named `"affine"`.
///
/// ```
/// use compress_core::Parametrization;
/// use compress_testkit::Affine;
/// use ndarray::array;
///
/// let w = array![1.0, -2.0].into_dyn();
/// assert_eq!(Affine::scale(2.0).forward(&w), array![2.0, -4.0].into_dyn());
/// assert_eq!(Affine::shift(1.0).forward(&w), array![2.0, -1.0].into_dyn());
/// assert_eq!(Affine::new(3.0, 1.0).backward(&w, w.clone()), array![3.0, -6.0].into_dyn());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine<F: Float> {
    scale: F,
    shift: F,
}

impl<F: Float> Affine<F> {
    /// `scale * w + shift`.
    pub fn new(scale: F, shift: F) -> Self {
        Self { scale, shift }
    }

    /// `k w`.
    pub fn scale(k: F) -> Self {
        Self::new(k, F::zero())
    }

    /// `w + b`.
    pub fn shift(b: F) -> Self {
        Self::new(F::one(), b)
    }
}

impl<F: Float> Parametrization<F> for Affine<F> {
    fn name(&self) -> &'static str {
        "affine"
    }
    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        input.mapv(|w| self.scale * w + self.shift)
    }
    fn backward(&self, _input: &ArrayD<F>, grad_output: ArrayD<F>) -> ArrayD<F> {
        grad_output.mapv_into(|g| self.scale * g)
    }
}
