//! Pruning masks as a [`Parametrization`].

use compress_core::{
    CoreError, Float, Module, Param, ParamFilter, ParamPath, Parametrization, Result as CoreResult,
};
use ndarray::{ArrayD, Zip};

use crate::Result;

/// A 0/1 pruning mask attached to a parameter.
///
/// Forward multiplies the stored weight by the mask, backward multiplies the gradient by it,
/// and after every optimizer step [`Parametrization::project`] re-zeroes the pruned entries of
/// the stored weight, so neither momentum nor weight decay can bring them back. Pruning a
/// parameter that already has a mask ANDs the new mask into it ([`attach_mask`]), so masks are
/// monotone. [`Module::bake`] (or [`Param::bake`]) makes the zeros permanent.
///
/// ```
/// use compress_core::Param;
/// use compress_prune::Mask;
/// use ndarray::{ArrayD, IxDyn};
///
/// let w = ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0f32, -2.0, 3.0, -4.0]).unwrap();
/// let mut p = Param::new(w);
/// let m = Mask::from_keep(&[4], &[true, false, true, false]).unwrap();
/// p.push_parametrization(Box::new(m)).unwrap();
/// assert_eq!(p.effective().as_slice().unwrap(), &[1.0, 0.0, 3.0, 0.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mask<F: Float> {
    mask: ArrayD<F>,
}

impl<F: Float> Mask<F> {
    /// A mask from a 0/1 array (any non-zero entry counts as "keep").
    pub fn new(mask: ArrayD<F>) -> Self {
        Self {
            mask: mask.mapv(|m| if m == F::zero() { F::zero() } else { F::one() }),
        }
    }

    /// A mask of `shape` from one keep flag per element (row-major).
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when `keep.len()` is not the product of `shape`.
    pub fn from_keep(shape: &[usize], keep: &[bool]) -> Result<Self> {
        let v = keep
            .iter()
            .map(|&k| if k { F::one() } else { F::zero() })
            .collect();
        let mask = ArrayD::from_shape_vec(shape.to_vec(), v)
            .map_err(|_| CoreError::shape("mask", shape, &[keep.len()]))?;
        Ok(Self { mask })
    }

    /// An all-ones mask of `shape` (prunes nothing).
    pub fn ones(shape: &[usize]) -> Self {
        Self {
            mask: ArrayD::ones(shape.to_vec()),
        }
    }

    /// The 0/1 array.
    pub fn array(&self) -> &ArrayD<F> {
        &self.mask
    }

    /// Whether element `i` (row-major) is kept.
    pub fn keeps(&self, i: usize) -> bool {
        self.mask.iter().nth(i).is_some_and(|&m| m != F::zero())
    }

    /// Number of pruned (zero) entries.
    pub fn pruned(&self) -> usize {
        self.mask.iter().filter(|&&m| m == F::zero()).count()
    }

    /// Fraction of pruned entries (`0` for an empty mask).
    pub fn sparsity(&self) -> f64 {
        if self.mask.is_empty() {
            0.0
        } else {
            self.pruned() as f64 / self.mask.len() as f64
        }
    }

    /// ANDs `other` into this mask (an entry stays kept only if both keep it).
    ///
    /// # Errors
    ///
    /// [`CoreError::ShapeMismatch`] when the shapes differ.
    pub fn and_assign(&mut self, other: &Mask<F>) -> Result<()> {
        if self.mask.shape() != other.mask.shape() {
            return Err(CoreError::shape("mask", self.mask.shape(), other.mask.shape()).into());
        }
        Zip::from(&mut self.mask)
            .and(&other.mask)
            .for_each(|a, &b| *a *= b);
        Ok(())
    }
}

