//! Fixed-rank views of a parameter's effective value, for hand-written forward passes.

use ndarray::{CowArray, Dimension, Ix1, Ix2};

use crate::{Float, Param, Result};

impl<F: Float> Param<F> {
    /// The effective value (see [`Param::effective`]) with a fixed rank `D`, borrowed when no
    /// parametrization is attached: `p.effective_as::<Ix2>()?` instead of
    /// `p.effective().into_owned().into_dimensionality::<Ix2>()?`.
    ///
    /// ```
    /// use compress_core::Param;
    /// use ndarray::{ArrayD, Ix2};
    /// let p = Param::new(ArrayD::<f32>::zeros(vec![3, 2]));
    /// let w = p.effective_as::<Ix2>().unwrap();
    /// assert_eq!(w.dim(), (3, 2));
    /// assert!(p.effective_as::<ndarray::Ix1>().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`](crate::CoreError::Shape) when the parameter's rank is not `D`'s.
    pub fn effective_as<D: Dimension>(&self) -> Result<CowArray<'_, F, D>> {
        Ok(match self.effective() {
            std::borrow::Cow::Borrowed(a) => CowArray::from(a.view().into_dimensionality::<D>()?),
            std::borrow::Cow::Owned(a) => CowArray::from(a.into_dimensionality::<D>()?),
        })
    }

    /// The effective value as a matrix (a Linear weight `[out, in]`).
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`](crate::CoreError::Shape) unless the parameter has two axes.
    pub fn effective2(&self) -> Result<CowArray<'_, F, Ix2>> {
        self.effective_as::<Ix2>()
    }

    /// The effective value as a vector (a bias).
    ///
    /// # Errors
    ///
    /// [`CoreError::Shape`](crate::CoreError::Shape) unless the parameter has one axis.
    pub fn effective1(&self) -> Result<CowArray<'_, F, Ix1>> {
        self.effective_as::<Ix1>()
    }
}
