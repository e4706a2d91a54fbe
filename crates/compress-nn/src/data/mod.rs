//! Data sets: the embedded UCI digits and MNIST IDX files.

mod digits;
pub mod fuzzing;
pub mod mnist;

pub use digits::{DIGITS_CSV, digits, digits_all, parse_digits};

use compress_core::{CoreError, Float};
use ndarray::{ArrayD, Axis, IxDyn};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

use crate::{NnError, Result};

/// Samples `x` (first axis = sample) with class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset<F: Float> {
    /// Inputs, `[N, ...]`.
    pub x: ArrayD<F>,
    /// Class labels, `N` of them, each `< classes`.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

impl<F: Float> Dataset<F> {
    /// Builds a data set, checking that counts and labels agree.
    ///
    /// # Errors
    ///
    /// A shape mismatch when `x` has not `labels.len()` samples, [`NnError::Label`] for a
    /// label `>= classes`.
    pub fn new(x: ArrayD<F>, labels: Vec<usize>, classes: usize) -> Result<Self> {
        if x.ndim() == 0 || x.shape()[0] != labels.len() {
            return Err(CoreError::shape("dataset x", &[labels.len()], x.shape()).into());
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            return Err(NnError::Label {
                index,
                label,
                classes,
            });
        }
        Ok(Self { x, labels, classes })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample.
    pub fn sample_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    /// The samples at `indices` (in that order) and their labels.
    ///
    /// # Panics
    ///
    /// If an index is out of range.
    #[track_caller]
    pub fn batch(&self, indices: &[usize]) -> (ArrayD<F>, Vec<usize>) {
        let x = self.x.select(Axis(0), indices);
        let y = indices.iter().map(|&i| self.labels[i]).collect();
        (x, y)
    }

    /// A data set of the samples at `indices`.
    ///
    /// # Panics
    ///
    /// If an index is out of range.
    #[track_caller]
    pub fn subset(&self, indices: &[usize]) -> Self {
        let (x, labels) = self.batch(indices);
        Self {
            x,
            labels,
            classes: self.classes,
        }
    }

    /// The same samples with each flattened to one dimension: `[N, prod(rest)]`.
    pub fn flat(&self) -> Self {
        let n = self.len();
        let d: usize = self.sample_shape().iter().product();
        self.reshaped(&[d])
            .unwrap_or_else(|_| unreachable!("{n} x {d} has the same length"))
    }

    /// The same samples reshaped to `sample_shape` each (e.g. `[1, 8, 8]`).
    ///
    /// # Errors
    ///
    /// A shape mismatch when the element counts differ.
    pub fn reshaped(&self, sample_shape: &[usize]) -> Result<Self> {
        let mut shape = vec![self.len()];
        shape.extend_from_slice(sample_shape);
        let x = self
            .x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(&shape))
            .map_err(|_| CoreError::shape("dataset reshape", &shape, self.x.shape()))?;
        Ok(Self {
            x,
            labels: self.labels.clone(),
            classes: self.classes,
        })
    }

    /// A stratified split: from each class, a `fraction` of its samples (rounded) goes to
    /// the second set; which ones is decided by a shuffle seeded with `seed`.
    ///
    /// # Errors
    ///
    /// [`CoreError::InvalidConfig`] unless `0 <= fraction <= 1`.
    pub fn split_stratified(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(
                CoreError::config("fraction", format!("{fraction} is not in [0, 1]")).into(),
            );
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for c in 0..self.classes {
            let mut idx: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == c).collect();
            idx.shuffle(&mut rng);
            let k = (idx.len() as f64 * fraction).round() as usize;
            second.extend_from_slice(&idx[..k]);
            first.extend_from_slice(&idx[k..]);
        }
        first.sort_unstable();
        second.sort_unstable();
        Ok((self.subset(&first), self.subset(&second)))
    }
}