impl<F: Float> Parametrization<F> for Mask<F> {
    fn name(&self) -> &'static str {
        "mask"
    }

    fn validate(&self, shape: &[usize]) -> CoreResult<()> {
        if shape != self.mask.shape() {
            return Err(CoreError::shape("mask", shape, self.mask.shape()));
        }
        Ok(())
    }

    fn forward(&self, input: &ArrayD<F>) -> ArrayD<F> {
        input * &self.mask
    }

    fn backward(&self, _input: &ArrayD<F>, mut grad_output: ArrayD<F>) -> ArrayD<F> {
        grad_output *= &self.mask;
        grad_output
    }

    fn project(&self, stored: &mut ArrayD<F>) {
        Zip::from(stored).and(&self.mask).for_each(|w, &m| {
            if m == F::zero() {
                *w = F::zero();
            }
        });
    }
}

/// Attaches `mask` to `param`, or ANDs it into the mask already there, and zeroes the pruned
/// entries of the stored value. Returns the number of entries pruned after the call.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] when the mask does not fit the parameter.
pub fn attach_mask<F: Float>(param: &mut Param<F>, mask: Mask<F>) -> Result<usize> {
    if param.shape() != mask.array().shape() {
        return Err(CoreError::shape("mask", param.shape(), mask.array().shape()).into());
    }
    let pruned = if let Some(existing) = param.find_parametrization_mut::<Mask<F>>() {
        existing.and_assign(&mask)?;
        let pruned = existing.pruned();
        let m = existing.clone();
        m.project(param.value_mut());
        pruned
    } else {
        let pruned = mask.pruned();
        param.push_parametrization(Box::new(mask))?;
        pruned
    };
    Ok(pruned)
}

/// The mask attached to `param`, if any.
pub fn mask_of<F: Float>(param: &Param<F>) -> Option<&Mask<F>> {
    param.find_parametrization::<Mask<F>>()
}

/// Removes every mask from the parameters `filter` selects, leaving the stored values as
/// they are (pruned entries stay zero but may grow back in training). Returns the count.
///
/// # Errors
///
/// Never in practice; the `Result` carries the visitor contract.
pub fn remove_masks<F: Float, M: Module<F> + ?Sized>(
    model: &mut M,
    filter: &ParamFilter,
) -> Result<usize> {
    let mut n = 0;
    model.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            if filter.selects(&path.to_string(), p) {
                n += p.remove_parametrizations::<Mask<F>>();
            }
            Ok(())
        },
    )?;
    Ok(n)
}

/// Re-zeroes the pruned entries of every masked parameter's stored value (useful after
/// [`Module::load_state`], e.g. when a lottery ticket rewinds its weights).
///
/// # Errors
///
/// Never in practice; the `Result` carries the visitor contract.
pub fn reapply_masks<F: Float, M: Module<F> + ?Sized>(model: &mut M) -> Result<()> {
    model.visit_mut(
        &mut ParamPath::root(),
        &mut |_: &ParamPath, p: &mut Param<F>| {
            if let Some(m) = p.find_parametrization::<Mask<F>>() {
                let m = m.clone();
                m.project(p.value_mut());
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Copies the masks of `from` onto the parameters of `to` with the same paths (used by the
/// lottery ticket's random-reinitialisation control). Returns how many were copied.
///
/// # Errors
///
/// [`CoreError::ShapeMismatch`] naming the path when a mask does not fit.
pub fn copy_masks<F: Float, A: Module<F> + ?Sized, B: Module<F> + ?Sized>(
    from: &A,
    to: &mut B,
) -> Result<usize> {
    let mut masks = std::collections::HashMap::new();
    from.visit(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &Param<F>| {
            if let Some(m) = mask_of(p) {
                masks.insert(path.to_string(), m.clone());
            }
        },
    );
    let mut n = 0;
    to.visit_mut(
        &mut ParamPath::root(),
        &mut |path: &ParamPath, p: &mut Param<F>| {
            let key = path.to_string();
            if let Some(m) = masks.remove(&key) {
                if m.array().shape() != p.shape() {
                    return Err(CoreError::shape(key, p.shape(), m.array().shape()));
                }
                attach_mask(p, m).map_err(|e| match e {
                    crate::PruneError::Core(c) => c,
                    other => CoreError::technique(key.clone(), other),
                })?;
                n += 1;
            }
            Ok(())
        },
    )?;
    Ok(n)
}
